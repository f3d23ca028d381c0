"""The study spec: its schema (StudySpec and its stages), `load_spec` with the validation that fails before
anything runs (every stage's sweep is expanded, so every run's config is checked), and `_sweep_dict`, the
sweep spec of one stage."""

import functools
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pql_scaling import config as config_lib
from pql_scaling import specs
from pql_scaling.analysis.config import AnalysisConfig  # the analysis's schema (stdlib + yaml, no numpy)
from pql_scaling.experiments import sweep


@dataclass
class ReturnsSpec:
    max: float = MISSING  # the task's return counted as 1000 (R1's normalisation)
    min: float = 0.0  # counted as 0: a task with negative returns (Pendulum) needs it


@dataclass
class GridStage:
    utd: List[float] = MISSING
    batch_size: List[int] = MISSING
    lr: List[float] = MISSING  # critic and actor learning rate together
    max_env_steps: Optional[List[int]] = None  # per UTD (zipped with utd): low UTDs need more data to cross J
    seeds: Any = 1
    base: Dict[str, Any] = field(default_factory=dict)  # this stage's training overrides (e.g. max_env_steps)


@dataclass
class FittedStage:
    utd: List[float] = MISSING  # >= 4 values: D_J(sigma) has 3 parameters
    max_env_steps: Optional[List[int]] = None  # per UTD (zipped with utd): low UTDs need more data
    seeds: Any = 2  # a count, a list, or "auto" (time_budget_s)
    # evaluations (and log points) per run, spread over its max_env_steps, so every UTD's crossing is resolved
    # alike; never coarser than base's log interval; 0: base's schedule
    eval_points: int = 0
    base: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ValidateStage:
    utd: List[float] = MISSING  # held-out UTDs; at least one outside the fitted range
    budget_factor: float = 4.0  # the larger budget = this x the largest fitted budget optimum F*
    # a count (seeds no grid or fitted run used: they start above the largest of those), a list (disjoint
    # from those), or "auto"
    seeds: Any = 2
    # eval.every_steps of a validation run <= this fraction of its smallest predicted D_J (the crossing's
    # resolution); 0: keep base's
    eval_spacing: float = 0.05
    # max_env_steps = margin x the larger of the predicted upper bound and F's steps
    steps_margin: float = 1.5
    # ... but the upper bound counts at most this x the point prediction (a noisy fit's interval can reach
    # 1e13 env steps; a run that needs more than 4x the prediction is a miss)
    max_steps_over_prediction: float = 4.0
    # the budget run is skipped (noted) when sigma*(F) lies this factor outside the fitted range
    max_extrapolation: float = 4.0
    # the budget leg also runs sigma*(F) times each of these (each with F's env steps at its own sigma), so
    # sigma* is graded: did it reach the best return at F?
    budget_neighbours: List[float] = field(default_factory=lambda: [0.5, 2.0])
    # with seeds: auto, when even seeds_min overruns the stage's share of the time left: drop (the most
    # expensive held-out UTDs, recorded in prediction.json and the report) | run (every one, over budget)
    over_budget: str = "drop"
    base: Dict[str, Any] = field(default_factory=dict)


def _analysis(name):
    """The analysis schema's field `name`: its default and allowed values, defined once there."""
    return specs.same_as(AnalysisConfig, name)


@dataclass
class AnalysisSpec:
    thresholds: Optional[List[float]] = None  # default R1's 300 ... 800
    sweep_threshold: float = _analysis("sweep_threshold")
    bootstrap: int = _analysis("bootstrap")
    returns: str = _analysis("returns")  # auto | eval | train: which logged return the laws are fitted on
    # flops (F = C + delta D) | wall_clock (also: the time model from the logged rates)
    budget: str = _analysis("budget")
    delta: Any = _analysis("delta")  # FLOPs-equivalent per transition, or "measured" (from the rates)
    # r1 (10 N B sigma D) | measured (our FLOP counts); one default, the analysis's: r1 (studies/*.yaml say measured)
    compute: str = _analysis("compute")
    model_size: Optional[float] = _analysis("model_size")  # default: run.json's critic_params
    holdout_top_k: int = _analysis("holdout_top_k")
    # a study's defaults, not R1's: crossings interpolated between evaluations (their resolution is the
    # evaluation spacing, not the crossing) and D_J(sigma) fitted jointly over thresholds (identifiable, monotone
    # in J); `first` / `r1` give R1's analysis exactly
    crossing: str = specs.choice("interpolate", "first", "interpolate")
    dj_fit: str = specs.choice("joint", "r1", "joint")
    grade_top_k: int = 2  # the summary grades the top-k thresholds
    target_rel_error: float = 0.15


@dataclass
class WandbSpec:
    # online | offline | disabled; runs and the analysis run share the group `name`
    mode: str = specs.choice("disabled", "online", "offline", "disabled")
    project: str = "pql-scaling"
    entity: Optional[str] = None


@dataclass
class RecommendSpec:
    budget: Optional[float] = None  # default: the validation budget
    num_envs: Optional[int] = None  # default: base num_envs (or the task's)


@dataclass
class StudySpec:
    name: str = MISSING
    task: str = MISSING
    out: Optional[str] = None  # default runs/<name>
    base: Dict[str, Any] = field(default_factory=dict)  # training overrides shared by every run
    returns: ReturnsSpec = field(default_factory=ReturnsSpec)
    grid: GridStage = field(default_factory=GridStage)
    fitted: FittedStage = field(default_factory=FittedStage)
    validate: ValidateStage = field(default_factory=ValidateStage)
    analysis: AnalysisSpec = field(default_factory=AnalysisSpec)
    launcher: sweep.LauncherSpec = field(default_factory=sweep.LauncherSpec)
    retry: int = 2
    wandb: WandbSpec = field(default_factory=WandbSpec)
    recommend: RecommendSpec = field(default_factory=RecommendSpec)
    # members per population: "auto" packs each configuration's seeds into one process where the config allows
    # it (mode=sync, native backend, local launcher: runtime/population.py), else 1; an int caps it
    population: Any = "auto"
    # the study's wall-clock budget in seconds (0: none); a stage with `seeds: auto` takes as many seeds as fit
    # its share, from the costs the study measured on its own earlier runs (seeds_min ... seeds_max)
    time_budget_s: float = 0.0
    seeds_min: int = 8
    seeds_max: int = 32
    # the first seed of every stage's counted seeds (a count or auto; lists are taken as written): another base
    # trains an independent replicate of the whole study, with no run of the base-0 study replayed
    seed_base: int = 0


class StudyError(config_lib.ConfigError):
    pass


_CONSTRAINTS = {k: m for k, m in specs.constraints(StudySpec).items() if "choices" in m}

# base keys the study sets itself (task, the grid, the rules)
STUDY_SETS = ("task", "algo.batch_size", "algo.critic_lr", "algo.actor_lr", "algo.critic_updates_per_step")


def load_spec(path_or_dict, overrides=()):
    """A validated StudySpec from YAML or a dict plus `key=value` overrides; unknown keys and bad values fail
    here naming the key, before anything runs; every stage's sweep is expanded (so every run config
    checked)."""
    where, raw = specs.read_spec(path_or_dict, "study", StudyError, "name, task, grid, fitted, validate, ...")
    for arg in overrides:
        k, v = specs.parse_assignment(arg, StudyError, "validate.seeds=3 launcher.local.runs_per_device=2")
        specs.set_dotted(raw, k, v, arg, StudyError)
    for section in ("base",):
        if isinstance(raw.get(section), dict):
            raw[section] = dict(specs.flatten(raw[section]))
    try:
        spec = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(StudySpec), raw))
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        hint = specs.did_you_mean(key, sorted(specs.spec_keys(StudySpec)))
        raise StudyError("study spec %s: %s at %s%s" % (where, str(e).splitlines()[0], key, hint))
    _validate(spec, where)
    return spec


def _validate(spec, where):
    if not spec.name:
        raise StudyError("name is empty (in %s)" % where)
    spec.out = os.path.abspath(spec.out or os.path.join("runs", spec.name))
    if not spec.returns.max > spec.returns.min:
        raise StudyError(
            "returns.max=%g must be above returns.min=%g (the returns counted as 1000 and 0)"
            % (spec.returns.max, spec.returns.min)
        )
    a = spec.analysis
    for key, meta in _CONSTRAINTS.items():  # analysis.returns / budget / compute, wandb.mode
        value = functools.reduce(getattr, key.split("."), spec)
        if specs.broken(value, meta) == "choices":
            raise StudyError("%s=%r is not one of %s" % (key, value, ", ".join(meta["choices"])))
    if not (a.delta == "measured" or isinstance(a.delta, (int, float)) and a.delta >= 0):
        raise StudyError("analysis.delta=%r: give FLOPs per transition (>= 0) or \"measured\"" % (a.delta,))
    if spec.validate.over_budget not in ("drop", "run"):
        raise StudyError("validate.over_budget=%r is not one of drop, run" % (spec.validate.over_budget,))
    if len(set(spec.fitted.utd)) < 4:
        raise StudyError(
            "fitted.utd=%s: D_J(sigma) = D_min + (beta/sigma)^alpha needs >= 4 distinct UTDs"
            % list(spec.fitted.utd)
        )
    for stage in ("grid", "fitted"):
        st = getattr(spec, stage)
        if st.max_env_steps and len(st.max_env_steps) != len(st.utd):
            raise StudyError(
                "%s.max_env_steps has %d values for %d UTDs: give one per UTD (or none)"
                % (stage, len(st.max_env_steps), len(st.utd))
            )
    if len(set(spec.grid.utd)) < 2:
        raise StudyError("grid.utd=%s: the hyperparameter rules need >= 2 UTDs" % list(spec.grid.utd))
    lo, hi = min(spec.fitted.utd), max(spec.fitted.utd)
    if not any(not lo <= s <= hi for s in spec.validate.utd):
        raise StudyError(
            "validate.utd=%s: at least one held-out UTD must lie outside the fitted range "
            "[%g, %g]" % (list(spec.validate.utd), lo, hi)
        )
    if spec.validate.max_steps_over_prediction < 1 or spec.validate.steps_margin < 1:
        raise StudyError(
            "validate.steps_margin=%g and validate.max_steps_over_prediction=%g must be >= 1 "
            "(a run shorter than its prediction cannot cross the threshold)"
            % (spec.validate.steps_margin, spec.validate.max_steps_over_prediction)
        )
    if spec.validate.budget_factor <= 1:
        raise StudyError(
            "validate.budget_factor=%g must be > 1 (a budget above every fitted one)"
            % spec.validate.budget_factor
        )
    _validate_seeds(spec)
    for k in spec.base:
        if k in STUDY_SETS:
            raise StudyError("base.%s: the study sets %s itself (task / grid / rules)" % (k, k))
    for stage in ("grid", "fitted", "validate"):  # every run of every stage is a valid training config
        try:
            # steps: predicted later
            z = {"utd": list(spec.validate.utd), "max_env_steps": [1] * len(spec.validate.utd)}
            rules = None if stage == "grid" else "__skip__"
            sweep.expand(sweep.load_spec(_sweep_dict(spec, stage, rules=rules, zip_=z)))
        except config_lib.ConfigError as e:
            raise StudyError("stage %s of study %s: %s" % (stage, where, e))


def _validate_seeds(spec):
    for stage in ("grid", "fitted", "validate"):
        seeds = getattr(spec, stage).seeds
        if seeds == "auto" and (stage == "grid" or spec.time_budget_s <= 0):
            raise StudyError(
                "%s.seeds=auto: %s"
                % (
                    stage,
                    "the grid stage measures the costs auto seeds are chosen from; give it a count"
                    if stage == "grid"
                    else "needs time_budget_s > 0 (the study's wall-clock budget the seeds must fit)",
                )
            )
    if spec.seed_base < 0:
        raise StudyError("seed_base=%d: seeds start at 0 or above" % spec.seed_base)
    if not 1 <= spec.seeds_min <= spec.seeds_max:
        raise StudyError(
            "seeds_min=%d, seeds_max=%d: need 1 <= seeds_min <= seeds_max" % (spec.seeds_min, spec.seeds_max)
        )
    if not (spec.population == "auto" or isinstance(spec.population, int) and spec.population >= 1):
        raise StudyError("population=%r: give \"auto\" or members per population (>= 1)" % (spec.population,))
    if isinstance(spec.validate.seeds, list):
        fitted = set(_seed_list(spec.grid.seeds, 1, spec.seed_base))
        fitted |= set(_seed_list(spec.fitted.seeds, spec.seeds_max, spec.seed_base))
        both = sorted(fitted & set(spec.validate.seeds))
        if both:
            raise StudyError(
                "validate.seeds %s are also grid or fitted seeds: a validation run with a fitted run's seed "
                "and configuration replays it; give a count (fresh seeds are chosen) or other seeds" % both
            )


# ---------------------------------------------------------------------------------------------- stage sweeps
def _dir(spec, *parts):
    return os.path.join(spec.out, *parts)


def _seed_list(seeds, auto_as, base=0):
    if seeds == "auto":
        return list(range(base, base + auto_as))
    return list(range(base, base + seeds)) if isinstance(seeds, int) else list(seeds)


def stage_seeds(spec, stage, resolved=None):
    """The seeds of a stage: its `seeds` (a count, a list, or "auto" resolved by the study into `resolved`
    {stage: count}). Validation seeds are never a fitted run's: a count starts above every seed the grid and
    fitted stages can use (fitted "auto" counts as seeds_max), so no validation run replays a fitted run."""
    st = getattr(spec, stage)
    seeds = (resolved or {}).get(stage, st.seeds)
    if stage != "validate" or not isinstance(seeds, (int, str)):
        return _seed_list(seeds, spec.seeds_min, spec.seed_base)
    used = _seed_list(spec.grid.seeds, 1, spec.seed_base) + _seed_list(
        spec.fitted.seeds, spec.seeds_max, spec.seed_base
    )
    start = max(used) + 1
    return list(range(start, start + (spec.seeds_min if seeds == "auto" else seeds)))


def _population(spec, base, n):
    """Members per population for a stage of n seeds per configuration (StudySpec.population)."""
    if spec.launcher.population != 1:  # the user's own packing
        return spec.launcher.population
    if spec.population == "auto":
        if n < 2:
            return 1
        try:
            config_lib.load(_args(base) + ["population.size=2"])
        except config_lib.ConfigError:  # e.g. mode=trio or a backend without populations: one process a seed
            return 1
        # locally, a configuration's seeds are one population (the cost model counts them so); a Ray or SLURM
        # worker's memory is not known here: the sweep sizes its populations from it (sizing.py)
        return n if spec.launcher.kind == "local" else "auto"
    return max(1, min(int(spec.population), n))


def _args(base):
    """base as `pql-scale train` arguments, with a placeholder run length where the stage gives it per UTD."""
    args = ["%s=%s" % (k, sweep.arg_string(v)) for k, v in base.items()]
    return args + ([] if "max_env_steps" in base else ["max_env_steps=1000"])


def base_cfg(spec):
    """The config every run of the study starts from (a placeholder length where each stage gives its own)."""
    return config_lib.load(_args(dict(spec.base, task=spec.task)))


def _eval_schedule(base, st):
    """log.every_steps / eval.every_steps per UTD: st.eval_points evaluations over each run's max_env_steps
    (evaluations happen at log points), never coarser than base's log interval."""
    cfg = config_lib.load(_args(base))
    n, every = cfg.num_envs, cfg.log.every_steps
    log = [max(1, min(every, int(d / st.eval_points / n))) for d in st.max_env_steps]
    return {"log.every_steps": log, "eval.every_steps": [k * n for k in log]}


def eval_every(spec, stage):
    """eval.every_steps of each UTD's runs in a grid or fitted stage (0: no evaluations), as _sweep_dict sets it."""
    st = getattr(spec, stage)
    base = dict(spec.base, task=spec.task)
    base.update(st.base)
    if stage == "fitted" and st.max_env_steps and st.eval_points:
        base.pop("max_env_steps", None)
        return list(_eval_schedule(base, st)["eval.every_steps"])
    return [config_lib.load(_args(base)).eval.every_steps] * len(st.utd)


def _sweep_dict(spec, stage, rules=None, zip_=None, seeds=None):
    """The sweep spec of one stage. rules="__skip__" (validation only): expand without rules, nothing runs.
    seeds: the study's resolved seed counts {stage: n} (stages with `seeds: auto`)."""
    st = getattr(spec, stage)
    base = dict(spec.base, task=spec.task)
    base.update(st.base)
    base.setdefault("wandb.group", spec.name)  # the analysis run joins this group; base's own values win
    base.setdefault("wandb.mode", spec.wandb.mode)
    base.setdefault("wandb.project", spec.wandb.project)
    if spec.wandb.entity:
        base.setdefault("wandb.entity", spec.wandb.entity)
    seed_list = stage_seeds(spec, stage, seeds)
    launcher = OmegaConf.to_container(OmegaConf.structured(spec.launcher))
    launcher["population"] = _population(spec, base, len(seed_list))
    d = {
        "name": "%s-%s" % (spec.name, stage),
        "out": _dir(spec, stage),
        "seeds": seed_list,
        "retry": spec.retry,
        "launcher": launcher,
    }
    if stage in ("grid", "fitted"):
        d["grid"] = {}
        if st.max_env_steps:  # each UTD with its own data budget
            d["zip"] = {"utd": list(st.utd), "max_env_steps": list(st.max_env_steps)}
            base.pop("max_env_steps", None)
            if stage == "fitted" and st.eval_points:
                d["zip"].update(_eval_schedule(base, st))
        else:
            d["grid"]["utd"] = list(st.utd)
        if stage == "grid":
            d["grid"].update({"algo.batch_size": list(st.batch_size), "lr": list(st.lr)})
    else:
        z = zip_ or {"utd": list(st.utd)}
        if "max_env_steps" in z:
            base.pop("max_env_steps", None)
        d["zip"] = z
    if rules and rules != "__skip__":
        d["rules"] = rules
    d["base"] = base
    return d
