"""The sweep spec: its schema (Spec and the launcher options), `load_spec` (YAML or dict plus `key=value`
overrides) and the validation that fails before anything runs, naming the key."""

import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pql_scaling import config as config_lib
from pql_scaling import specs


@dataclass
class LocalOptions:
    devices: List[str] = field(default_factory=lambda: ["cpu"])  # "cpu", GPU indices ("0", "1"), or ["auto"]
    runs_per_device: int = 1  # concurrent runs per device (on "cpu": the pool size)
    threads_per_run: int = 1  # torch intra-op threads (and OMP/MKL threads) of each run


@dataclass
class RayOptions:
    address: Optional[str] = None  # "auto", "ray://host:port", or None: start a local Ray cluster
    # the address a local cluster started by the sweep listens on: loopback (default; nothing outside this
    # machine reaches it) or this machine's IP for other nodes to join (Ray then listens on every interface)
    host: str = "127.0.0.1"
    num_cpus: float = 1.0  # Ray resources of each run's task (fractional GPUs allowed)
    num_gpus: float = 0.0


@dataclass
class SlurmOptions:
    partition: Optional[str] = None
    time_min: int = 60  # per run
    gpus_per_task: int = 0
    cpus_per_task: int = 1
    mem_gb: Optional[float] = None
    array_parallelism: int = 64  # runs of the array running at once
    account: Optional[str] = None
    setup: List[str] = field(default_factory=list)  # lines run before each job (module load ..., source venv)
    # more #SBATCH options, e.g. {qos: high, constraint: a100}
    extra: Dict[str, str] = field(default_factory=dict)
    folder: Optional[str] = None  # submitit's job files and logs; default <out>/.submitit


@dataclass
class LauncherSpec:
    kind: str = "local"  # local | ray | slurm
    # runs that differ only in their seed train as populations of up to this many members, one process each
    # (runtime/population.py: native, mujoco or mjwarp backend), on every launcher; 1: every run its
    # own process. "auto": per configuration, as many members as fit the memory of one process where it runs
    # (sizing.py: replay + networks, gradients, AdamW moments, target + batch working set per member, against
    # 80% of the process's share less 0.5 GB for the interpreter), at most the configuration's seeds, 64, and
    # (local) no more than leaves a pool slot idle; configs that cannot be populations run one process a seed
    # (one INFO line says why). An integer K: a config that cannot be packed is an error.
    population: Any = 1
    # the memory (GB) one population process may use where it runs (GPU memory on a GPU, host RAM otherwise)
    # for population=auto; null: measured (local: this machine; ray: a probe task with the runs' resources;
    # slurm: slurm.mem_gb, so GPU tasks need this set)
    memory_gb: Optional[float] = None
    local: LocalOptions = field(default_factory=LocalOptions)
    ray: RayOptions = field(default_factory=RayOptions)
    slurm: SlurmOptions = field(default_factory=SlurmOptions)


@dataclass
class Spec:
    name: str = MISSING
    out: Optional[str] = None  # the sweep directory; default runs/<name>
    # training overrides shared by every run (grid/zip win)
    base: Dict[str, Any] = field(default_factory=dict)
    grid: Dict[str, List[Any]] = field(default_factory=dict)  # key -> values: the Cartesian product
    zip: Dict[str, List[Any]] = field(default_factory=dict)  # keys whose (equal-length) lists vary together
    seeds: Any = 1  # a count (seeds 0..n-1) or a list of seeds
    # fits.json of `pql-scale analyze`: batch size and lr from B*(sigma), lr*(sigma)
    rules: Optional[str] = None
    retry: int = 2  # resumes of a failed run per launch
    launcher: LauncherSpec = field(default_factory=LauncherSpec)


LAUNCHERS = ("local", "ray", "slurm")
# sweep-only axes: utd = critic updates per env step (sets algo.critic_updates_per_step = utd x num_envs);
# lr = both learning rates at once (R1's sweeps tie the actor's to the critic's)
SWEEP_KEYS = ("utd", "lr")
SWEPT_ELSEWHERE = {"seed": "seeds", "run_dir": "out", "resume": "(a sweep resumes its runs itself)"}


class SpecError(config_lib.ConfigError):
    pass


def _check_keys(d, where, prefix=""):
    """Unknown spec keys fail naming the closest valid ones (the training config's style)."""
    valid = specs.spec_keys(Spec)
    for k, v in d.items():
        full = prefix + str(k)
        if full not in valid:
            raise SpecError("unknown sweep key %r (in %s)%s" % (full, where, specs.did_you_mean(full, valid)))
        if isinstance(v, dict) and full not in ("base", "grid", "zip", "launcher.slurm.extra"):
            _check_keys(v, where, full + ".")


def _check_train_key(key, section):
    if key in SWEPT_ELSEWHERE:
        raise SpecError("%s.%s: a sweep sets %s itself; use %s" % (section, key, key, SWEPT_ELSEWHERE[key]))
    if key in SWEEP_KEYS and section != "base":
        return
    if key not in config_lib.all_keys():
        hint = specs.did_you_mean(key, config_lib.all_keys() + list(SWEEP_KEYS))
        raise SpecError(
            "unknown training key %r in %s%s. `pql-scale keys` lists every key" % (key, section, hint)
        )


def _flat(d):
    return dict(specs.flatten(d)) if d else {}


def _flat_axes(d, section):
    """grid/zip: {key: list}; nested mappings ({algo: {batch_size: [..]}}) flatten to dotted keys."""
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            for k2, v2 in _flat_axes(v, section).items():
                out["%s.%s" % (k, k2)] = v2
        else:
            out[str(k)] = v
    return out


def _apply_overrides(raw, overrides):
    for arg in overrides:
        key, value = specs.parse_assignment(arg, SpecError, "launcher.kind=ray seeds=3")
        section, _, rest = key.partition(".")
        if section in ("base", "grid", "zip") and rest:
            raw.setdefault(section, {})[rest] = value
        else:
            specs.set_dotted(raw, key, value, arg, SpecError)


def load_spec(path_or_dict, overrides=()):
    """A validated Spec from a YAML path or a dict, with `key=value` overrides (e.g. launcher.kind=ray,
    seeds=3, grid.utd=[0.25,0.5]). Unknown keys, wrong types, empty grids fail here, before anything runs."""
    if isinstance(path_or_dict, Spec):  # already loaded: re-validate a copy with the overrides
        path_or_dict = OmegaConf.to_container(OmegaConf.structured(path_or_dict))
    where, raw = specs.read_spec(path_or_dict, "sweep", SpecError, "name, out, base, grid, ...")
    for section in ("base", "grid", "zip"):  # keep training keys as written (dotted or nested)
        if isinstance(raw.get(section), dict):
            raw[section] = _flat_axes(raw[section], section) if section != "base" else _flat(raw[section])
    _apply_overrides(raw, overrides)
    _check_keys(raw, where)
    try:
        spec = OmegaConf.merge(OmegaConf.structured(Spec), raw)
        spec = OmegaConf.to_object(spec)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        raise SpecError("bad value in sweep spec %s at %s: %s" % (where, key, str(e).splitlines()[0]))
    _validate(spec, where)
    return spec


def _validate_axes(spec, where):
    for k in spec.base:
        _check_train_key(k, "base")
    if not spec.grid and not spec.zip:
        raise SpecError(
            "the grid is empty (in %s): give grid: {key: [values]} (e.g. grid: {utd: [0.25, "
            "0.5]}; one configuration: grid: {task: [pendulum]})" % where
        )
    for section, axes in (("grid", spec.grid), ("zip", spec.zip)):
        for k, values in axes.items():
            _check_train_key(k, section)
            if not isinstance(values, list) or not values:
                raise SpecError("%s.%s is empty: give a non-empty list of values" % (section, k))
    if set(spec.grid) & set(spec.zip):
        raise SpecError("keys both in grid and zip: %s" % sorted(set(spec.grid) & set(spec.zip)))
    if len({len(v) for v in spec.zip.values()}) > 1:
        raise SpecError("zip lists must have equal lengths: %s" % {k: len(v) for k, v in spec.zip.items()})


def _validate(spec, where):
    if not spec.name or not re.match(r"^[A-Za-z0-9._-]+$", spec.name):
        raise SpecError("name=%r (in %s): use letters, digits, '.', '_' or '-'" % (spec.name, where))
    spec.out = os.path.abspath(spec.out or os.path.join("runs", spec.name))
    if spec.launcher.kind not in LAUNCHERS:
        raise SpecError("launcher.kind=%r is not one of %s" % (spec.launcher.kind, ", ".join(LAUNCHERS)))
    _validate_axes(spec, where)
    seeds = spec.seeds
    seed_list = (
        isinstance(seeds, list)
        and bool(seeds)
        and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    )
    if isinstance(seeds, bool) or not (isinstance(seeds, int) and seeds > 0 or seed_list):
        raise SpecError("seeds=%r: give a count > 0 or a non-empty list of integer seeds" % (seeds,))
    if isinstance(seeds, list) and len(set(seeds)) != len(seeds):
        raise SpecError("seeds=%r has duplicates" % (seeds,))
    if spec.retry < 0:
        raise SpecError("retry=%d must be >= 0" % spec.retry)
    _validate_population(spec.launcher)
    lo = spec.launcher.local
    if lo.runs_per_device < 1 or lo.threads_per_run < 0 or not lo.devices:
        raise SpecError(
            "launcher.local: devices must be non-empty, runs_per_device >= 1, threads_per_run >= 0"
        )
    if spec.rules is not None:
        load_rules(spec.rules)
        swept = set(spec.base).union(spec.grid, spec.zip)
        clash = sorted(swept & {"algo.batch_size", "algo.critic_lr", "algo.actor_lr", "lr"})
        if clash:
            raise SpecError(
                "rules=%s sets the batch size and learning rates; remove %s from the spec"
                % (spec.rules, clash)
            )


def _validate_population(lc):
    k = lc.population
    if not (k == "auto" or isinstance(k, int) and not isinstance(k, bool) and k >= 1):
        raise SpecError(
            "launcher.population=%r: give auto (members chosen from memory) or members per population, an "
            "integer >= 1 (1: one process a run)" % (k,)
        )
    if lc.memory_gb is not None and not lc.memory_gb > 0:
        raise SpecError("launcher.memory_gb=%r must be > 0 (GB one process may use), or null" % lc.memory_gb)


def load_rules(path):
    """The hparams rules of an analysis's fits.json (read by analysis.rules); SpecError when unusable."""
    from pql_scaling.analysis import rules as analysis_rules

    try:
        hp = analysis_rules.read_rules(path)
    except (OSError, ValueError) as e:
        raise SpecError(
            "rules=%s: cannot read it (%s); give a fits.json written by `pql-scale analyze`" % (path, e)
        )
    missing = [k for k in ("batch_size", "learning_rate") if k not in hp]
    if missing:
        raise SpecError(
            "rules=%s has no hparams.%s rule: analyze a (batch size, lr) sweep first" % (path, missing[0])
        )
    return hp
