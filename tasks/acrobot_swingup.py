"""Acrobot swing-up with Gymnasium Acrobot-v1's physics and a continuous torque.

Physics (facts from Gymnasium 1.x classic_control/acrobot.py: Sutton 1996; Sutton & Barto's "book"
equations, not the NIPS ones): two links of length 1 m and mass 1 kg, centres of mass at 0.5 m,
moments of inertia 1, g = 9.8, torque on the middle joint held constant over dt = 0.2 s and
integrated by one classic RK4 step; then both angles are wrapped to [-pi, pi] and the velocities
clipped to +-4 pi and +-9 pi. theta1 = 0 hangs straight down; theta2 is relative to link 1.

Action: torque in [-1, 1] (Gymnasium's discrete set {-1, 0, +1} is its subset).
Start: all four state variables ~ U(-0.1, 0.1) (hanging), as Gymnasium.
Observation (cos t1, sin t1, cos t2, sin t2, t1_dot, t2_dot), as Gymnasium.
Reward in [0, 1]: the tip height h = -cos t1 - cos(t1 + t2) in [-2, 2] rescaled, (h + 2) / 4, after the
step: 0 hanging, 1 with both links straight up. No termination (Gymnasium ends the episode when
h > 1; here the task is to get up and stay up); limit 500 steps as Acrobot-v1.
"""

import math

import torch

from pql_scaling.tasks.base import Task, angle_normalize


class AcrobotSwingup(Task):
    name = "acrobot_swingup"
    obs_dim = 6
    act_dim = 1
    state_dim = 4  # theta1, theta2, theta1_dot, theta2_dot (Gymnasium's order)
    max_episode_steps = 500
    action_low = (-1.0,)
    action_high = (1.0,)
    solved_return = 250.0
    solved_source = (
        "Gymnasium Acrobot-v1's reward_threshold is -100 on its -1-per-step scale: reach the goal line (tip height "
        "h > 1) within ~100 of 500 steps. Here the reward is (h + 2) / 4 per step with no termination, so a policy "
        "that swings the tip up and keeps it high pays more than 0.75 per step up there; 250 = an average tip height "
        "at the pivot (h = 0) over the whole episode, swing-up included; a uniform-random policy gets ~20"
    )
    dt, l1, m1, m2, lc1, lc2, moi, g = 0.2, 1.0, 1.0, 1.0, 0.5, 0.5, 1.0, 9.8
    max_vel1, max_vel2 = 4 * math.pi, 9 * math.pi

    def initial_state(self, n, generator):
        return self.uniform(n, (-0.1,) * 4, (0.1,) * 4, generator)

    def observe(self, state):
        t1, t2, d1, d2 = state.unbind(1)
        return torch.stack([torch.cos(t1), torch.sin(t1), torch.cos(t2), torch.sin(t2), d1, d2], dim=1)

    def derivs(self, s, a):
        t1, t2, dt1, dt2 = s.unbind(1)
        m1, m2, l1, lc1, lc2, i1, i2, g = (
            self.m1,
            self.m2,
            self.l1,
            self.lc1,
            self.lc2,
            self.moi,
            self.moi,
            self.g,
        )
        cos2, sin2 = torch.cos(t2), torch.sin(t2)
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * cos2) + i1 + i2
        d2 = m2 * (lc2**2 + l1 * lc2 * cos2) + i2
        # cos(x - pi/2) = sin(x)
        phi2 = m2 * lc2 * g * torch.sin(t1 + t2)
        phi1 = (
            -m2 * l1 * lc2 * dt2**2 * sin2
            - 2 * m2 * l1 * lc2 * dt2 * dt1 * sin2
            + (m1 * lc1 + m2 * l1) * g * torch.sin(t1)
            + phi2
        )
        ddt2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * dt1**2 * sin2 - phi2) / (m2 * lc2**2 + i2 - d2**2 / d1)
        ddt1 = -(d2 * ddt2 + phi1) / d1
        return torch.stack([dt1, dt2, ddt1, ddt2], dim=1)

    def dynamics(self, state, action):
        a = action[:, 0].clamp(-1.0, 1.0)
        h = self.dt
        k1 = self.derivs(state, a)
        k2 = self.derivs(state + h / 2 * k1, a)
        k3 = self.derivs(state + h / 2 * k2, a)
        k4 = self.derivs(state + h * k3, a)
        t1, t2, d1, d2 = (state + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)).unbind(1)
        t1, t2 = angle_normalize(t1), angle_normalize(t2)
        d1, d2 = d1.clamp(-self.max_vel1, self.max_vel1), d2.clamp(-self.max_vel2, self.max_vel2)
        reward = (2 - torch.cos(t1) - torch.cos(t1 + t2)) / 4
        terminated = torch.zeros_like(reward, dtype=torch.bool)
        return torch.stack([t1, t2, d1, d2], dim=1), reward, terminated
