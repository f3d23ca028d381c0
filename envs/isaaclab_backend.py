"""backend=isaaclab: Isaac Lab 3.0 tasks (DirectRLEnv / ManagerBasedRLEnv) behind the env contract.

Facts the adapter honours (Isaac Lab source, github isaac-sim/IsaacLab, and its docs; tests/fakes/README.md
lists what the tests' double models and from where):

- Start-up: Isaac Lab 3.0 runs kit-less (Newton physics, MuJoCo Warp solver, no Isaac Sim) or with Isaac Sim
  (required for PhysX). With Isaac Sim, `isaaclab.app.AppLauncher` must start the app before Isaac Lab's task
  modules are imported (envs/isaaclab_app.py; the CLI does it before torch when the command line asks for it).
  Kit-less: nothing is launched.
- Task ids: Isaac Lab 3.0 registers its tasks without a version suffix (`Isaac-Cartpole-Direct`,
  `Isaac-Velocity-Flat-AnymalD`, `Isaac-Velocity-Flat-G1`, `Isaac-Reorient-Cube-Allegro-Direct`: isaaclab_tasks
  3.0.0's `gym.register` calls); Isaac Lab 2.x's `-v0` ids of those tasks are refused with the new name.
- Construction: `isaaclab_tasks` registers every task with Gymnasium, the registration's kwargs holding
  `env_cfg_entry_point`; `isaaclab_tasks.utils.parse_env_cfg(task, device=, num_envs=, overrides=)` builds that
  config with our device and env count. Isaac Lab 3.0 task configs hold their physics as presets
  (`env_cfg.sim.physics` a PresetCfg with `newton_mjwarp`, `physx`, ... and a `default`, newton_mjwarp for the
  core tasks), each tuned per task (e.g. Anymal-D flat's MJWarpSolverCfg njmax 60, nconmax 25, elliptic cones):
  physics=newton_mjwarp / physx selects that preset through `overrides=["physics=<name>"]` (Isaac Lab's own
  `physics=` selector), so the task's solver settings are kept. Only where the config has no such preset, or
  parse_env_cfg takes no overrides (Isaac Lab 2.x), is a default one set:
  `isaaclab_newton.physics.NewtonCfg(solver_cfg=MJWarpSolverCfg())` or `isaaclab_physx.physics.PhysxCfg()`
  (physics unset: the task's default). Then `env_cfg.seed` (the env seeds torch, numpy and its own generators
  from it), `env_cfg.compute_final_obs = True` and any `cfg_overrides` (dotted attribute paths, e.g.
  `{episode_length_s: 10}`, `{scene.ground: null}`), and `gymnasium.make(task, cfg=env_cfg)`.
- One simulation per process: the env creates the process's one `SimulationContext` and refuses a second
  ("Simulation context already exists"; its close() clears it); a second env here raises with the reason, also
  after close() (with Isaac Sim the app lives on). No separate eval batch.
- Step: `(obs_dict, reward, terminated, time_outs, extras)`; `obs_dict["policy"]` is the actor's observation,
  `obs_dict["critic"]` (when the task has one: DirectRLEnvCfg.state_space > 0, or a "critic" observation group)
  the privileged one. A group whose terms are not concatenated is a dict of tensors: flattened in term order.
  Environments that ended are reset inside the same step (Same-Step autoreset), so the returned observation is
  the new episode's first.
- Final observation: Isaac Lab 3 (PR isaac-sim/IsaacLab#6219, merged 2026-06) has the opt-in config flag
  `compute_final_obs` on DirectRLEnvCfg / ManagerBasedRLEnvCfg: when set, a step that resets environments
  computes the observation once more before the reset and puts it in `extras["final_obs"]` (the whole
  observation dict, every group, all envs; only the rows of the envs that ended are the terminal ones, and
  neither env class (3.0.0) removes the key on steps where nothing ended: it then holds an older step's
  observation). We take the rows of ended envs from it.
  Where a version/config has no such flag (Isaac Lab 2.x) or a step ends episodes without providing it, the
  ended envs' transitions span two episodes (the returned observation is the next episode's): they come with
  `info["valid"] = False` and are never learned from; the log says so once.
- terminated vs truncated: `time_outs` is the time limit (bootstrap through it), terminated is a terminal state
  (never bootstrapped). Both may be set; a time-out at a terminal state counts as terminal. A task with
  `is_finite_horizon = True` sends no time-out signal by Isaac Lab's definition (ManagerBasedRLEnvCfg's
  docstring: the agent must not bootstrap at the time limit): its time-outs are reported as terminations.
- Time limit: `max_episode_steps` is `max_episode_length` (ceil(episode_length_s / (sim.dt * decimation))):
  manager-based tasks time out at episode_length_buf >= max_episode_length (mdp.time_out), and so do Isaac Lab
  3.0's direct Cartpole, locomotion and cabinet tasks in their _get_dones; other direct tasks (3.0's reorient,
  handover, factory, anymal_c) write >= max_episode_length - 1 there, which we read from the task's _get_dones
  source, and their max_episode_steps is one less.
- Actions: the policy's [-1, 1] is clamped and mapped linearly onto the action space's bounds; Isaac Lab's action
  spaces are usually unbounded Boxes (the task scales actions itself), and an unbounded dimension gets [-1, 1]
  unscaled, as FastTD3's Isaac Lab wrapper does with its default action_bounds 1.0.
- Device: observations, rewards and flags are float32 / bool tensors on the run's device (a no-op move when the
  simulation runs there); step() never synchronises with the host.
- Resume: Isaac Lab has no API to save a running simulation's state, so a resumed run starts new episodes.

Critic observations (contract extension): when the task has a "critic" group, `critic_obs_dim` (> 0),
`critic_obs` (float32 (num_envs, critic_obs_dim), matching the policy observation last returned by reset() or
step()) and `info["final_critic_obs"]` (the true last critic observation of every env, equal to critic_obs where
nothing ended); `critic_obs_dim` is 0 and `critic_obs` None otherwise.
"""

import inspect
import logging
import re

from pql_scaling.envs.isaaclab_app import INSTALL_HINT, PHYSICS, launch_app, needs_kit

try:
    import isaaclab  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised without the package (and by the tests' subprocess)
    raise ImportError("backend 'isaaclab' needs Isaac Lab 3.0 (package `isaaclab`). " + INSTALL_HINT) from exc

import torch  # noqa: E402

log = logging.getLogger(__name__)

# Standard task ids we ship defaults for (tasks/isaaclab/); any id registered by isaaclab_tasks is accepted.
KNOWN_TASKS = (
    "Isaac-Cartpole-Direct",
    "Isaac-Velocity-Flat-AnymalD",
    "Isaac-Velocity-Flat-G1",
    "Isaac-Reorient-Cube-Allegro-Direct",
)
# Isaac Lab 2.x ids of those tasks -> their Isaac Lab 3.0 names
RENAMED = {
    "Isaac-Cartpole-Direct-v0": "Isaac-Cartpole-Direct",
    "Isaac-Velocity-Flat-Anymal-D-v0": "Isaac-Velocity-Flat-AnymalD",
    "Isaac-Velocity-Flat-G1-v0": "Isaac-Velocity-Flat-G1",
    "Isaac-Repose-Cube-Allegro-Direct-v0": "Isaac-Reorient-Cube-Allegro-Direct",
}
_CREATED = []  # the one Isaac Lab env this process may own
_SAID = set()  # messages logged once per process


def _say_once(key, msg, *args, level=logging.INFO):
    if key not in _SAID:
        _SAID.add(key)
        log.log(level, msg, *args)


def _registry():
    import gymnasium as gym

    return gym.envs.registry


class IsaacLabIds:
    """`TASKS`: Isaac Lab's ids, named by the convention `Isaac-...` (the registry itself fills only once
    `isaaclab_tasks` is imported, which with Isaac Sim must wait until the app is launched), or registered."""

    def __contains__(self, task):
        return isinstance(task, str) and (task.startswith("Isaac-") or task in _registry())

    def __iter__(self):
        return iter(sorted(set(KNOWN_TASKS) | {t for t in _registry() if str(t).startswith("Isaac-")}))

    def __len__(self):
        return len(list(iter(self)))


TASKS = IsaacLabIds()


def unknown_task_error(task):
    renamed = RENAMED.get(task)
    hint = (" (Isaac Lab 3.0 names it %r)" % renamed) if renamed else ""
    return ValueError(
        "unknown Isaac Lab task %r%s: Isaac Lab 3.0's ids look like Isaac-Cartpole-Direct or "
        "Isaac-Velocity-Flat-AnymalD (`python -c \"import isaaclab_tasks, gymnasium; "
        "print([t for t in gymnasium.registry if t.startswith('Isaac-')])\"` lists them)" % (task, hint)
    )


def _set_dotted(obj, path, value):
    parts = str(path).split(".")
    for name in parts[:-1]:
        obj = getattr(obj, name)
    if not hasattr(obj, parts[-1]):
        raise ValueError("cfg_overrides: the env config has no attribute %r" % path)
    setattr(obj, parts[-1], value)


def _physics_cfg(physics):
    if physics == "newton_mjwarp":
        from isaaclab_newton.physics import MJWarpSolverCfg, NewtonCfg

        return NewtonCfg(solver_cfg=MJWarpSolverCfg())
    if physics == "physx":
        from isaaclab_physx.physics import PhysxCfg

        return PhysxCfg()
    raise ValueError(
        "backend 'isaaclab': physics=%r is not one of %s (or leave it unset for the task's own)"
        % (physics, ", ".join(sorted(PHYSICS)))
    )


def _env_cfg(parse_env_cfg, task, device, num_envs, physics):
    """The task's registered config for our device and env count, its physics preset `physics` selected (None:
    the task's default); a config without that preset, or an Isaac Lab without presets, gets a default one."""
    if physics is None:
        return parse_env_cfg(task, device=device, num_envs=num_envs)
    if "overrides" in inspect.signature(parse_env_cfg).parameters:
        try:
            return parse_env_cfg(task, device=device, num_envs=num_envs, overrides=["physics=" + physics])
        except ValueError as exc:  # isaaclab_tasks.utils.hydra: "Unknown preset(s): ..."
            if "preset" not in str(exc).lower():
                raise
            reason = "its config has no %r physics preset" % physics
    else:
        reason = "this Isaac Lab has no physics presets"
    _say_once(
        "physics_default_" + task,
        "backend=isaaclab: %s: %s; using a default %s configuration (not tuned for the task)",
        task,
        reason,
        physics,
        level=logging.WARNING,
    )
    env_cfg = parse_env_cfg(task, device=device, num_envs=num_envs)
    env_cfg.sim.physics = _physics_cfg(physics)
    return env_cfg


def _time_out_margin(sim):
    """1 where a direct task's _get_dones times out at `max_episode_length - 1`, else 0 (mdp.time_out's rule)."""
    from isaaclab.envs import DirectRLEnv

    if not isinstance(sim, DirectRLEnv):
        return 0
    try:
        source = inspect.getsource(type(sim)._get_dones)
    except (OSError, TypeError):  # no source (a compiled or dynamically built task): the common rule
        return 0
    return 1 if re.search(r"max_episode_length\s*-\s*1\b", source) else 0


def _space_dim(space):
    """Flat size of a Box, or of a Dict of Boxes (a group whose terms are not concatenated)."""
    if hasattr(space, "spaces") and isinstance(space.spaces, dict):
        return sum(_space_dim(s) for s in space.spaces.values())
    n = 1
    for d in space.shape:
        n *= int(d)
    return n


def _flat(group):
    """An observation group as one (num_envs, dim) tensor (a dict of terms concatenated in order)."""
    if isinstance(group, dict):
        return torch.cat([_flat(v) for v in group.values()], dim=-1)
    return group.reshape(group.shape[0], -1)


class IsaacLabVecEnv:
    backend = "isaaclab"

    def __init__(
        self,
        task,
        num_envs,
        device="cpu",
        seed=0,
        physics=None,
        kit=None,
        headless=True,
        cfg_overrides=None,
        final_obs=True,
    ):
        """`physics`: newton_mjwarp | physx | None (the task's own); `kit`: launch Isaac Sim (default: only when
        PhysX needs it); `cfg_overrides`: {dotted env-config attribute: value}; `final_obs=False` leaves
        Isaac Lab's compute_final_obs off (the ended envs' transitions are then never learned from)."""
        if _CREATED:
            raise RuntimeError(
                "Isaac Lab allows one simulation per process (its SimulationContext is a process-wide singleton) "
                "and this process already has one (%s): create evaluation envs in another process"
                % _CREATED[0]
            )
        if physics is not None and physics not in PHYSICS:
            raise ValueError(
                "backend 'isaaclab': physics=%r is not one of %s" % (physics, ", ".join(sorted(PHYSICS)))
            )
        self.device = torch.device(device)
        self.task = task
        self.physics = physics
        if needs_kit(physics, kit):
            launch_app(headless=headless, device=str(self.device))  # before Isaac Lab's task modules
        import gymnasium as gym
        import isaaclab_tasks  # noqa: F401 - registers the tasks with Gymnasium
        from isaaclab_tasks.utils import parse_env_cfg

        if task not in gym.envs.registry:
            raise unknown_task_error(task)
        env_cfg = _env_cfg(parse_env_cfg, task, str(self.device), int(num_envs), physics)
        env_cfg.seed = int(seed)
        for path, value in dict(cfg_overrides or {}).items():
            _set_dotted(env_cfg, path, value)
        self.final_obs_provided = bool(final_obs) and hasattr(env_cfg, "compute_final_obs")
        if self.final_obs_provided:
            env_cfg.compute_final_obs = True
        self.is_finite_horizon = bool(getattr(env_cfg, "is_finite_horizon", False))
        self.env = gym.make(task, cfg=env_cfg)
        _CREATED.append(task)
        self.unwrapped = self.env.unwrapped
        self.env_cfg = env_cfg
        self.sim_device = torch.device(str(self.unwrapped.device))
        self.num_envs = int(self.unwrapped.num_envs)
        spaces = self.unwrapped.single_observation_space
        self.obs_dim = _space_dim(spaces["policy"])
        self.critic_obs_dim = _space_dim(spaces["critic"]) if "critic" in spaces.spaces else 0
        self.critic_obs = None
        act_space = self.unwrapped.single_action_space
        self.act_dim = _space_dim(act_space)
        low = torch.as_tensor(act_space.low, dtype=torch.float64).reshape(-1)
        high = torch.as_tensor(act_space.high, dtype=torch.float64).reshape(-1)
        finite = torch.isfinite(low) & torch.isfinite(high)
        scale = torch.where(finite, (high - low) / 2.0, torch.ones_like(low))
        bias = torch.where(finite, (high + low) / 2.0, torch.zeros_like(low))
        self._act_scale = scale.to(self.sim_device, torch.float32)
        self._act_bias = bias.to(self.sim_device, torch.float32)
        # the time limit in steps (some direct tasks time out one step before max_episode_length)
        self.max_episode_steps = int(self.unwrapped.max_episode_length) - _time_out_margin(self.unwrapped)
        log.info(
            "backend=isaaclab: %s x %d on %s (simulation on %s), physics %s, %s, obs %d, critic obs %d, act %d, "
            "max_episode_steps %d%s",
            task,
            self.num_envs,
            self.device,
            self.sim_device,
            physics or "the task's own",
            "Isaac Sim" if needs_kit(physics, kit) else "kit-less",
            self.obs_dim,
            self.critic_obs_dim,
            self.act_dim,
            self.max_episode_steps,
            ", finite horizon (time-outs are terminations)" if self.is_finite_horizon else "",
        )
        if not self.final_obs_provided:
            _say_once(
                "no_final_obs",
                "backend=isaaclab: %s does not provide the final observation (%s): the transitions of envs that "
                "ended span two episodes and are never learned from (info['valid'] False there)",
                task,
                "final_obs=False"
                if not final_obs
                else "its env config has no compute_final_obs: Isaac Lab < 3.0 or a custom config",
                level=logging.WARNING,
            )
        _say_once(
            "resume",
            "backend=isaaclab: Isaac Lab cannot save a running simulation's state; a resumed run starts new episodes",
        )

    # -- tensors -----------------------------------------------------------------------------------
    def _obs(self, group):
        return _flat(group).to(self.device, torch.float32).clone()  # Isaac Lab may reuse its buffers

    # -- the env contract --------------------------------------------------------------------------
    def reset(self):
        obs_dict, _ = self.env.reset()
        if self.critic_obs_dim:
            self.critic_obs = self._obs(obs_dict["critic"])
        return self._obs(obs_dict["policy"])

    def step(self, action):
        a = (
            action.detach().to(self.sim_device, torch.float32).clamp(-1.0, 1.0) * self._act_scale
            + self._act_bias
        )
        obs_dict, reward, terminated, time_outs, extras = self.env.step(a)
        terminated = terminated.to(self.device).reshape(-1).bool()
        time_outs = time_outs.to(self.device).reshape(-1).bool()
        if self.is_finite_horizon:
            # no time-out signal: the time limit ends the episode like a terminal state
            terminated = terminated | time_outs
            truncated = torch.zeros_like(time_outs)
        else:
            truncated = time_outs & ~terminated
        done = terminated | truncated
        next_obs = self._obs(obs_dict["policy"])
        final = extras.get("final_obs") if self.final_obs_provided else None
        info = {"time_outs": truncated}
        ended = done[:, None]
        if final is not None:
            info["final_obs"] = torch.where(ended, self._obs(final["policy"]), next_obs)
        else:  # the ended envs' next_obs belongs to the next episode: never learn from those transitions
            info["final_obs"] = next_obs.clone()
            info["valid"] = ~done
        if self.critic_obs_dim:
            self.critic_obs = self._obs(obs_dict["critic"])
            if final is not None and "critic" in final:
                info["final_critic_obs"] = torch.where(ended, self._obs(final["critic"]), self.critic_obs)
            else:
                info["final_critic_obs"] = self.critic_obs.clone()
                if final is not None:
                    # a final observation without its critic group: the critic cannot bootstrap from it
                    info["valid"] = ~done
        for key, value in extras.items():  # Isaac Lab's episode logs ("log") and task-specific entries
            if key not in info and key not in ("final_obs", "final_info"):
                info[key] = value
        return next_obs, reward.to(self.device, torch.float32).reshape(-1), terminated, truncated, info

    def close(self):
        if self.env is not None:
            self.env.close()  # the process still may not build another one (Isaac Sim's app lives on)
            self.env = None


def make_env(task, num_envs, device="cpu", seed=0, **overrides):
    return IsaacLabVecEnv(task, num_envs, device=device, seed=seed, **overrides)


__all__ = ["TASKS", "make_env", "IsaacLabVecEnv", "INSTALL_HINT", "unknown_task_error"]
