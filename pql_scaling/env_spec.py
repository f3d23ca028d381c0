"""The config's env keys: `env_kwargs` (the keyword arguments of the env's constructor) and `gymnasium.*`
(backend=gymnasium's vector-API modes; the schema is GymnasiumConfig below, a section of config.Config), their
checks, and what `envs.make` gets from them (`env_options`).

What each backend does with env_kwargs: gymnasium passes them to `gymnasium.make_vec` and so to the env's own
constructor (`max_episode_steps`, Pendulum-v1's `g`, a MuJoCo env's `forward_reward_weight`); a native task takes
its parameters (the class's numeric attributes: pendulum's g, m, l, dt, max_speed, max_torque, max_episode_steps);
the other backends get them as keyword arguments of their env class. Stdlib and omegaconf only, like config.py:
a native task's class (which imports torch) is read only when env_kwargs is given.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pql_scaling import specs, tasks
from pql_scaling.specs import choice


def _error(msg):
    from pql_scaling.config import ConfigError  # config imports this module

    return ConfigError(msg)


@dataclass
class GymnasiumConfig:
    # sync: one SyncVectorEnv stepping the envs in turn in the actor's process; async: a worker process per env
    vectorization: str = choice("sync", "sync", "async")
    # Gymnasium's autoreset mode, translated into the env contract (envs/gymnasium_backend.py); next_step's reset
    # transitions are never learned from
    autoreset: str = choice("same_step", "same_step", "next_step", "disabled")


# the config keys whose value is one mapping, not a section of keys (specs.flatten's `keep`)
MAPPINGS = ("env_kwargs", "population.vary")
GYMNASIUM_KEYS = {"gymnasium.vectorization": "sync", "gymnasium.autoreset": "same_step"}  # key: default
# the constructor's own names for gymnasium.*: set through those keys, never through env_kwargs
GYMNASIUM_ARGS = {"vectorization": "gymnasium.vectorization", "autoreset_mode": "gymnasium.autoreset"}
NOT_PARAMETERS = (
    "obs_dim",
    "act_dim",
    "state_dim",
    "solved_return",
)  # a native task's fixed class attributes


def native_parameters(task):
    """{name: default} of a native task's parameters: its class's numeric attributes."""
    cls = tasks.load_native(task)
    out = {}
    for name in dir(cls):
        value = getattr(cls, name)
        if name.startswith("_") or name in NOT_PARAMETERS or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[name] = value
    return out


def _number(value):
    """A number, or text YAML 1.1 left as text (`1e-3`), as a float; None if it is neither."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _check_native(task, kwargs):
    """The native task's parameters, each checked (a known name, a number; whole for an int) and coerced."""
    params = native_parameters(task)
    out = {}
    for name, value in kwargs.items():
        if name not in params:
            raise _error(
                "env_kwargs.%s: native task %r has no parameter %r%s; its parameters: %s"
                % (name, task, name, specs.did_you_mean(name, params), ", ".join(sorted(params)))
            )
        whole = isinstance(params[name], int)
        number = _number(value)
        if number is None or (whole and not number.is_integer()):
            raise _error(
                "env_kwargs.%s=%r must be %s (%s's default: %r)"
                % (name, value, "a whole number" if whole else "a finite number", task, params[name])
            )
        out[name] = int(number) if whole else number
    return out


# backend=isaaclab's env_kwargs (envs/isaaclab_backend.py's constructor): name -> what it takes
ISAACLAB_ARGS = {
    "physics": "newton_mjwarp | physx (unset: the task's own)",
    "kit": "true | false: launch Isaac Sim (default: only for physx)",
    "headless": "true | false",
    "cfg_overrides": "{dotted env-config attribute: value}, e.g. {episode_length_s: 10}",
    "final_obs": "true | false: Isaac Lab's compute_final_obs",
}


def _check_isaaclab(kwargs):
    for name, value in kwargs.items():
        if name not in ISAACLAB_ARGS:
            raise _error(
                "env_kwargs.%s: backend=isaaclab takes %s%s"
                % (
                    name,
                    ", ".join("%s (%s)" % kv for kv in ISAACLAB_ARGS.items()),
                    specs.did_you_mean(name, ISAACLAB_ARGS),
                )
            )
    physics = kwargs.get("physics")
    if physics is not None and physics not in ("newton_mjwarp", "physx"):
        raise _error(
            "env_kwargs.physics=%r: backend=isaaclab's physics is newton_mjwarp or physx" % (physics,)
        )
    if kwargs.get("cfg_overrides") is not None and not isinstance(kwargs["cfg_overrides"], Mapping):
        raise _error("env_kwargs.cfg_overrides must be a mapping {attribute path: value}")


# the keyword arguments the MJCF backends' env classes take besides the task's own parameters (the task class's
# `defaults`: Gymnasium v5's constructor arguments); tests/test_config.py checks them against the constructors
MJCF_BACKEND_ARGS = {
    "mujoco": {"nthread": "MuJoCo threads stepping the batch", "max_episode_steps": "the time limit"},
    "mjwarp": {
        "max_episode_steps": "the time limit",
        "nconmax": "contacts per world",
        "njmax": "constraint rows per world",
        "cuda_graph": "true | false: capture the step as a CUDA graph",
    },
}
# backend=isaacgym's env_kwargs (envs/isaacgym_backend.py's constructor)
ISAACGYM_ARGS = {
    "headless": "true | false",
    "graphics_device_id": "the GPU that renders (-1: none)",
    "cfg": "IsaacGymEnvs' task config (a mapping)",
}


def _check_args(backend, kwargs, allowed, what):
    for name in kwargs:
        if name not in allowed:
            raise _error(
                "env_kwargs.%s: backend=%s takes %s%s"
                % (
                    name,
                    backend,
                    ", ".join("%s (%s)" % kv for kv in sorted(allowed.items())),
                    specs.did_you_mean(name, allowed),
                )
                + (" (%s)" % what if what else "")
            )


def _check_mjcf(task, backend, kwargs):
    """An MJCF task's parameters (its Gymnasium v5 constructor's, with their types) and the backend's own."""
    from pql_scaling.tasks.mjcf import MJCF_TASKS  # imports torch: only when env_kwargs is given

    cls = MJCF_TASKS.get(task)
    params = dict(cls.defaults) if cls is not None else {}
    allowed = dict(MJCF_BACKEND_ARGS[backend])
    allowed.update({k: "%s's parameter (default %r)" % (task, v) for k, v in params.items()})
    _check_args(backend, kwargs, allowed, None if cls is not None else "task %r is not an MJCF task" % task)
    for name, value in kwargs.items():
        default = params.get(name)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise _error(
                "env_kwargs.%s=%r must be true or false (%s's default: %r)" % (name, value, task, default)
            )
        if isinstance(default, (int, float)) and not isinstance(default, bool) and _number(value) is None:
            raise _error(
                "env_kwargs.%s=%r must be a finite number (%s's default: %r)" % (name, value, task, default)
            )
        if name in ("max_episode_steps", "nthread", "nconmax", "njmax") and value is not None:
            number = _number(value)
            if number is None or not number.is_integer() or number < 1:
                raise _error("env_kwargs.%s=%r must be a whole number >= 1" % (name, value))


def validate(get, backend=None):
    """env_kwargs and gymnasium.* of a config being validated (`get`: its dotted-key reader). `backend`: the one
    that builds the env; by default the config's, or native for a native task; None when only the backends'
    registries could tell (env_options checks again then, with it resolved). Returns env_kwargs (a native task's
    coerced to its parameters' types)."""
    if backend is None:
        native = get("task") in tasks.NATIVE_TASKS and get("backend") in (None, "native")
        backend = "native" if native else get("backend")
    kwargs = dict(get("env_kwargs") or {})
    if backend == "gymnasium":
        for name, key in GYMNASIUM_ARGS.items():
            if name in kwargs:
                raise _error("env_kwargs.%s: set %s instead" % (name, key))
    elif backend is not None:
        changed = [k for k, default in GYMNASIUM_KEYS.items() if get(k) != default]
        if changed:
            raise _error(
                "%s=%s applies to backend=gymnasium only (this run's backend is %s)"
                % (changed[0], get(changed[0]), backend)
            )
    if backend == "isaaclab":
        _check_isaaclab(kwargs)
    elif backend in MJCF_BACKEND_ARGS and kwargs:
        _check_mjcf(get("task"), backend, kwargs)
    elif backend == "isaacgym":
        _check_args(backend, kwargs, ISAACGYM_ARGS, None)
    return _check_native(get("task"), kwargs) if backend == "native" and kwargs else kwargs


def env_options(cfg, backend):
    """The keyword arguments `envs.make` passes the backend's env constructor: env_kwargs, and for
    backend=gymnasium its vectorisation and autoreset modes. `backend`: the resolved one (envs.default_backend
    where the config leaves it to the task)."""
    from omegaconf import OmegaConf

    kwargs = validate(lambda k: OmegaConf.select(cfg, k), backend)
    kwargs = OmegaConf.to_container(OmegaConf.create(kwargs)) if kwargs else {}  # plain lists and dicts
    if backend == "gymnasium":
        kwargs.update(vectorization=cfg.gymnasium.vectorization, autoreset_mode=cfg.gymnasium.autoreset)
    return kwargs
