"""MJCF locomotion tasks (Gymnasium v5 semantics) shared by the `mujoco` and `mjwarp` backends.

A task here is the *logic* of a Gymnasium v5 MuJoCo env written over batched torch tensors: which
model to load, the observation, the reward terms, the termination rule and the reset noise. The
backend owns the physics (MuJoCo's C rollout on CPU, MuJoCo Warp on CUDA) and hands the task, after
each env step of `frame_skip` physics steps, the batched fields it asks for:

    qpos (n, nq), qvel (n, nv)                    the state after the last physics step
    fields[name] (n, ...) for name in `fields`     MjData quantities as Gymnasium reads them after
                                                   `mj_step(nstep=frame_skip)` + `mj_rnePostConstraint`

Gymnasium reads derived quantities (xpos, xipos, cinert, cvel, qfrc_actuator, cfrc_ext) right after
`mj_step`, whose position/velocity stages ran at the start of the last physics step; so these fields
"lag" qpos/qvel by one physics step. Both backends reproduce that (see envs/mujoco_backend.py).
After a reset Gymnasium calls `mj_resetData` + `mj_forward` (no `mj_rnePostConstraint`), so
`cfrc_ext` is zero in a first observation: `reset_fields` applies that.

Defaults below are Gymnasium v5's (gymnasium/envs/mujoco/*_v5.py, gymnasium 1.x): every constructor
keyword of those envs that changes the MDP can be overridden by name through `envs.make(...)`.
Models are the XML files shipped inside the installed `gymnasium` package (never copied here).
"""

import math
import os
from typing import Dict, Tuple

import torch

MAX_EPISODE_STEPS = 1000  # Gymnasium registers all five v5 envs with TimeLimit(1000)


def gymnasium_asset(xml_file):
    """Absolute path of an MJCF model shipped inside the installed gymnasium package."""
    import importlib.util

    spec = importlib.util.find_spec("gymnasium")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the MJCF locomotion tasks load their models from the gymnasium package: "
            "pip install 'gymnasium[mujoco]>=1.0' (or the project's [mujoco] extra)"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "envs", "mujoco", "assets", xml_file)
    if not os.path.exists(path):
        raise FileNotFoundError("model %s not found in the installed gymnasium (need gymnasium>=1.0)" % path)
    return path


class MJCFTask:
    """Base class: subclasses set the class attributes and `defaults`, and define the MDP (below)."""

    name = ""
    xml_file = ""
    frame_skip = 5
    max_episode_steps = MAX_EPISODE_STEPS
    fields = ()  # MjData fields (lagged, see module docstring) the task needs besides qpos/qvel
    defaults = {}  # Gymnasium v5 constructor defaults

    def __init__(self, mjmodel, device, **overrides):
        unknown = set(overrides) - set(self.defaults)
        if unknown:
            raise ValueError(
                "task %r has no parameter(s) %s; valid: %s"
                % (self.name, ", ".join(sorted(unknown)), ", ".join(sorted(self.defaults)))
            )
        self.p = dict(self.defaults)
        self.p.update(overrides)
        self.device = torch.device(device)
        self.nq, self.nv, self.nu, self.nbody = mjmodel.nq, mjmodel.nv, mjmodel.nu, mjmodel.nbody
        self.dt = float(mjmodel.opt.timestep) * self.frame_skip
        f64 = dict(dtype=torch.float64, device=self.device)
        self.init_qpos = torch.as_tensor(mjmodel.qpos0.copy(), **f64)
        self.init_qvel = torch.zeros(self.nv, **f64)
        self.body_mass = torch.as_tensor(mjmodel.body_mass.copy(), **f64)
        rng = torch.as_tensor(mjmodel.actuator_ctrlrange.copy(), **f64)
        self.ctrl_low, self.ctrl_high = rng[:, 0], rng[:, 1]
        self.obs_dim = int(
            self.observe(self.init_qpos[None], self.init_qvel[None], self.dummy_fields(1)).shape[1]
        )
        self.act_dim = self.nu

    # -- what a backend needs -------------------------------------------------------------------
    def dummy_fields(self, n):
        shapes = {
            "xpos": (self.nbody, 3),
            "xipos": (self.nbody, 3),
            "cinert": (self.nbody, 10),
            "cvel": (self.nbody, 6),
            "cfrc_ext": (self.nbody, 6),
            "qfrc_actuator": (self.nv,),
        }
        return {
            k: torch.zeros((n,) + shapes[k], dtype=torch.float64, device=self.device) for k in self.fields
        }

    def reset_fields(self, fields):
        """Fields as Gymnasium has them right after a reset (mj_resetData + mj_forward): cfrc_ext = 0."""
        if "cfrc_ext" in fields:
            fields = dict(fields)
            fields["cfrc_ext"] = torch.zeros_like(fields["cfrc_ext"])
        return fields

    def action_to_ctrl(self, action):
        """[-1, 1] -> the actuators' ctrlrange, linearly (Gymnasium's action space is the ctrlrange)."""
        action = action.to(self.device, torch.float64).clamp(-1.0, 1.0)
        return self.ctrl_low + (action + 1.0) * 0.5 * (self.ctrl_high - self.ctrl_low)

    def reset_noise(self, n, generator) -> Tuple[torch.Tensor, torch.Tensor]:
        """Gymnasium v5 `reset_model`: uniform(+-scale) on qpos and qvel unless overridden."""
        s = float(self.p["reset_noise_scale"])
        return self.init_qpos + self._uniform(n, self.nq, s, generator), self.init_qvel + self._uniform(
            n, self.nv, s, generator
        )

    def _uniform(self, n, k, scale, generator):
        u = torch.rand((n, k), generator=generator, device=self.device, dtype=torch.float64)
        return (2.0 * u - 1.0) * scale

    def _normal(self, n, k, scale, generator):
        return scale * torch.randn((n, k), generator=generator, device=self.device, dtype=torch.float64)

    def position(self, qpos, fields) -> torch.Tensor:
        """The position whose finite difference over one env step is the forward velocity (n, k)."""
        return qpos[:, 0:1]

    def transition(self, pos_before, ctrl, qpos, qvel, fields):
        """What a Gymnasium v5 `step` computes after the physics: (position, obs, reward, terminated)."""
        pos = self.position(qpos, fields)
        reward, terminated = self.reward_and_termination(
            (pos - pos_before) / self.dt, ctrl, qpos, qvel, fields
        )
        return pos, self.observe(qpos, qvel, fields), reward, terminated

    # -- the MDP: every subclass defines --------------------------------------------------------
    #   observe(qpos, qvel, fields) -> (n, obs_dim) float64
    #   reward_and_termination(velocity, ctrl, qpos, qvel, fields) -> reward (n,), terminated (n,) bool
    # where velocity is the (n, k) finite difference of `position` over the env step and ctrl the
    # native actions (n, nu).

    def _healthy_terminated(self, healthy):
        terminated = ~healthy if self.p["terminate_when_unhealthy"] else torch.zeros_like(healthy)
        return healthy.to(torch.float64) * float(self.p["healthy_reward"]), terminated


def _ctrl_cost(weight, ctrl):
    return float(weight) * ctrl.square().sum(-1)


def _in_open(x, low, high):
    return (x > low) & (x < high)


class HalfCheetah(MJCFTask):
    name, xml_file, frame_skip = "HalfCheetah", "half_cheetah.xml", 5
    defaults = dict(
        forward_reward_weight=1.0,
        ctrl_cost_weight=0.1,
        reset_noise_scale=0.1,
        exclude_current_positions_from_observation=True,
    )

    def reset_noise(self, n, generator):  # qvel noise is Gaussian in HalfCheetah-v5
        s = float(self.p["reset_noise_scale"])
        return self.init_qpos + self._uniform(n, self.nq, s, generator), self.init_qvel + self._normal(
            n, self.nv, s, generator
        )

    def observe(self, qpos, qvel, fields):
        skip = 1 if self.p["exclude_current_positions_from_observation"] else 0
        return torch.cat([qpos[:, skip:], qvel], dim=1)

    def reward_and_termination(self, velocity, ctrl, qpos, qvel, fields):
        reward = float(self.p["forward_reward_weight"]) * velocity[:, 0] - _ctrl_cost(
            self.p["ctrl_cost_weight"], ctrl
        )
        return reward, torch.zeros_like(reward, dtype=torch.bool)


class Hopper(MJCFTask):
    name, xml_file, frame_skip = "Hopper", "hopper.xml", 4
    defaults = dict(
        forward_reward_weight=1.0,
        ctrl_cost_weight=1e-3,
        healthy_reward=1.0,
        terminate_when_unhealthy=True,
        healthy_state_range=(-100.0, 100.0),
        healthy_z_range=(0.7, float("inf")),
        healthy_angle_range=(-0.2, 0.2),
        reset_noise_scale=5e-3,
        exclude_current_positions_from_observation=True,
    )

    def observe(self, qpos, qvel, fields):
        skip = 1 if self.p["exclude_current_positions_from_observation"] else 0
        return torch.cat([qpos[:, skip:], qvel.clamp(-10.0, 10.0)], dim=1)

    def is_healthy(self, qpos, qvel):
        state = torch.cat([qpos, qvel], dim=1)[:, 2:]
        ok = _in_open(state, *self.p["healthy_state_range"]).all(dim=1)
        ok = ok & _in_open(qpos[:, 1], *self.p["healthy_z_range"])
        return ok & _in_open(qpos[:, 2], *self.p["healthy_angle_range"])

    def reward_and_termination(self, velocity, ctrl, qpos, qvel, fields):
        healthy_reward, terminated = self._healthy_terminated(self.is_healthy(qpos, qvel))
        reward = float(self.p["forward_reward_weight"]) * velocity[:, 0] + healthy_reward
        return reward - _ctrl_cost(self.p["ctrl_cost_weight"], ctrl), terminated


class Walker2d(Hopper):
    name, xml_file, frame_skip = "Walker2d", "walker2d_v5.xml", 4
    defaults = dict(
        forward_reward_weight=1.0,
        ctrl_cost_weight=1e-3,
        healthy_reward=1.0,
        terminate_when_unhealthy=True,
        healthy_z_range=(0.8, 2.0),
        healthy_angle_range=(-1.0, 1.0),
        reset_noise_scale=5e-3,
        exclude_current_positions_from_observation=True,
    )

    def is_healthy(self, qpos, qvel):
        return _in_open(qpos[:, 1], *self.p["healthy_z_range"]) & _in_open(
            qpos[:, 2], *self.p["healthy_angle_range"]
        )


class Ant(MJCFTask):
    name, xml_file, frame_skip = "Ant", "ant.xml", 5
    fields = ("xpos", "cfrc_ext")
    defaults = dict(
        forward_reward_weight=1.0,
        ctrl_cost_weight=0.5,
        contact_cost_weight=5e-4,
        healthy_reward=1.0,
        main_body=1,
        terminate_when_unhealthy=True,
        healthy_z_range=(0.2, 1.0),
        contact_force_range=(-1.0, 1.0),
        reset_noise_scale=0.1,
        exclude_current_positions_from_observation=True,
        include_cfrc_ext_in_observation=True,
    )

    def reset_noise(self, n, generator):  # qvel noise is Gaussian in Ant-v5
        s = float(self.p["reset_noise_scale"])
        return self.init_qpos + self._uniform(n, self.nq, s, generator), self.init_qvel + self._normal(
            n, self.nv, s, generator
        )

    def position(self, qpos, fields):
        return fields["xpos"][:, int(self.p["main_body"]), :2]

    def contact_forces(self, fields):
        return fields["cfrc_ext"].clamp(*self.p["contact_force_range"])

    def observe(self, qpos, qvel, fields):
        parts = [qpos[:, 2:] if self.p["exclude_current_positions_from_observation"] else qpos, qvel]
        if self.p["include_cfrc_ext_in_observation"]:
            parts.append(self.contact_forces(fields)[:, 1:].reshape(qpos.shape[0], -1))
        return torch.cat(parts, dim=1)

    def reward_and_termination(self, velocity, ctrl, qpos, qvel, fields):
        z = qpos[:, 2]
        low, high = self.p["healthy_z_range"]
        healthy = torch.isfinite(torch.cat([qpos, qvel], dim=1)).all(dim=1) & (z >= low) & (z <= high)
        healthy_reward, terminated = self._healthy_terminated(healthy)
        contact_cost = float(self.p["contact_cost_weight"]) * self.contact_forces(fields).square().sum(
            dim=(1, 2)
        )
        reward = float(self.p["forward_reward_weight"]) * velocity[:, 0] + healthy_reward
        return reward - _ctrl_cost(self.p["ctrl_cost_weight"], ctrl) - contact_cost, terminated


class Humanoid(MJCFTask):
    name, xml_file, frame_skip = "Humanoid", "humanoid.xml", 5
    fields = ("xipos", "cinert", "cvel", "qfrc_actuator", "cfrc_ext")
    defaults = dict(
        forward_reward_weight=1.25,
        ctrl_cost_weight=0.1,
        contact_cost_weight=5e-7,
        contact_cost_range=(-math.inf, 10.0),
        healthy_reward=5.0,
        terminate_when_unhealthy=True,
        healthy_z_range=(1.0, 2.0),
        reset_noise_scale=1e-2,
        exclude_current_positions_from_observation=True,
        include_cinert_in_observation=True,
        include_cvel_in_observation=True,
        include_qfrc_actuator_in_observation=True,
        include_cfrc_ext_in_observation=True,
    )

    def position(self, qpos, fields):  # Gymnasium's mass_center: body-mass-weighted mean of xipos
        return (fields["xipos"] * self.body_mass[:, None]).sum(dim=1)[:, :2] / self.body_mass.sum()

    def observe(self, qpos, qvel, fields):
        n = qpos.shape[0]
        parts = [qpos[:, 2:] if self.p["exclude_current_positions_from_observation"] else qpos, qvel]
        if self.p["include_cinert_in_observation"]:
            parts.append(fields["cinert"][:, 1:].reshape(n, -1))
        if self.p["include_cvel_in_observation"]:
            parts.append(fields["cvel"][:, 1:].reshape(n, -1))
        if self.p["include_qfrc_actuator_in_observation"]:
            parts.append(fields["qfrc_actuator"][:, 6:])
        if self.p["include_cfrc_ext_in_observation"]:
            parts.append(fields["cfrc_ext"][:, 1:].reshape(n, -1))
        return torch.cat(parts, dim=1)

    def reward_and_termination(self, velocity, ctrl, qpos, qvel, fields):
        healthy_reward, terminated = self._healthy_terminated(
            _in_open(qpos[:, 2], *self.p["healthy_z_range"])
        )
        contact_cost = (
            float(self.p["contact_cost_weight"]) * fields["cfrc_ext"].square().sum(dim=(1, 2))
        ).clamp(*self.p["contact_cost_range"])
        reward = float(self.p["forward_reward_weight"]) * velocity[:, 0] + healthy_reward
        return reward - _ctrl_cost(self.p["ctrl_cost_weight"], ctrl) - contact_cost, terminated


MJCF_TASKS: Dict[str, type] = {cls.name: cls for cls in (Ant, HalfCheetah, Hopper, Walker2d, Humanoid)}


def load_model_and_task(task, device, **overrides):
    """(MjModel, task logic) for one MJCF task name: what the mujoco and mjwarp backends share."""
    import mujoco

    cls = MJCF_TASKS[task]
    model = mujoco.MjModel.from_xml_path(gymnasium_asset(cls.xml_file))
    return model, cls(model, device, **overrides)
