"""backend=isaacgym: IsaacGymEnvs tasks (Isaac Gym Preview 4) behind the env contract.

What the adapter translates (facts from Isaac Gym / IsaacGymEnvs 1.5.1, see the project's
isaacgym_api notes and tests/fakes/README.md):

- Import order: isaacgym before torch. `envs.isaacgym_preimport.maybe_preimport_isaacgym(argv)` must
  run at the top of the main process; importing this module after torch gives a clear error.
- One simulation per process (IsaacGymEnvs caches the first sim in a module global and hands it out
  again): a second env in the same process raises here; evaluate in another process.
- GPU choice: only the first visible GPU is reliable; `device="cuda:k"` with k > 0 is refused in favour
  of CUDA_VISIBLE_DEVICES=k with device "cuda:0".
- Seeding: `isaacgymenvs.make` does not apply its seed; we seed python, numpy and torch ourselves.
- Forced clean start: `reset()` sets every env's reset flag and steps once with zero actions, since
  VecTask.reset() resets nothing and reset_buf starts at ones.
- Deferred resets -> contract: on a step with done=1 the returned observation is the TERMINAL one, so
  `next_obs` = `info["final_obs"]` = terminal obs for those envs (the new episode's first observation
  only exists after the next step). The env is re-initialised inside the NEXT step, whose transition
  spans two episodes: that step carries `info["valid"] = False` for those envs and must not be learned from.
- `terminated = done & ~extras["time_outs"]`, `truncated = done & extras["time_outs"]`.
- Actions are clamped to [-1, 1] (VecTask clamps to +-clipActions as well).
- `obs_dict["states"]` (asymmetric critics, `num_states` > 0) is the contract's privileged critic observation:
  `critic_obs_dim` = num_states, `critic_obs` the states returned with the last observation and
  `info["final_critic_obs"]` the same tensor (deferred resets: a done env's states are its terminal ones, as
  its observation is). Without states `critic_obs_dim` is 0 and the critic reads the policy observation.
- Reset order: IsaacGymEnvs tasks perform the resets requested by a done step either in the next step's
  `post_physics_step`, right after `progress_buf += 1` (Ant, Humanoid, Anymal, FrankaCubeStack, Cartpole:
  that step's physics ran on the ended episode, and `progress_buf` is 0 after it) or at the start of its
  `pre_physics_step` (ShadowHand, AllegroHand, BallBalance: `progress_buf` is 1 after it). In both the
  env is re-initialised inside the step after its done step and that step's reward is computed on the new
  episode's state; nothing here depends on which (tests/fakes models both).
- Episode returns as rl_games (IsaacGymEnvs' trainer) and PQL's reference code count them: every step's
  reward is added to the env's running sum, and a done step reports the sum and zeroes it, so an episode
  runs from the step that re-initialised it (the spanning step) to its done step. `info["episode_return"]`
  / `info["episode_length"]` hold those sums for the envs that ended on this step (0 elsewhere);
  `info["done"]` marks them. The spanning step's transition is invalid for learning, but its reward
  belongs to the new episode in this accounting.
- Resume: the simulator's state cannot be saved (no `state_dict`), so a resumed run starts new episodes.
- Populations (`members` = K > 1, `seeds` one per member): K x num_envs envs in the one simulation, member k's
  the rows [k*num_envs, (k+1)*num_envs) (per-env outputs, `valid` and the episode accounting are per env, so
  each member's slice is its own). The simulator is seeded once, with `seeds[0]`, and draws every env's reset
  states from its one stream: member k's envs are not those of a single run with seed `seeds[k]`
  (`members_seeded_apart` is False). That stream is kept apart from the trainer's: each step runs on the
  simulator's own torch generator states (CPU, and the sim's CUDA device), so member 0's stream (torch's default
  generator) draws only its own numbers, as every other member's does.
"""

import contextlib
import random

from pql_scaling.envs.isaacgym_preimport import INSTALL_HINT, preimport_isaacgym

preimport_isaacgym()  # raises with instructions when missing, or when torch was imported first

import isaacgymenvs  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pql_scaling.envs.contract import member_rows as contract_member_rows  # noqa: E402

try:
    from isaacgymenvs.tasks import isaacgym_task_map as _TASK_MAP  # noqa: E402

    TASKS = sorted(_TASK_MAP)
except ImportError:  # pragma: no cover - very old IsaacGymEnvs
    TASKS = [
        "Ant",
        "Anymal",
        "AllegroHand",
        "BallBalance",
        "Cartpole",
        "FrankaCubeStack",
        "Humanoid",
        "ShadowHand",
    ]

_CREATED = []  # the one env this process may ever own (its sim outlives close())


def _check_device(device):
    device = torch.device(device)
    if device.type == "cuda" and (device.index or 0) != 0:
        raise ValueError(
            "Isaac Gym picks GPUs other than the first unreliably: run with CUDA_VISIBLE_DEVICES=%d and "
            "device='cuda:0' instead of device=%r" % (device.index, str(device))
        )
    return "cuda:0" if device.type == "cuda" else "cpu"


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class IsaacGymVecEnv:
    """`cfg`: optional full IsaacGymEnvs run config (dict or OmegaConf, its `task` entry being the task
    config, e.g. to change `task.env.episodeLength`); `num_envs` and the task name are written into it."""

    # the contract's deferred-reset variant: an ended env's observation is its terminal one, and the next step
    # (which re-initialises it) spans two episodes: info["valid"] is False there
    deferred_resets = True

    def __init__(
        self,
        task,
        num_envs,
        device="cpu",
        seed=0,
        headless=True,
        graphics_device_id=-1,
        cfg=None,
        members=1,
        seeds=None,
    ):
        dev = _check_device(device)
        self.members = int(members)
        if int(num_envs) % self.members:
            raise ValueError("num_envs=%d is not %d members' equal shares" % (num_envs, self.members))
        if seeds is not None and len(seeds) != self.members:
            raise ValueError("%d seeds for %d members: give one per member" % (len(seeds), self.members))
        if self.members > 1 and seeds is not None:
            seed = seeds[0]  # the one simulation is seeded with the first member's seed
        if cfg is not None:  # IsaacGymEnvs reads cfg.task and ignores num_envs when given a config
            from omegaconf import OmegaConf

            cfg = OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg
            cfg.task.name = task
            cfg.task.env.numEnvs = int(num_envs)
        if _CREATED:
            raise RuntimeError(
                "Isaac Gym allows one simulation per process and this process already has one (IsaacGymEnvs would "
                "silently share it): create evaluation envs in another process"
            )
        # a population: the simulator's own random stream, apart from the trainer's (see the module's doc),
        # from its construction on
        self._sim_rng = _SimRng(dev) if self.members > 1 else None
        with self._sim_rng or _NO_SWAP:
            seed_everything(int(seed))
            self.task = self._make(task, num_envs, dev, seed, graphics_device_id, headless, cfg)
        _CREATED.append(task)
        self.device = torch.device(self.task.rl_device)
        self.num_envs = int(self.task.num_envs)
        self.obs_dim = int(self.task.num_obs)
        self.act_dim = int(self.task.num_actions)
        self.state_dim = int(getattr(self.task, "num_states", 0) or 0)
        self.critic_obs_dim = self.state_dim  # the env contract's privileged critic observation
        self.critic_obs = None
        self.max_episode_steps = int(self.task.max_episode_length)
        n = self.num_envs
        self._spanning = torch.zeros(
            n, dtype=torch.bool, device=self.device
        )  # this step re-initialises these envs
        self._return = torch.zeros(n, dtype=torch.float64, device=self.device)
        self._length = torch.zeros(n, dtype=torch.long, device=self.device)

    @staticmethod
    def _make(task, num_envs, dev, seed, graphics_device_id, headless, cfg):
        return isaacgymenvs.make(
            seed=int(seed),
            task=task,
            num_envs=int(num_envs),
            sim_device=dev,
            rl_device=dev,
            graphics_device_id=graphics_device_id,
            headless=headless,
            cfg=cfg,
        )

    # a population's members share one simulation seeded with the first member's seed
    @property
    def members_seeded_apart(self):
        return self.members == 1

    def member_rows(self, k):
        """Member k's envs: rows [k * n, (k + 1) * n) of every per-env tensor (n = num_envs / members)."""
        return contract_member_rows(self.num_envs, self.members, k)

    def _raw_step(self, action):
        with self._sim_rng or _NO_SWAP:
            obs_dict, reward, done, extras = self.task.step(action)
        reward = reward.to(self.device, torch.float32).reshape(-1)
        done = done.to(self.device).reshape(-1).bool()
        time_outs = extras.get("time_outs")
        time_outs = (
            torch.zeros_like(done) if time_outs is None else time_outs.to(self.device).reshape(-1).bool()
        )
        return obs_dict, reward, done, time_outs & done, extras

    def _account(self, reward, done):
        """The simulator's episode accounting: sums since the step that (re)started the episode."""
        self._return += reward.double()
        self._length += 1
        episode_return = torch.where(done, self._return, torch.zeros_like(self._return))
        episode_length = torch.where(done, self._length, torch.zeros_like(self._length))
        self._return = torch.where(done, torch.zeros_like(self._return), self._return)
        self._length = torch.where(done, torch.zeros_like(self._length), self._length)
        return episode_return, episode_length

    def reset(self):
        """Forced clean start: flag every env for reset and step once with zero actions."""
        self.task.reset_buf[:] = 1
        obs_dict, reward, done, _, _ = self._raw_step(
            torch.zeros((self.num_envs, self.act_dim), device=self.task.rl_device)
        )
        self._return.zero_()
        self._length.zero_()
        self._account(reward, done)  # the clean-start step is the first step of every episode
        self._spanning = done.clone()
        self._states(obs_dict)
        return obs_dict["obs"].to(self.device, torch.float32)

    def _states(self, obs_dict):
        """critic_obs from the step's states: a copy, so the actor's stays put when the task reuses buffers."""
        if self.critic_obs_dim:
            self.critic_obs = obs_dict["states"].to(self.device, torch.float32).clone()

    def step(self, action):
        action = action.to(self.task.rl_device, torch.float32).clamp(-1.0, 1.0)
        obs_dict, reward, done, time_outs, extras = self._raw_step(action)
        valid = ~self._spanning
        episode_return, episode_length = self._account(reward, done)
        self._spanning = done.clone()
        obs = obs_dict["obs"].to(self.device, torch.float32)
        info = {
            "final_obs": obs.clone(),  # deferred resets: a done env's obs IS its terminal obs
            "valid": valid,
            "done": done,
            "episode_return": episode_return.float(),
            "episode_length": episode_length,
            "time_outs": time_outs,
        }
        if self.critic_obs_dim:  # deferred resets: the states returned are every env's last ones
            self._states(obs_dict)
            info["final_critic_obs"] = self.critic_obs.clone()
        for key, value in extras.items():  # task-specific scalars (and per-term episode sums)
            if key not in info:
                info[key] = value
        return obs, reward, done & ~time_outs, time_outs, info

    def close(self):
        pass  # Isaac Gym has no way to destroy the cached sim: it lives until the process ends


class _SimRng:
    """The simulator's own torch generator states (CPU, and its CUDA device), swapped in around its step: the
    resets it draws leave the trainer's default generators where they were (host-side state copies, no device
    synchronisation)."""

    def __init__(self, sim_device):
        dev = torch.device(sim_device)
        self.cuda = (dev.index or 0) if dev.type == "cuda" else None
        self.state = self._get()  # seeded inside the first swap (the adapter's seed_everything)
        self.saved = None

    def _get(self):
        cuda = torch.cuda.get_rng_state(self.cuda) if self.cuda is not None else None
        return torch.get_rng_state(), cuda

    def _set(self, state):
        torch.set_rng_state(state[0])
        if self.cuda is not None:
            torch.cuda.set_rng_state(state[1], self.cuda)

    def __enter__(self):
        self.saved = self._get()
        self._set(self.state)

    def __exit__(self, *exc):
        self.state = self._get()
        self._set(self.saved)
        return False


_NO_SWAP = contextlib.nullcontext()


def make_env(task, num_envs, device="cpu", seed=0, **overrides):
    return IsaacGymVecEnv(task, num_envs, device=device, seed=seed, **overrides)


__all__ = ["TASKS", "make_env", "IsaacGymVecEnv", "INSTALL_HINT"]
