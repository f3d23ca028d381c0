"""Cart-pole swing-up: Gymnasium CartPole-v1's physics with a continuous force, the pole starting down.

Physics (facts from Gymnasium 1.x classic_control/cartpole.py, i.e. Barto, Sutton & Anderson 1983 as
corrected by Florian 2007): gravity 9.8, cart 1.0 kg, pole 0.1 kg with half-length 0.5 (uniform rod:
the 4/3 term), explicit Euler with tau = 0.02 s; theta = 0 is upright, positive force pushes right.
The action u in [-1, 1] is the force as a fraction of force_mag = 10 N (Gymnasium's bang-bang
magnitude), so force = 10 u; the pole angle is wrapped to [-pi, pi) (only cos/sin enter the physics).

Start: theta ~ pi + U(-0.05, 0.05) (hanging), x, x_dot, theta_dot ~ U(-0.05, 0.05).
Observation (x, x_dot, cos theta, sin theta, theta_dot).
Reward in [0, 1] per step: dm_control suite cartpole's smooth swing-up reward (cartpole.py
`_get_reward`), upright * centered * small_control * small_velocity with
  upright = (cos theta + 1) / 2,  centered = (1 + tol(x, margin 2)) / 2,
  small_control = (4 + quadratic_tol(u, margin 1)) / 5,  small_velocity = (1 + tol(theta_dot, margin 5)) / 2,
where tol is dm_control's gaussian tolerance (1 at 0, 0.1 at the margin).
Track limits: the episode terminates when |x| > 2.4 (Gymnasium's x_threshold), so leaving the
track forfeits all later (non-negative) reward. Limit 1000 steps (20 s, dm_control's episode length).
"""

import math

import torch

from pql_scaling.tasks.base import Task, angle_normalize

_TOL_SCALE = math.sqrt(-2 * math.log(0.1))  # dm_control gaussian tolerance: value 0.1 at the margin


def tolerance(x, margin):
    """dm_control rewards.tolerance(x, bounds=(0, 0), margin, sigmoid='gaussian', value_at_margin=0.1)."""
    return torch.exp(-0.5 * (x * (_TOL_SCALE / margin)) ** 2)


def quadratic_tolerance(x, margin):
    """dm_control rewards.tolerance(x, bounds=(0, 0), margin, sigmoid='quadratic', value_at_margin=0)."""
    return (1 - (x / margin) ** 2).clamp(min=0.0)


class CartpoleSwingup(Task):
    name = "cartpole_swingup"
    obs_dim = 5
    act_dim = 1
    state_dim = 4  # x, x_dot, theta, theta_dot (Gymnasium's order)
    max_episode_steps = 1000
    action_low = (-1.0,)
    action_high = (1.0,)
    solved_return = 700.0
    solved_source = (
        "dm_control's cartpole swingup (same reward, 1000 steps) defines no threshold; 700 of at most ~900 "
        "(the swing-up itself pays little) means the pole is swung up and balanced near the centre for about "
        "three quarters of the 20 s episode (a balanced step pays ~0.95); a uniform-random policy gets ~30"
    )
    gravity, masscart, masspole, length, force_mag, tau, x_threshold = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02, 2.4

    def initial_state(self, n, generator):
        return self.uniform(
            n, (-0.05, -0.05, math.pi - 0.05, -0.05), (0.05, 0.05, math.pi + 0.05, 0.05), generator
        )

    def observe(self, state):
        x, x_dot, th, th_dot = state.unbind(1)
        return torch.stack([x, x_dot, torch.cos(th), torch.sin(th), th_dot], dim=1)

    def dynamics(self, state, action):
        x, x_dot, th, th_dot = state.unbind(1)
        u = action[:, 0].clamp(-1.0, 1.0)
        total_mass = self.masscart + self.masspole
        pml = self.masspole * self.length
        cos, sin = torch.cos(th), torch.sin(th)
        temp = (u * self.force_mag + pml * th_dot**2 * sin) / total_mass
        th_acc = (self.gravity * sin - cos * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * cos**2 / total_mass)
        )
        x_acc = temp - pml * th_acc * cos / total_mass
        # explicit Euler, as Gymnasium's default kinematics_integrator="euler": positions use old velocities
        x, th = x + self.tau * x_dot, th + self.tau * th_dot
        x_dot, th_dot = x_dot + self.tau * x_acc, th_dot + self.tau * th_acc
        th = angle_normalize(th)
        reward = (
            (torch.cos(th) + 1)
            / 2
            * (1 + tolerance(x, 2.0))
            / 2
            * (4 + quadratic_tolerance(u, 1.0))
            / 5
            * (1 + tolerance(th_dot, 5.0))
            / 2
        )
        terminated = x.abs() > self.x_threshold
        return torch.stack([x, x_dot, th, th_dot], dim=1), reward, terminated
