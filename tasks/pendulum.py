"""Pendulum swing-up with Gymnasium Pendulum-v1's dynamics, reward and 200-step limit.

State (theta, theta_dot); observation (cos theta, sin theta, theta_dot); torque in [-2, 2].
Constants and update order follow Gymnasium's classic_control/pendulum.py (g=10, m=l=1, dt=0.05,
semi-implicit Euler, speed clipped to +-8); the episode never terminates, it is truncated at 200.
"""

import torch

from pql_scaling.tasks.base import Task, angle_normalize


class Pendulum(Task):
    name = "pendulum"
    obs_dim = 3
    act_dim = 1
    state_dim = 2
    max_episode_steps = 200
    action_low = (-2.0,)
    action_high = (2.0,)
    solved_return = -250.0
    solved_source = (
        "Gymnasium registers Pendulum-v1 without a reward_threshold; -250 is this project's time-to-threshold "
        "mark (benchmarks/pendulum_vs_sb3.py): a uniform-random policy gets about -1250, a good one about -150 "
        "averaged over start states (the best return depends on the start state)"
    )
    g, m, l, dt, max_speed, max_torque = 10.0, 1.0, 1.0, 0.05, 8.0, 2.0

    def initial_state(self, n, generator):
        return self.uniform(n, (-torch.pi, -1.0), (torch.pi, 1.0), generator)

    def observe(self, state):
        th, thdot = state[:, 0], state[:, 1]
        return torch.stack([torch.cos(th), torch.sin(th), thdot], dim=1)

    def dynamics(self, state, action):
        th, thdot = state[:, 0], state[:, 1]
        u = action[:, 0].clamp(-self.max_torque, self.max_torque)
        cost = angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * u**2
        thdot = thdot + (3 * self.g / (2 * self.l) * torch.sin(th) + 3.0 / (self.m * self.l**2) * u) * self.dt
        thdot = thdot.clamp(-self.max_speed, self.max_speed)
        th = th + thdot * self.dt
        terminated = torch.zeros_like(th, dtype=torch.bool)
        return torch.stack([th, thdot], dim=1), -cost, terminated
