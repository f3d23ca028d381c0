"""isaaclab_tasks (test double): importing it registers the tasks with Gymnasium, as Isaac Lab's does, each
with `entry_point` (the env class) and kwargs holding `env_cfg_entry_point` ("module:ConfigClass").

Every task here is the same toy MDP under a real task's id (Isaac Lab 3.0.0's ids, which have no version suffix;
Isaac Lab 2.x's, e.g. Isaac-Cartpole-Direct-v0, are registered when FAKE_ISAACLAB_VERSION is 2.x): a point mass in
act_dim dimensions, the action a force (clamped to [-1, 1] after the task's action_scale, as the real tasks clamp
joint targets), terminated when |x|_inf > 1, timed out when episode_length_buf >= max_episode_length
(isaaclab.envs.mdp.time_out, the manager-based rule, also 3.0.0's direct Cartpole _get_dones) or
>= max_episode_length - 1 (3.0.0's direct reorient task). Policy observations are (x, v) tiled to the task's
width; the critic group adds privileged terms (the episode's progress and the mass's energy) that the policy
never sees.

Physics (3.0): each config's `sim.physics` holds the task's presets (`PhysicsPresets`, standing in for Isaac Lab's
PresetCfg: newton_mjwarp with task-tuned solver settings, physx, and the default newton_mjwarp), which
isaaclab_tasks.utils.parse_env_cfg resolves (overrides=["physics=<name>"], else the default). Isaac Lab 2.x
configs have no presets: no physics config (PhysX).
"""

import gymnasium as gym
import torch
from isaaclab import VERSION_MAJOR
from isaaclab.envs import DirectRLEnv, DirectRLEnvCfg, ManagerBasedRLEnv, ManagerBasedRLEnvCfg
from isaaclab_newton.physics import MJWarpSolverCfg, NewtonCfg
from isaaclab_physx.physics import PhysxCfg


class PhysicsPresets:
    """A task's physics presets by name (Isaac Lab 3.0's PresetCfg on env_cfg.sim.physics), with a default."""

    def __init__(self, default="newton_mjwarp", **presets):
        self.presets, self.default = presets, default


def _presets(**solver):
    if VERSION_MAJOR < 3:
        return None
    return PhysicsPresets(newton_mjwarp=NewtonCfg(solver_cfg=MJWarpSolverCfg(**solver)), physx=PhysxCfg())


class _PointMass:
    action_scale = 1.0

    def _setup(self):
        d = self._act_dim()
        self.x = torch.zeros(self.num_envs, d, device=self.device)
        self.v = torch.zeros_like(self.x)
        self.last_actions = torch.zeros_like(self.x)  # what the task received (tests read it)

    def _pre_physics_step(self, actions):
        self.last_actions = actions.clone()
        self._force = (actions * self.action_scale).clamp(-1.0, 1.0)

    def _apply_action(self):
        dt = self.cfg.sim.dt
        self.v = self.v + 20.0 * self._force * dt
        self.x = self.x + self.v * dt

    def _get_dones(self):
        out_of_bounds = (self.x.abs() > 1.0).any(dim=-1)
        time_out = self.episode_length_buf >= self.max_episode_length
        return out_of_bounds, time_out

    def _get_rewards(self):
        return 1.0 - self.x.square().mean(-1) - 2.0 * self.reset_terminated.float()

    def _reset_idx(self, env_ids):
        super()._reset_idx(env_ids)
        n = len(env_ids)
        self.x[env_ids] = (torch.rand(n, self.x.shape[1], device=self.device) - 0.5) * 0.5
        self.v[env_ids] = 0.0

    def _state(self):
        return torch.cat([self.x, self.v], dim=-1)

    def _tiled(self, width):
        s = self._state()
        reps = -(-width // s.shape[1])
        return s.repeat(1, reps)[:, :width].clone()

    def _privileged(self):
        progress = (self.episode_length_buf.float() / self.max_episode_length)[:, None]
        energy = 0.5 * self.v.square().sum(-1, keepdim=True)
        return torch.cat([progress, energy], dim=-1)


# -- direct workflow ---------------------------------------------------------------------------------


class PointDirectEnv(_PointMass, DirectRLEnv):
    def _act_dim(self):
        return int(self.single_action_space.shape[0])

    def _get_observations(self):
        obs = {"policy": self._tiled(int(self.single_observation_space["policy"].shape[0]))}
        if self.cfg.state_space:
            width = int(self.cfg.state_space)
            obs["critic"] = torch.cat([self._tiled(width - 2), self._privileged()], dim=-1)
        return obs


class CartpoleEnvCfg(DirectRLEnvCfg):
    action_space = 1
    observation_space = 4
    state_space = 0
    episode_length_s = 5.0

    def __init__(self):
        super().__init__()
        self.sim.physics = _presets(njmax=5, nconmax=3)


class AllegroCubeEnvCfg(DirectRLEnvCfg):
    action_space = 16
    observation_space = 124
    state_space = 187
    episode_length_s = 10.0

    def __init__(self):
        super().__init__()
        self.sim.physics = _presets()


class PointAllegroEnv(PointDirectEnv):
    action_scale = 0.5

    def _get_dones(self):  # 3.0.0's reorient_direct_env.py writes the time-out so (one step sooner)
        out_of_bounds = (self.x.abs() > 1.0).any(dim=-1)
        time_out = self.episode_length_buf >= self.max_episode_length - 1
        return out_of_bounds, time_out


# -- manager-based workflow ----------------------------------------------------------------------


class PointManagerEnv(_PointMass, ManagerBasedRLEnv):
    def _act_dim(self):
        return int(self.cfg.action_dim)

    def _term(self, name):
        if name == "state":
            return self._tiled(64)
        if name == "privileged":
            return self._privileged()
        raise KeyError(name)


class AnymalDFlatEnvCfg(ManagerBasedRLEnvCfg):
    action_dim = 12
    episode_length_s = 20.0
    decimation = 4
    # policy concatenated; critic left as a dict of its terms
    observations = {"policy": (True, {"state": 48}), "critic": (False, {"state": 48, "privileged": 2})}


def _cfg_dt(cls, dt):
    original = cls.__init__

    def __init__(self):
        original(self)
        self.sim.dt = dt
        self.sim.render_interval = self.decimation
        self.sim.physics = _presets(njmax=60, nconmax=25, cone="elliptic", impratio=100.0)

    cls.__init__ = __init__
    return cls


_cfg_dt(AnymalDFlatEnvCfg, 0.005)

_V3 = VERSION_MAJOR >= 3
gym.register(
    id="Isaac-Cartpole-Direct" if _V3 else "Isaac-Cartpole-Direct-v0",
    entry_point=__name__ + ":PointDirectEnv",
    disable_env_checker=True,
    kwargs={"env_cfg_entry_point": __name__ + ":CartpoleEnvCfg"},
)
gym.register(
    id="Isaac-Reorient-Cube-Allegro-Direct" if _V3 else "Isaac-Repose-Cube-Allegro-Direct-v0",
    entry_point=__name__ + ":PointAllegroEnv",
    disable_env_checker=True,
    kwargs={"env_cfg_entry_point": __name__ + ":AllegroCubeEnvCfg"},
)
gym.register(
    id="Isaac-Velocity-Flat-AnymalD" if _V3 else "Isaac-Velocity-Flat-Anymal-D-v0",
    entry_point=__name__ + ":PointManagerEnv",
    disable_env_checker=True,
    kwargs={"env_cfg_entry_point": AnymalDFlatEnvCfg},
)
