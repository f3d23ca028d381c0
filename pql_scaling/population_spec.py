"""population.*: the checks of a population's keys and its members' seeds and values (the schema is
config.PopulationConfig; stdlib only, like config.py, so sweep and study drivers read it without torch)."""

from omegaconf import OmegaConf

from pql_scaling import specs


def _error(msg):
    from pql_scaling.config import ConfigError  # config imports this module

    return ConfigError(msg)


# population.vary: the keys whose per-member values keep every shape and the step schedule static
VARY_KEYS = ("algo.critic_lr", "algo.actor_lr", "algo.batch_size", "algo.noise_std_min", "algo.noise_std_max")


def validate(get):
    """population.* of a config being validated (`get`: its dotted-key reader)."""
    k = get("population.size")
    seeds = get("population.seeds")
    if seeds is not None and len(seeds) != k:
        raise _error(
            "population.seeds has %d seeds for population.size=%d: give one per member" % (len(seeds), k)
        )
    dirs = get("population.run_dirs")
    if dirs is not None and len(dirs) != k:
        raise _error(
            "population.run_dirs has %d paths for population.size=%d: give one per member" % (len(dirs), k)
        )
    if seeds is not None and len(set(seeds)) != len(seeds):
        raise _error("population.seeds=%r repeats a seed: members must differ" % list(seeds))
    vary = get("population.vary") or {}
    for key, values in vary.items():
        if key not in VARY_KEYS:
            raise _error(
                "population.vary.%s cannot differ inside a population (it changes shapes or the step schedule; "
                "sweep over it instead); keys that can: %s%s"
                % (key, ", ".join(VARY_KEYS), specs.did_you_mean(key, VARY_KEYS))
            )
        if not isinstance(values, (list, tuple)) and not OmegaConf.is_list(values) or len(values) != k:
            raise _error("population.vary.%s needs a list of %d values, one per member" % (key, k))
        if not all(_number(v) is not None and _number(v) > 0 for v in values):
            raise _error("population.vary.%s=%r must be positive numbers" % (key, list(values)))
        if key == "algo.batch_size" and not all(_number(v).is_integer() for v in values):
            raise _error("population.vary.algo.batch_size=%r must be whole numbers" % list(values))
    if k == 1:
        if vary:
            raise _error("population.vary needs population.size > 1")
        return
    backend = _backend(get)  # None: an unknown task, which envs.make names with the valid ones
    # (perf.compile is no reason: a population's update compiles as one graph too, runtime/learner.py)
    if backend not in POPULATION_BACKENDS + (None,):
        what = "backend=%s (populations step the %s and %s backends for now)" % (
            backend,
            ", ".join(POPULATION_BACKENDS[:-1]),
            POPULATION_BACKENDS[-1],
        )
        raise _error("population.size=%d does not support %s; set population.size=1 for it" % (k, what))


# the backends whose envs take `members` and `seeds`: each member's envs seeded as its single run's ...
SEEDED_APART = ("native", "mujoco", "mjwarp")
# ... and Isaac Gym, which allows one simulation per process and seeds all of it: its K x num_envs envs are one
# simulation seeded with the first member's seed (member k owns rows k*num_envs ..), so the reset states of a
# member's envs come from that one stream and a member is not reproducible as the single run with its seed
# (run.json: population.envs_seeded_apart=false, and the log says so at start); its networks, replay,
# normalisers, the learners' random streams and checkpoints are its own as on the others. Sweeps therefore do
# not pack it (experiments/sweep/packing.py: a sweep's run is the run its seed names).
POPULATION_BACKENDS = SEEDED_APART + ("isaacgym",)


def not_seeded_apart(cfg):
    """Why a sweep does not pack runs of `cfg` into a population though it could be one (None: it may): a
    backend whose members' envs are not seeded apart would train runs that are not the runs their seeds name."""
    from omegaconf import OmegaConf

    backend = _backend(lambda k: OmegaConf.select(cfg, k))
    if backend in POPULATION_BACKENDS and backend not in SEEDED_APART:
        return (
            "backend=%s's members share one simulation seeded with the first seed, so a member would not be the "
            "run its seed names" % backend
        )
    return None


def _backend(get):
    """The backend a config runs on: `backend`, else the task's own (a non-native task's is looked up in the
    installed simulators, which imports them: only for a population of a non-native task)."""
    if get("backend") is not None:
        return get("backend")
    from pql_scaling import tasks

    if get("task") in tasks.NATIVE_TASKS:
        return "native"
    from pql_scaling import envs

    return envs.default_backend(get("task"))


def _number(v):
    """A number, or text YAML 1.1 left as text (`1e-3`), as a float; None if it is neither."""
    try:
        return None if isinstance(v, bool) else float(v)
    except (TypeError, ValueError):
        return None


def member_seeds(cfg):
    """The seeds of a population's members: population.seeds, or seed, seed+1, ..."""
    p = cfg.population
    return [int(x) for x in p.seeds] if p.seeds is not None else [int(cfg.seed) + k for k in range(p.size)]


def member_values(cfg):
    """{key: [per-member value]} of population.vary (batch sizes as ints)."""
    out = {}
    for key, values in (cfg.population.vary or {}).items():
        out[key] = [int(_number(v)) if key == "algo.batch_size" else _number(v) for v in values]
    return out
