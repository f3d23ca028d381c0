"""Mountain car with Gymnasium MountainCarContinuous-v0's dynamics, reward, termination and limit.

State = observation = (position, velocity); force in [-1, 1]. Facts from Gymnasium 1.x
classic_control/continuous_mountain_car.py (Moore 1990; Sutton & Barto): power 0.0015, gravity term
0.0025 cos(3 x), velocity clipped to +-0.07 *before* the position update, position clipped to
[-1.2, 0.6], an inelastic left wall (velocity zeroed when the car sits on it moving left), episode
terminates when position >= 0.45 and velocity >= 0 (goal_velocity), reward -0.1 u^2 plus +100 on the
terminating step. Registered with max_episode_steps=999 in gymnasium/envs/__init__.py.
Start: position ~ U(-0.6, -0.4), velocity 0.
"""

import torch

from pql_scaling.tasks.base import Task


class MountainCar(Task):
    name = "mountaincar"
    obs_dim = 2
    act_dim = 1
    state_dim = 2
    max_episode_steps = 999
    action_low = (-1.0,)
    action_high = (1.0,)
    solved_return = 90.0
    solved_source = (
        "Gymnasium MountainCarContinuous-v0's reward_threshold (90.0, gymnasium/envs/__init__.py); same reward "
        "scale: +100 at the goal minus 0.1 u^2 per step, so 90 means reaching the goal in few, economical steps"
    )
    power, min_pos, max_pos, max_speed, goal_pos, goal_vel = 0.0015, -1.2, 0.6, 0.07, 0.45, 0.0

    def initial_state(self, n, generator):
        return self.uniform(n, (-0.6, 0.0), (-0.4, 0.0), generator)

    def observe(self, state):
        return state.clone()

    def dynamics(self, state, action):
        pos, vel = state[:, 0], state[:, 1]
        u = action[:, 0].clamp(-1.0, 1.0)
        vel = (vel + u * self.power - 0.0025 * torch.cos(3 * pos)).clamp(-self.max_speed, self.max_speed)
        pos = (pos + vel).clamp(self.min_pos, self.max_pos)
        vel = torch.where((pos <= self.min_pos) & (vel < 0), torch.zeros_like(vel), vel)  # inelastic wall
        terminated = (pos >= self.goal_pos) & (vel >= self.goal_vel)
        reward = 100.0 * terminated.float() - 0.1 * u**2
        return torch.stack([pos, vel], dim=1), reward, terminated
