"""Double cart-pole swing-up: a cart on a track carrying two poles in series, both starting down.

Harder sibling of cartpole_swingup (same reward family as dm_control suite cartpole `two_poles`):
underactuated, chaotic, and the balance needs precise coordinated control of both links.

Physics: Lagrangian mechanics of a cart (m0 = 1 kg) with two uniform rods hinged in series
(m1 = m2 = 0.1 kg, lengths l1 = l2 = 0.5 m, centres of mass at l/2, inertia m l^2 / 12 about the
centre), frictionless, g = 9.8, horizontal force on the cart force_mag * u with force_mag = 20 N.
Generalised coordinates q = (x, th1, th2), both angles *absolute* from upright (positive leaning
towards -x, as cartpole_swingup / Gymnasium CartPole). With a1 = m1 lc1 + m2 l1, a2 = m2 lc2,
b = m2 l1 lc2 the equations M(q) q'' = r(q, q', F) are
  M = [[m0+m1+m2,       a1 cos th1,                 a2 cos th2],
       [a1 cos th1,     m1 lc1^2 + I1 + m2 l1^2,    b cos(th1 - th2)],
       [a2 cos th2,     b cos(th1 - th2),           m2 lc2^2 + I2]]
  r = [F + a1 sin th1 th1'^2 + a2 sin th2 th2'^2,
       g a1 sin th1 - b sin(th1 - th2) th2'^2,
       g a2 sin th2 + b sin(th1 - th2) th1'^2]
(derived from T = sum of translational + rotational kinetic energies, V = g * sum m_i y_i; checked in
tests against autograd of the Lagrangian and by energy conservation). M is solved in closed form
(3x3 adjugate), integrated with classic RK4, 4 substeps per 0.02 s control step (over 10 s of
free motion energy drifts by at most ~0.003 J, against ~2 J needed to swing both poles up;
2 substeps drift ~0.025 J).
Angular velocities are clipped to +-max_ang_vel (a numerical guard, like Acrobot's velocity limits;
a swing-up policy stays far below it).

Start: th1, th2 ~ pi + U(-0.05, 0.05), x and all velocities ~ U(-0.05, 0.05).
Observation (x, cos th1, sin th1, cos th2, sin th2, x', th1', th2').
Reward in [0, 1]: dm_control cartpole smooth reward (cartpole.py `_get_reward`): mean over poles of
(cos th + 1) / 2, times centered, small_control, and small_velocity = (1 + min over poles of
tol(th', margin 5)) / 2; see cartpole_swingup. Terminates when |x| > 2.4; limit 1000 steps.
"""

import math

import torch

from pql_scaling.tasks.base import Task, angle_normalize
from pql_scaling.tasks.cartpole_swingup import quadratic_tolerance, tolerance


class DoubleCartpoleSwingup(Task):
    name = "double_cartpole_swingup"
    obs_dim = 8
    act_dim = 1
    state_dim = 6  # x, th1, th2, x_dot, th1_dot, th2_dot
    max_episode_steps = 1000
    action_low = (-1.0,)
    action_high = (1.0,)
    solved_return = 300.0
    solved_source = (
        "'clearly learning', not solved: dm_control's cartpole two_poles (the same reward family) defines no "
        "threshold; 300 of 1000 means both poles spend much of the episode above the horizontal (a balanced "
        "double pole would pay ~0.95 per step); a uniform-random policy gets ~8"
    )
    m0, m1, m2, l1, l2, g, force_mag = 1.0, 0.1, 0.1, 0.5, 0.5, 9.8, 20.0
    dt, substeps, x_threshold, max_ang_vel = 0.02, 4, 2.4, 10 * math.pi

    def initial_state(self, n, generator):
        low = (-0.05, math.pi - 0.05, math.pi - 0.05, -0.05, -0.05, -0.05)
        return self.uniform(n, low, tuple(v + 0.1 for v in low), generator)

    def observe(self, state):
        x, th1, th2, xd, th1d, th2d = state.unbind(1)
        return torch.stack(
            [x, torch.cos(th1), torch.sin(th1), torch.cos(th2), torch.sin(th2), xd, th1d, th2d], dim=1
        )

    def accel(self, q, qd, force):
        """q'' = M(q)^-1 r(q, q', F) for (n, 3) batches, by the adjugate of the symmetric 3x3 M."""
        th1, th2 = q[:, 1], q[:, 2]
        xd, th1d, th2d = qd.unbind(1)
        lc1, lc2 = self.l1 / 2, self.l2 / 2
        a1, a2, b = self.m1 * lc1 + self.m2 * self.l1, self.m2 * lc2, self.m2 * self.l1 * lc2
        c1, s1, c2, s2 = torch.cos(th1), torch.sin(th1), torch.cos(th2), torch.sin(th2)
        c12, s12 = torch.cos(th1 - th2), torch.sin(th1 - th2)
        m00 = self.m0 + self.m1 + self.m2
        m11 = self.m1 * lc1**2 + self.m1 * self.l1**2 / 12 + self.m2 * self.l1**2
        m22 = self.m2 * lc2**2 + self.m2 * self.l2**2 / 12
        m01, m02, m12 = a1 * c1, a2 * c2, b * c12
        r0 = force + a1 * s1 * th1d**2 + a2 * s2 * th2d**2
        r1 = self.g * a1 * s1 - b * s12 * th2d**2
        r2 = self.g * a2 * s2 + b * s12 * th1d**2
        # adjugate (cofactors) of the symmetric M; M is positive definite so det > 0
        A00, A11, A22 = m11 * m22 - m12**2, m00 * m22 - m02**2, m00 * m11 - m01**2
        A01, A02, A12 = m02 * m12 - m01 * m22, m01 * m12 - m11 * m02, m01 * m02 - m00 * m12
        det = m00 * A00 + m01 * A01 + m02 * A02
        return torch.stack(
            [
                (A00 * r0 + A01 * r1 + A02 * r2) / det,
                (A01 * r0 + A11 * r1 + A12 * r2) / det,
                (A02 * r0 + A12 * r1 + A22 * r2) / det,
            ],
            dim=1,
        )

    def derivs(self, s, force):
        return torch.cat([s[:, 3:], self.accel(s[:, :3], s[:, 3:], force)], dim=1)

    def dynamics(self, state, action):
        u = action[:, 0].clamp(-1.0, 1.0)
        force = u * self.force_mag
        h = self.dt / self.substeps
        s = state
        for _ in range(self.substeps):  # fixed trip count: unrolled, static graph
            k1 = self.derivs(s, force)
            k2 = self.derivs(s + h / 2 * k1, force)
            k3 = self.derivs(s + h / 2 * k2, force)
            k4 = self.derivs(s + h * k3, force)
            s = s + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        x, th1, th2, xd, th1d, th2d = s.unbind(1)
        th1, th2 = angle_normalize(th1), angle_normalize(th2)
        th1d, th2d = (
            th1d.clamp(-self.max_ang_vel, self.max_ang_vel),
            th2d.clamp(-self.max_ang_vel, self.max_ang_vel),
        )
        upright = ((torch.cos(th1) + 1) / 2 + (torch.cos(th2) + 1) / 2) / 2
        small_velocity = (1 + torch.minimum(tolerance(th1d, 5.0), tolerance(th2d, 5.0))) / 2
        reward = (
            upright * (1 + tolerance(x, 2.0)) / 2 * (4 + quadratic_tolerance(u, 1.0)) / 5 * small_velocity
        )
        terminated = x.abs() > self.x_threshold
        return torch.stack([x, th1, th2, xd, th1d, th2d], dim=1), reward, terminated

    def energy(self, state):
        """Total mechanical energy (for tests): kinetic + potential, from link kinematics directly."""
        x, th1, th2, xd, th1d, th2d = state.unbind(1)
        lc1, lc2 = self.l1 / 2, self.l2 / 2
        v1x, v1y = xd + lc1 * torch.cos(th1) * th1d, -lc1 * torch.sin(th1) * th1d
        v2x = xd + self.l1 * torch.cos(th1) * th1d + lc2 * torch.cos(th2) * th2d
        v2y = -self.l1 * torch.sin(th1) * th1d - lc2 * torch.sin(th2) * th2d
        kin = 0.5 * self.m0 * xd**2 + 0.5 * self.m1 * (v1x**2 + v1y**2) + 0.5 * self.m2 * (v2x**2 + v2y**2)
        kin = kin + 0.5 * self.m1 * self.l1**2 / 12 * th1d**2 + 0.5 * self.m2 * self.l2**2 / 12 * th2d**2
        pot = self.g * (
            self.m1 * lc1 * torch.cos(th1) + self.m2 * (self.l1 * torch.cos(th1) + lc2 * torch.cos(th2))
        )
        return kin + pot
