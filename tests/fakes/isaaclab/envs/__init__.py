"""isaaclab.envs (test double): DirectRLEnv / ManagerBasedRLEnv and their configs, reduced to the step contract.

What is modelled (sources in tests/fakes/README.md):
- `step(action) -> (obs_dict, reward, terminated, time_outs, extras)`; obs_dict["policy"], and "critic" when
  the task has one (DirectRLEnvCfg.state_space > 0; a "critic" observation group in the manager-based
  workflow, whose terms may be left unconcatenated: a dict of tensors).
- In step: physics `decimation` times, episode_length_buf += 1, dones (terminated and time_outs may both be
  set), rewards, then the envs that ended are reset inside the same step (Same-Step autoreset) and the
  returned observation is computed after the reset.
- `compute_final_obs` (Isaac Lab >= 3.0 only): the observation dict is computed once more before the reset and
  stored in extras["final_obs"] (every group, every env). Neither env class removes the key on steps without
  resets (3.0.0's direct_rl_env.py / manager_based_rl_env.py): it keeps an older step's observation, so a
  consumer must read only the rows of envs that ended.
- Direct tasks return every group from their own _get_observations ({"policy": ..., "critic": ...}, e.g. 3.0.0's
  reorient_direct_env.py); the space of "critic" comes from DirectRLEnvCfg.state_space.
- `is_finite_horizon` is a config flag the env itself ignores (wrappers read it).
- `cfg.seed` seeds Python, numpy and torch at construction (isaaclab.utils.seed.configure_seed); one
  SimulationContext per process; tensors live on cfg.sim.device; `max_episode_length` = ceil(episode_length_s
  / (sim.dt * decimation)); action spaces from an int are unbounded Boxes.
"""

import math
import random

import gymnasium as gym
import numpy as np
import torch

from isaaclab import VERSION_MAJOR
from isaaclab.sim import SimulationCfg, SimulationContext


class _SceneCfg:
    def __init__(self, num_envs=4096, env_spacing=4.0):
        self.num_envs, self.env_spacing = num_envs, env_spacing


class _EnvCfgBase:
    decimation = 2
    episode_length_s = 5.0
    seed = None
    is_finite_horizon = False

    def __init__(self):
        self.sim = SimulationCfg(dt=1.0 / 120.0, render_interval=self.decimation)
        self.scene = _SceneCfg()


if VERSION_MAJOR >= 3:
    _EnvCfgBase.compute_final_obs = False


class DirectRLEnvCfg(_EnvCfgBase):
    action_space = 1
    observation_space = 4
    state_space = 0


class ManagerBasedRLEnvCfg(_EnvCfgBase):
    action_dim = 1
    # group -> (concatenate_terms, {term name: width})
    observations = {"policy": (True, {"x": 1})}


def spec_to_gym_space(spec):
    if isinstance(spec, gym.spaces.Space):
        return spec
    return gym.spaces.Box(low=-np.inf, high=np.inf, shape=(int(spec),), dtype=np.float32)


def configure_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed


class _RLEnvBase(gym.Env):
    is_vector_env = True
    metadata = {"render_modes": [None, "human", "rgb_array"], "autoreset_mode": "same_step"}

    def __init__(self, cfg, render_mode=None, **kwargs):
        self.cfg, self.render_mode, self._is_closed = cfg, render_mode, False
        if cfg.seed is not None:
            cfg.seed = configure_seed(cfg.seed)
        if SimulationContext.instance() is None:
            self.sim = SimulationContext(cfg.sim)
        else:
            raise RuntimeError("Simulation context already exists. Cannot create a new one.")
        self.num_envs = int(cfg.scene.num_envs)
        self.extras = {}
        self.episode_length_buf = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self.reset_terminated = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        self.reset_time_outs = torch.zeros_like(self.reset_terminated)
        self._configure_gym_env_spaces()
        self._setup()

    @property
    def device(self):
        return self.sim.device

    @property
    def step_dt(self):
        return self.cfg.sim.dt * self.cfg.decimation

    @property
    def max_episode_length(self):
        return math.ceil(self.cfg.episode_length_s / self.step_dt)

    def reset(self, seed=None, options=None):
        if seed is not None:
            configure_seed(seed)
        self._reset_idx(torch.arange(self.num_envs, device=self.device))
        return self._observations(), self.extras

    def step(self, action):
        action = action.to(self.device)
        self._pre_physics_step(action)
        for _ in range(self.cfg.decimation):
            self._apply_action()
        self.episode_length_buf += 1
        self.reset_terminated[:], self.reset_time_outs[:] = self._get_dones()
        self.reset_buf = self.reset_terminated | self.reset_time_outs
        self.reward_buf = self._get_rewards()
        reset_env_ids = self.reset_buf.nonzero(as_tuple=False).squeeze(-1)
        if len(reset_env_ids) > 0:
            if getattr(self.cfg, "compute_final_obs", False):
                self.extras["final_obs"] = self._observations()
            self._reset_idx(reset_env_ids)
        self.obs_buf = self._observations()
        return self.obs_buf, self.reward_buf, self.reset_terminated, self.reset_time_outs, self.extras

    def close(self):
        if not self._is_closed:
            self.sim.stop()
            self.sim.clear_instance()
            self._is_closed = True

    # the task's part
    def _setup(self):
        pass

    def _reset_idx(self, env_ids):
        self.episode_length_buf[env_ids] = 0


class DirectRLEnv(_RLEnvBase):
    def _configure_gym_env_spaces(self):
        self.single_observation_space = gym.spaces.Dict()
        self.single_observation_space["policy"] = spec_to_gym_space(self.cfg.observation_space)
        self.single_action_space = spec_to_gym_space(self.cfg.action_space)
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space["policy"], self.num_envs
        )
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        if self.cfg.state_space:
            self.single_observation_space["critic"] = spec_to_gym_space(self.cfg.state_space)

    def _observations(self):
        return self._get_observations()  # the task's dict: "policy", and "critic" where it has one


class ManagerBasedRLEnv(_RLEnvBase):
    def _configure_gym_env_spaces(self):
        self.single_observation_space = gym.spaces.Dict()
        for group, (concatenate, terms) in self.cfg.observations.items():
            if concatenate:
                width = sum(terms.values())
                self.single_observation_space[group] = gym.spaces.Box(
                    low=-np.inf, high=np.inf, shape=(width,)
                )
            else:
                self.single_observation_space[group] = gym.spaces.Dict(
                    {name: gym.spaces.Box(low=-np.inf, high=np.inf, shape=(w,)) for name, w in terms.items()}
                )
        self.single_action_space = gym.spaces.Box(low=-np.inf, high=np.inf, shape=(self.cfg.action_dim,))
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)

    def _observations(self):
        """The observation manager's compute(): per group a tensor, or a dict of term tensors."""
        out = {}
        for group, (concatenate, terms) in self.cfg.observations.items():
            values = {name: self._term(name)[:, :w] for name, w in terms.items()}
            out[group] = torch.cat(list(values.values()), dim=-1) if concatenate else values
        return out


__all__ = ["DirectRLEnv", "DirectRLEnvCfg", "ManagerBasedRLEnv", "ManagerBasedRLEnvCfg", "spec_to_gym_space"]
