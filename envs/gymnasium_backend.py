"""backend=gymnasium: any registered Gymnasium environment, vectorised by Gymnasium's own vector API.

`task` is a Gymnasium id (`Pendulum-v1`, `InvertedDoublePendulum-v5`, `dm_control/cartpole-swingup-v0` once
`shimmy[dm-control]` is installed, or `my_module:MyEnv-v0`, which imports `my_module` to register it).
`gymnasium.make_vec` builds the batch: a SyncVectorEnv (the default: the envs step in turn in the actor's
process) or an AsyncVectorEnv (one worker process per env) with `vectorization="async"`. Each env keeps the
wrappers of its registration (its TimeLimit: `max_episode_steps` comes from the env's spec); an observation
space that is not a flat Box (dm_control's dict of arrays) is flattened by `FlattenObservation`.

Gymnasium's autoreset modes are translated into the env contract (envs/__init__.py):

- `same_step` (our default): the vector env resets an env inside the step that ended its episode and hands the
  true last observation over in `info["final_obs"]`; that is the contract as it is.
- `next_step` (Gymnasium's own default): the step that ends an episode returns its true last observation; the
  *next* step ignores the action and only resets (reward 0, the new episode's first observation). That step's
  transition (last observation -> first observation of the next episode) spans two episodes: it is returned
  with `info["valid"]` False, so it is never learned from nor counted in a return.
- `disabled`: Gymnasium leaves resets to us; the envs that ended are reset in the same `step` with
  `reset(options={"reset_mask": done})`, which is the contract as it is again.

Actions in [-1, 1] are clamped and mapped linearly onto the action space's Box bounds (a dimension with an
infinite bound is passed through unscaled). Observations, rewards and flags come back as torch tensors on
`device` (float32, float32, bool). `terminated` and `truncated` are Gymnasium's, except that a time-out at a
terminal state counts as terminal.

Resume: Gymnasium has no API to save a running environment's state, so a resumed run starts new episodes
(the trainer says so in its log). `state_dict()` keeps what can be kept: the seed, the autoreset and
vectorisation modes, the steps taken and the episodes ended per env; `restore_counters()` takes them back and
reseeds every env's random stream, so the episodes after a resume do not replay the run's first initial
states.

The training config chooses the two modes (`gymnasium.vectorization`, `gymnasium.autoreset`: the keyword
arguments `vectorization` and `autoreset_mode` here) and its `env_kwargs` are every other keyword argument, which
goes to `gymnasium.make` (e.g. `max_episode_steps=500`, or an env's own parameter such as Pendulum's `g`); one the
env does not take is a ConfigError naming it.
"""

import difflib
import importlib
import logging
import math
import os

import numpy as np
import torch

try:
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode
except ImportError as exc:  # pragma: no cover - exercised only without gymnasium
    raise ImportError(
        "backend 'gymnasium' needs gymnasium >= 1.1 (its vector API with autoreset modes): "
        "pip install 'gymnasium[classic-control]>=1.1'   (MuJoCo tasks: 'gymnasium[mujoco]', Box2D: "
        "'gymnasium[box2d]', dm_control ids: 'shimmy[dm-control]')"
    ) from exc

log = logging.getLogger(__name__)

VECTORIZATIONS = ("sync", "async")
AUTORESET_MODES = {
    "same_step": AutoresetMode.SAME_STEP,
    "next_step": AutoresetMode.NEXT_STEP,
    "disabled": AutoresetMode.DISABLED,
}
# Packages that register Gymnasium ids when imported (since Gymnasium 1.0 nothing is loaded by itself).
PLUGINS = ("shimmy",)
_plugins_loaded = []
_said_resume = []


def _load_plugins():
    if _plugins_loaded:
        return
    _plugins_loaded.append(True)
    if not os.environ.get("DISPLAY"):
        # dm_control (through shimmy) picks an OpenGL backend at import; with no display its first choice, GLFW,
        # warns on every import. Training never renders: say so, unless the user chose a backend (EGL, OSMesa).
        os.environ.setdefault("MUJOCO_GL", "disable")
    for name in PLUGINS:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a plugin that is absent or broken only adds no ids
            log.debug("Gymnasium plugin %s not importable", name)


def _split_id(task):
    """'my_module:MyEnv-v0' -> ('my_module', 'MyEnv-v0'); a plain id -> (None, id)."""
    if ":" in task:
        module, env_id = task.split(":", 1)
        return module, env_id
    return None, task


def is_registered(task):
    """Whether `task` names a registered Gymnasium id (importing its module first for 'module:Id')."""
    if not isinstance(task, str) or not task:
        return False
    module, env_id = _split_id(task)
    if module is not None:
        try:
            importlib.import_module(module)
        except ImportError:
            return False
    if env_id not in gym.envs.registry:
        _load_plugins()
    return env_id in gym.envs.registry


class RegisteredIds:
    """`TASKS` for this backend: every id in Gymnasium's registry, looked up when asked, so that ids registered
    later (by shimmy, or by a user's module named as 'module:Id-v0') count too."""

    def __contains__(self, task):
        return is_registered(task)

    def __iter__(self):
        _load_plugins()
        return iter(sorted(gym.envs.registry))

    def __len__(self):
        _load_plugins()
        return len(gym.envs.registry)


TASKS = RegisteredIds()


def unknown_task_error(task):
    """The error for an id Gymnasium does not know: the closest registered ids and how to get more."""
    _load_plugins()
    close = difflib.get_close_matches(_split_id(str(task))[1], list(gym.envs.registry), n=5, cutoff=0.5)
    hint = ("did you mean: %s? " % ", ".join(close)) if close else ""
    return ValueError(
        "unknown Gymnasium environment id %r for backend 'gymnasium': %s"
        "`python -c \"import gymnasium; gymnasium.pprint_registry()\"` lists the registered ids. dm_control ids "
        "(dm_control/cartpole-swingup-v0) need `pip install 'shimmy[dm-control]'`; an env registered by your "
        "own module is named as task=my_module:MyEnv-v0" % (task, hint)
    )


def _choose(value, default, valid, what):
    value = default if value is None else value
    if value not in valid:
        raise ValueError("backend 'gymnasium': %s=%r is not one of %s" % (what, value, ", ".join(valid)))
    return value


def _flat_box(space):
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 1


class GymnasiumVecEnv:
    backend = "gymnasium"

    def __init__(
        self, task, num_envs, device="cpu", seed=0, vectorization=None, autoreset_mode=None, **env_kwargs
    ):
        self.task = task
        self.device = torch.device(device)
        self.num_envs = n = int(num_envs)
        self.seed = int(seed)
        self.vectorization = _choose(vectorization, "sync", VECTORIZATIONS, "vectorization")
        self.autoreset_mode = _choose(autoreset_mode, "same_step", tuple(AUTORESET_MODES), "autoreset_mode")
        self.env_kwargs = dict(env_kwargs)
        self.vec = self._make_vec(wrappers=None)
        try:
            self._check_spaces(task)
        except Exception:
            self.vec.close()
            raise
        obs_space, act_space = self.vec.single_observation_space, self.vec.single_action_space
        self.obs_dim = int(obs_space.shape[0])
        self._act_shape = tuple(act_space.shape)
        self._act_dtype = act_space.dtype
        self.act_dim = int(np.prod(self._act_shape))
        low = np.asarray(act_space.low, dtype=np.float64).reshape(-1)
        high = np.asarray(act_space.high, dtype=np.float64).reshape(-1)
        finite = np.isfinite(low) & np.isfinite(high)
        if not finite.all():
            log.warning(
                "%s: action dimensions %s have infinite bounds; they get the policy's [-1, 1] unscaled",
                task,
                np.flatnonzero(~finite).tolist(),
            )
        self._act_scale = np.where(finite, (high - low) / 2.0, 1.0)
        self._act_bias = np.where(finite, (high + low) / 2.0, 0.0)
        self.max_episode_steps = self._spec_max_episode_steps()
        self._seeded = False
        self._pending_reset = np.zeros(n, dtype=bool)  # next_step mode: envs whose next step only resets
        self.steps = 0  # vector steps taken
        self.episodes = np.zeros(n, dtype=np.int64)  # episodes ended, per env
        self.resumes = 0
        log.info(
            "backend=gymnasium: %s x %d, %s vector env, autoreset %s, max_episode_steps %s",
            task,
            n,
            self.vectorization,
            self.autoreset_mode,
            self.max_episode_steps,
        )
        if not _said_resume:
            _said_resume.append(True)
            log.info(
                "backend=gymnasium: Gymnasium cannot save a running environment's state; checkpoints keep "
                "its seed and episode counters only, and a resumed run starts new episodes"
            )

    # -- construction ------------------------------------------------------------------------------
    def _make_vec(self, wrappers):
        try:
            return gym.make_vec(
                self.task,
                num_envs=self.num_envs,
                vectorization_mode=self.vectorization,
                vector_kwargs={"autoreset_mode": AUTORESET_MODES[self.autoreset_mode], "copy": False},
                wrappers=wrappers,
                **self.env_kwargs,
            )
        except gym.error.DependencyNotInstalled as e:
            raise ImportError("backend 'gymnasium', task %s: %s" % (self.task, e)) from e
        except (gym.error.NameNotFound, gym.error.VersionNotFound, gym.error.NamespaceNotFound) as e:
            raise unknown_task_error(self.task) from e
        except TypeError as e:  # an argument the env's constructor does not take
            if not self.env_kwargs:
                raise
            from pql_scaling.config import ConfigError

            raise ConfigError(
                "env_kwargs %r: %s does not take them (%s); see its constructor's arguments"
                % (self.env_kwargs, self.task, e)
            ) from e

    def _check_spaces(self, task):
        space = self.vec.single_observation_space
        if not _flat_box(space):
            self.vec.close()
            self.vec = self._make_vec(wrappers=[gym.wrappers.FlattenObservation])
            log.info("%s: observations %s flattened to %s", task, space, self.vec.single_observation_space)
        act_space = self.vec.single_action_space
        if not isinstance(act_space, gym.spaces.Box):
            raise ValueError(
                "backend 'gymnasium' trains continuous actions only (PQL's deterministic actor, SAC): %s has "
                "action space %s; pick an env with a Box action space (e.g. Pendulum-v1, "
                "MountainCarContinuous-v0, the MuJoCo v5 tasks)" % (task, act_space)
            )

    def _spec_max_episode_steps(self):
        """The time limit the envs were made with: gymnasium.make's max_episode_steps if given, else the spec's,
        else the environment's own (dm_control's tasks carry theirs inside: cartpole-swingup ends every episode
        after 1000 control steps, which shimmy reports as a truncation, and registers no TimeLimit)."""
        if self.env_kwargs.get("max_episode_steps") is not None:
            return int(self.env_kwargs["max_episode_steps"])
        limit = gym.spec(_split_id(self.task)[1]).max_episode_steps
        return int(limit) if limit is not None else self._own_step_limit()

    def _own_step_limit(self):
        """A dm_control environment's step limit (time limit / control time step), read from one env made for the
        purpose (an async vector env's envs live in other processes); None for any other environment."""
        try:
            probe = gym.make(self.task, **self.env_kwargs)
        except Exception:  # noqa: BLE001 - only a hint: the vector env itself was made, with these arguments
            return None
        try:
            limit = getattr(getattr(probe.unwrapped, "_env", None), "_step_limit", None)
            return int(limit) if isinstance(limit, float) and math.isfinite(limit) else None
        finally:
            probe.close()

    # -- tensors -----------------------------------------------------------------------------------
    def _tensor(self, x, dtype=torch.float32):
        return torch.tensor(np.asarray(x), dtype=dtype, device=self.device)  # a copy: the vector env reuses x

    # -- the env contract --------------------------------------------------------------------------
    def reset(self):
        """Start new episodes in every env: seeded (env i with seed + i) the first time, then from the envs'
        own random streams, as the native backend's generator continues."""
        if self._seeded:
            obs, _ = self.vec.reset()
        else:
            obs, _ = self.vec.reset(seed=self.seed)
            self._seeded = True
        self._pending_reset[:] = False
        return self._tensor(obs)

    def step(self, action):
        a = action.detach().to("cpu", torch.float64).clamp(-1.0, 1.0).numpy()
        native = (a * self._act_scale + self._act_bias).astype(self._act_dtype, copy=False)
        obs, reward, terminated, truncated, info = self.vec.step(
            native.reshape((self.num_envs,) + self._act_shape)
        )
        terminated = np.asarray(terminated, dtype=bool)
        # a time-out at a terminal state is terminal
        truncated = np.asarray(truncated, dtype=bool) & ~terminated
        done = terminated | truncated
        self.steps += 1
        self.episodes += done
        out = {}
        if self.autoreset_mode == "same_step":
            final = obs
            if done.any():
                final = np.array(obs, dtype=np.float32)
                finals = info["final_obs"]
                for i in np.flatnonzero(done):
                    final[i] = finals[i]
        elif self.autoreset_mode == "next_step":
            final = obs  # the ended envs' true last observations: they reset on the next step
            out["valid"] = torch.as_tensor(~self._pending_reset).to(self.device)
            self._pending_reset = done
        else:  # disabled: reset the ended envs here, as same_step would
            final = obs
            if done.any():
                final = np.array(obs, dtype=np.float32)
                obs, _ = self.vec.reset(options={"reset_mask": done.copy()})
        out["final_obs"] = self._tensor(final)
        next_obs = self._tensor(obs)
        return (
            next_obs,
            self._tensor(reward),
            torch.as_tensor(terminated).to(self.device),
            torch.as_tensor(truncated).to(self.device),
            out,
        )

    # -- resume: what Gymnasium lets us keep -------------------------------------------------------
    def state_dict(self):
        """The seed, modes and counters (plain types and tensors, as weights-only checkpoints need). The envs'
        states themselves cannot be saved through Gymnasium's API."""
        return {
            "task": self.task,
            "seed": self.seed,
            "vectorization": self.vectorization,
            "autoreset_mode": self.autoreset_mode,
            "steps": self.steps,
            "episodes": torch.from_numpy(self.episodes.copy()),
            "resumes": self.resumes,
        }

    def restore_counters(self, state):
        """Take back a state_dict's counters and reseed every env's random stream (its `np_random`) apart from
        the run's start, from the seed, the resume count and the env's index, so that the episodes after a
        resume do not repeat the run's first initial states. Nothing is reset here: the episodes the caller
        started with reset() go on (the ones running at the checkpoint cannot be restored)."""
        if int(state["episodes"].numel()) != self.num_envs:
            raise ValueError(
                "checkpointed gymnasium counters are for %d envs, this env has %d: resume with the run's own "
                "num_envs" % (int(state["episodes"].numel()), self.num_envs)
            )
        self.steps = int(state["steps"])
        self.episodes = state["episodes"].cpu().numpy().astype(np.int64).copy()
        self.resumes = int(state.get("resumes", 0)) + 1
        self.vec.set_attr(
            "np_random", [np.random.default_rng([self.seed, self.resumes, i]) for i in range(self.num_envs)]
        )
        self._seeded = True  # a later reset() must not reseed with the run's first seed
        log.info(
            "backend=gymnasium: restored counters (%d steps, %d episodes) and reseeded the envs (resume %d); "
            "the episodes running at the checkpoint could not be restored, new ones start",
            self.steps,
            int(self.episodes.sum()),
            self.resumes,
        )

    def close(self):
        if self.vec is not None:
            self.vec.close()
            self.vec = None


def make_env(task, num_envs, device="cpu", seed=0, **overrides):
    return GymnasiumVecEnv(task, num_envs, device=device, seed=seed, **overrides)
