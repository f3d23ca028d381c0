"""The analysis configuration: its schema (AnalysisConfig: every key with its default, type, choices and the
modes that use it, as field metadata that pql_scaling.specs reads; DEFAULTS derived from it), and the checks and
coercions that turn a user's dict (YAML or CLI) into the one `run_analysis` works on; every wrong value is named
with its key. `table:` and `tensorboard:` have their own schemas (TableSpec, TensorboardSpec).

Two modes share the keys: R1's (run_analysis's default: rules, D_J(sigma), compute, budget) and R5's
(per-task absolute thresholds, R5's released formats, or its threshold rule / pooled variant: `is_r5`).
"""

import re
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Union

from pql_scaling import specs  # the spec machinery every schema shares (stdlib + yaml)
from pql_scaling.specs import choice, described, did_you_mean

from .errors import AnalysisInputError

FORMATS = ("auto", "runs", "qscaled", "wandb", "table", "tensorboard", "model_scaling", "bro_ablations")
R5_FORMATS = ("model_scaling", "bro_ablations")
EXCLUDE_AXES = ("width", "size", "sigma", "batch_size")
RETURNS = ("auto", "eval", "train")  # auto: the deterministic-policy eval return when every run logs it
BUDGETS = ("flops", "wall_clock")
CROSSINGS = ("first", "interpolate")
DJ_FITS = ("r1", "joint")


def _shape(default, expect, **meta):
    """A field whose value must match its annotation in every mode; `expect` ends the error ("must be a path")."""
    return described(default, expect=expect, **meta)


R1, R5 = ("r1",), ("r5",)  # a field's `mode`: the analysis modes that use it (is_r5)


def _number(default, typ=float, mode=R1 + R5, **meta):
    """A number (or a mapping of them, by the annotation) coerced with `typ` in the modes that use it: YAML 1.1
    reads `1.5e5` as text."""
    return described(default, number=typ, mode=mode, **meta)


@dataclass
class AnalysisConfig:
    """The analysis config's schema: every key, its default, its type and allowed values. The config itself stays
    a dict (YAML or the command line, then `with_defaults`). Every mode checks the shapes (`expect`) and the
    choices of the fields without a mode (check_types); R1 mode the numbers and choices of the fields whose
    `mode` holds "r1" (r1_config), R5 mode those holding "r5" (r5_config)."""

    inputs: List[str] = _shape([], "must be a list of paths or wandb://entity/project")
    format: str = choice("auto", *FORMATS)
    max_returns: Dict[str, float] = _number({}, mode=R1, expect="must map task -> R_max")
    thresholds: Union[None, List[float], Dict[str, Any]] = _shape(
        None, "must be a list of numbers or map task -> J (or [J, ...])"
    )
    sweep_threshold: float = _number(800.0, mode=R1)
    model_size: Optional[float] = _number(None, mode=R1)
    delta: Union[float, str] = _number(4e9)  # FLOPs-equivalent per transition; R1 mode: or "measured"
    holdout_top_k: int = _number(2, int, mode=R1)
    bootstrap: int = _number(100, int)
    hparam_fits: Optional[str] = _shape(None, "must be a path")
    out: str = _shape("analysis_out", "must be a path")
    seed: int = _number(0, int, mode=R1)
    # one default for every caller (the study's `analysis.compute` takes it): r1, R1's C = 10 N B sigma D
    compute: str = choice("r1", "r1", "measured")
    no_crossing: str = choice("first", "first", "skip")
    plots: bool = _shape(True, "must be true or false")
    # R5 (docs/science.md 3): per-task absolute thresholds ({task: J} or {task: [J, ...]}), R5's threshold rule
    threshold_rule: Optional[str] = described(
        None,
        choices=(None, "r5"),
        mode=R5,
        refuse="threshold_rule={!r}: the only rule is `threshold_rule: r5`",
    )
    threshold_base: Dict[str, float] = _number({}, mode=R5)
    tasks: Optional[List[str]] = None
    exclude: Dict[str, Any] = described({}, axes=EXCLUDE_AXES)  # R5 mode: {axis: value or [values]} left out
    reset_every_grad_steps: Optional[float] = _number(None, mode=R5)
    pool: Optional[str] = described(
        None, choices=(None, "r5"), mode=R5, refuse="pool={!r}: the only pooled variant is `pool: r5`"
    )
    r5_seed: int = _number(42, int, mode=R5)
    min_returns: Dict[str, float] = _number({}, mode=R1)
    returns: str = described("auto", choices=RETURNS, mode=R1)
    budget: str = described("flops", choices=BUDGETS, mode=R1)
    # D_J: the first logged step at or above J (R1) or interpolated between the log points around it
    crossing: str = described("first", choices=CROSSINGS, mode=R1)
    # D_J(sigma): one fit per threshold (R1) or one joint fit, alpha shared, monotone in J (fit/joint.py)
    dj_fit: str = described("r1", choices=DJ_FITS, mode=R1)
    # bring your own logs (TableSpec, TensorboardSpec): how columns / tags map on runs
    table: Optional[Dict[str, Any]] = None
    tensorboard: Optional[Dict[str, Any]] = None


FIELDS = {f.name: f for f in fields(AnalysisConfig)}
# the keys and their defaults (with_defaults takes fresh ones: the list and dict defaults are not shared)
DEFAULTS = specs.defaults(AnalysisConfig)


def number(cfg, key, typ=float):
    """YAML 1.1 reads `1.5e5` (no dot, no sign) as a string: coerce numbers, name the key if impossible."""
    try:
        return typ(float(cfg[key])) if typ is int else typ(cfg[key])
    except (TypeError, ValueError):
        raise AnalysisInputError(f"config key `{key}` must be a number, got {cfg[key]!r}") from None


def _numbers(key, value, annotation, typ):
    """`value` coerced with `typ` by the field's annotation: a number, or a mapping (each named `key.task`); an
    Optional field's None stays None."""
    if value is None and type(None) in typing.get_args(annotation):
        return None
    if typing.get_origin(annotation) is dict:
        if not isinstance(value or {}, dict):
            raise AnalysisInputError(f"config key `{key}` must map task -> a number, got {value!r}")
        return {t: number({f"{key}.{t}": v}, f"{key}.{t}", typ) for t, v in (value or {}).items()}
    return number({key: value}, key, typ)


def _check_fields(cfg, mode=None):
    """The fields checked against their metadata, each wrong value named with its key. mode=None (every
    mode): each field's shape (`expect`), and the choices of the fields without a mode; mode="r1" / "r5": the
    fields used in that mode, numbers coerced, then their choices."""
    for name, f in FIELDS.items():
        meta = f.metadata
        if mode is None and "expect" in meta and not specs.is_instance(cfg[name], f.type):
            raise AnalysisInputError(f"config key `{name}` {meta['expect']}, got {cfg[name]!r}")
        if not (meta.get("mode") is None if mode is None else mode in meta.get("mode", ())):
            continue
        if "number" in meta:
            cfg[name] = _numbers(name, cfg[name], f.type, meta["number"])
        if specs.broken(cfg[name], meta) == "choices":
            if "refuse" in meta:
                raise AnalysisInputError(meta["refuse"].format(cfg[name]))
            raise AnalysisInputError(
                f"config key `{name}` must be one of {list(meta['choices'])}, got {cfg[name]!r}"
            )


def with_defaults(cfg):
    """The user's keys (each known) over the schema's defaults, with the shapes every mode relies on checked."""
    unknown = sorted(set(cfg) - set(FIELDS))
    if unknown:
        hint = "".join(did_you_mean(k, FIELDS) for k in unknown[:1])
        raise AnalysisInputError(f"unknown config key(s) {unknown}{hint}; known: {sorted(FIELDS)}")
    cfg = {**specs.defaults(AnalysisConfig), **{k: v for k, v in dict(cfg).items() if v is not None}}
    check_types(cfg)
    return cfg


def check_types(cfg):
    """The shapes and choices the analysis relies on in every mode, each wrong one named (YAML lets any key
    hold anything)."""
    if isinstance(cfg["inputs"], str):
        cfg["inputs"] = [cfg["inputs"]]
    _check_fields(cfg, None)
    check_log_specs(cfg)


# ------------------------------------------------------------------------------- bring your own logs
@dataclass
class TableSpec:
    """`table:` (format: table): which columns of a tidy CSV / Parquet identify a run, its task, seed, step,
    return (check_table)."""

    run: Union[None, str, List[str]] = None  # column(s) whose values together identify one run (required)
    task: Union[None, str, Dict[str, Any]] = None  # column, or {value: the task} (required)
    seed: Optional[str] = None  # column; without it the runs of one configuration are numbered 0, 1, ...
    step: Optional[str] = None  # column of env steps; or
    steps_per_row: Optional[float] = None  # env steps between a run's consecutive rows
    value: Optional[str] = None  # column of the return (required)
    where: Dict[str, Any] = field(default_factory=dict)  # {column: value or [values]}: keep only these rows
    # {name: column} or {name: {column: c, map: {value: number}}} or {name: {value: v}}
    params: Dict[str, Any] = field(default_factory=dict)
    # optional columns: critic updates (default sigma * env steps), FLOPs, wall time
    grad_steps: Optional[str] = None
    flops: Optional[str] = None
    wall_time_s: Optional[str] = None
    # a W&B chart export (load/wide.py): a column `<run name> - <metric>` per run; `value` names the metric, `run`
    # is the run name, `pattern` reads fields from it ({task}_utd{utd}_s{seed}: a parameter, the task or the seed)
    wide: bool = False
    pattern: Optional[str] = None


# a run parameter's name (`table.params`, TensorBoard hparams) -> the tidy table's column (load/table.py)
TABLE_PARAMS = {
    "utd": "sigma",
    "sigma": "sigma",
    "batch_size": "batch_size",
    "lr": "lr",
    "learning_rate": "lr",
    "critic_lr": "lr",
    "model_size": "model_size",
    "critic_params": "model_size",
    "experts": "experts",
    "num_envs": "num_envs",
    "r_max": "r_max",
    "algo": "algo",
}
TEXT_PARAMS = ("algo",)  # every other parameter is a number


@dataclass
class TensorboardSpec:
    """`tensorboard:` (format: tensorboard): which tags hold the return and the env step, where parameters come
    from (check_tensorboard)."""

    scalar: Optional[str] = None  # the return's scalar tag (required), e.g. charts/episodic_return
    # a scalar tag holding env steps, joined on the event step; default: the event step
    step: Optional[str] = None
    # parameters from the run's path, e.g. utd_{utd}/bs_{batch_size}/seed_{seed}
    pattern: Optional[str] = None
    task: Optional[str] = None  # the task when neither the hparams nor the pattern name it
    params: Dict[str, Any] = field(default_factory=dict)  # constants for every run, e.g. {model_size: 1.5e5}


def _spec(cfg, key, schema):
    """The `key:` mapping over its schema's defaults, unknown keys named with a did-you-mean."""
    spec, defaults = cfg[key], specs.defaults(schema)
    if not isinstance(spec, dict):
        raise AnalysisInputError(
            f"config key `{key}` must be a mapping ({', '.join(defaults)}), got {spec!r}"
        )
    unknown = sorted(set(spec) - set(defaults))
    if unknown:
        hint = did_you_mean(unknown[0], defaults)
        raise AnalysisInputError(f"unknown key(s) {unknown} under `{key}`{hint}; known: {sorted(defaults)}")
    return {**defaults, **{k: v for k, v in spec.items() if v is not None}}


def _param_names(key, params, allowed):
    if not isinstance(params, dict):
        raise AnalysisInputError(f"`{key}.params` must map a parameter name to its source, got {params!r}")
    bad = sorted(set(params) - set(allowed))
    if bad:
        hint = did_you_mean(bad[0], allowed)
        raise AnalysisInputError(
            f"`{key}.params`: unknown parameter(s) {bad}{hint}; known: {sorted(allowed)}"
        )


def check_table(cfg):
    """`table:` checked: required columns named, each param a column, a mapped column or a constant."""
    t = _spec(cfg, "table", TableSpec)
    _wide_defaults(t)
    t["run"] = [t["run"]] if isinstance(t["run"], str) else t["run"]
    if not t["run"] or not isinstance(t["run"], list) or not all(isinstance(c, str) for c in t["run"]):
        raise AnalysisInputError(
            "`table.run` must name the column(s) that identify a run, e.g. [exp_name, seed]"
        )
    if not isinstance(t["value"], str):
        raise AnalysisInputError(f"`table.value` must name a column, got {t['value']!r}")
    if not (isinstance(t["task"], str) or (isinstance(t["task"], dict) and set(t["task"]) == {"value"})):
        raise AnalysisInputError(
            f"`table.task` must name a column or be {{value: the task}}, got {t['task']!r}"
            + (" (or put {task} in table.pattern)" if t["wide"] else "")
        )
    if (t["step"] is None) == (t["steps_per_row"] is None) and not t["wide"]:
        raise AnalysisInputError("give one of `table.step` (the env-step column) or `table.steps_per_row`")
    if t["steps_per_row"] is not None and not number(t, "steps_per_row") > 0:
        raise AnalysisInputError(f"`table.steps_per_row` must be > 0, got {t['steps_per_row']!r}")
    if not isinstance(t["where"], dict):
        raise AnalysisInputError(f"`table.where` must map column -> value(s), got {t['where']!r}")
    _param_names("table", t["params"], TABLE_PARAMS)
    for name, p in t["params"].items():
        ok = isinstance(p, str) or (
            isinstance(p, dict)
            and set(p) <= {"column", "map", "value"}
            and (("column" in p) != ("value" in p))
            and isinstance(p.get("map", {}), dict)
            and ("map" not in p or "column" in p)
        )
        if not ok:
            raise AnalysisInputError(
                f"`table.params.{name}` must be a column name, {{column: c, map: {{value: {name}}}}} "
                f"or {{value: constant}}, got {p!r}"
            )
    if not {"utd", "sigma"} & set(t["params"]):
        raise AnalysisInputError(
            "`table.params` needs `utd`: the UTD (critic updates per env step) of each run, e.g. "
            "utd: {column: exp_name, map: {utd1: 1.0, utd4: 4.0}} or utd: {value: 1.0}"
        )
    return t


def _wide_defaults(t):
    """A wide export's mapping: `run` is the run's name; the pattern's fields named as a parameter, the task or the
    seed are those (a user's own entry wins); the steps come from the export's step column."""
    if not isinstance(t["wide"], bool) or (t["pattern"] is not None and not t["wide"]):
        raise AnalysisInputError(f"`table.wide` must be true or false (true for a pattern): {t['wide']!r}")
    if not t["wide"]:
        return
    if t["steps_per_row"] is not None or not isinstance(t["pattern"], (str, type(None))):
        raise AnalysisInputError("`table.wide`: no steps_per_row; `pattern` is a string ({task}_s{seed})")
    fields = re.findall(r"\{(\w+)\}", t["pattern"] or "")
    if len(set(fields)) < len(fields):
        raise AnalysisInputError(f"`table.pattern` names a field twice: {t['pattern']!r}")
    t["run"], t["task"] = t["run"] or "run", t["task"] or ("task" if "task" in fields else None)
    t["seed"] = t["seed"] or ("seed" if "seed" in fields else None)
    if isinstance(t["params"], dict):  # else check_table names it
        t["params"] = {**{f: f for f in fields if f in TABLE_PARAMS}, **t["params"]}


def check_tensorboard(cfg):
    """`tensorboard:` checked: the return's tag named, the pattern's fields known parameters."""
    t = _spec(cfg, "tensorboard", TensorboardSpec)
    if not isinstance(t["scalar"], str):
        raise AnalysisInputError(
            "`tensorboard.scalar` must name the return's scalar tag (e.g. charts/episodic_return)"
        )
    for k in ("step", "pattern", "task"):
        if t[k] is not None and not isinstance(t[k], str):
            raise AnalysisInputError(f"`tensorboard.{k}` must be a string, got {t[k]!r}")
    allowed = {**TABLE_PARAMS, "task": "task", "seed": "seed"}
    _param_names("tensorboard", t["params"], allowed)
    if t["pattern"]:
        import string

        fields = [f for _, f, _, _ in string.Formatter().parse(t["pattern"]) if f]
        _param_names("tensorboard", {f: 0 for f in fields}, allowed)
    return t


def check_log_specs(cfg):
    """`table:` / `tensorboard:` go with their format (format: auto takes the one given)."""
    for key, check in (("table", check_table), ("tensorboard", check_tensorboard)):
        if cfg[key] is None:
            if cfg["format"] == key:
                keys = ", ".join(f.name for f in fields(TableSpec if key == "table" else TensorboardSpec))
                raise AnalysisInputError(f"format: {key} needs a `{key}:` mapping ({keys})")
            continue
        if cfg["format"] == "auto":
            cfg["format"] = key
        if cfg["format"] != key:
            raise AnalysisInputError(f"`{key}:` is given but format is {cfg['format']!r}: set format: {key}")
        cfg[key] = check(cfg)


def is_r5(cfg):
    """R5's mode: one of its released formats, per-task thresholds, or its threshold rule / pooled variant."""
    return (
        cfg.get("format") in R5_FORMATS
        or isinstance(cfg.get("thresholds"), dict)
        or cfg.get("pool") is not None
        or cfg.get("threshold_rule") is not None
    )


def r1_config(cfg):
    """R1 mode's numbers coerced and choices checked. Returns (cfg, delta_measured): `delta: measured` asks
    for delta from the runs' rates (analysis/wallclock.py); until then cfg holds the default."""
    delta_measured = cfg["delta"] == "measured"
    if delta_measured:
        cfg["delta"] = DEFAULTS["delta"]
    _check_fields(cfg, "r1")
    if cfg["thresholds"] is not None:  # a list here (a mapping is R5 mode)
        cfg["thresholds"] = [number({"thresholds": t}, "thresholds") for t in cfg["thresholds"]]
    return cfg, delta_measured


def r5_config(cfg):
    """R5 mode's settings checked and coerced (thresholds become {task: [J, ...]})."""
    _check_fields(cfg, "r5")
    ex = dict(cfg["exclude"] or {})
    axes = FIELDS["exclude"].metadata["axes"]
    bad = sorted(set(ex) - set(axes))
    if bad:
        raise AnalysisInputError(f"exclude: unknown axis {bad}; axes: {list(axes)} (e.g. {{width: [2048]}})")
    cfg["exclude"] = {k: [v] if not isinstance(v, (list, tuple)) else list(v) for k, v in ex.items()}
    th = cfg["thresholds"]
    if th is not None and not isinstance(th, dict):
        raise AnalysisInputError(
            "R5's analysis takes per-task absolute thresholds: `thresholds: {task: J}` "
            "(or {task: [J, ...]}), or `threshold_rule: r5` with "
            "`threshold_base: {task: base}`"
        )
    if th is None and (cfg["threshold_rule"] != "r5" and cfg["pool"] != "r5"):
        raise AnalysisInputError(
            "R5 mode needs thresholds: `thresholds: {task: J}` or `threshold_rule: r5` "
            "with `threshold_base: {task: base}`"
        )
    listed = lambda v: v if isinstance(v, (list, tuple)) else [v]
    cfg["thresholds"] = {
        t: [number({f"thresholds.{t}": x}, f"thresholds.{t}") for x in listed(v)]
        for t, v in (th or {}).items()
    }
    if (cfg["threshold_rule"] == "r5" or cfg["pool"] == "r5") and not cfg["threshold_base"]:
        raise AnalysisInputError(
            "threshold_rule: r5 (and pool: r5) need `threshold_base: {task: base}` "
            "(R5's DMC bases: docs/science.md 3)"
        )
    return cfg


def config_record(cfg):
    """The config as fits.json records it: every key of DEFAULTS, `inputs` last as a list."""
    inputs = [cfg["inputs"]] if isinstance(cfg["inputs"], str) else list(cfg["inputs"])
    return {**{k: cfg[k] for k in FIELDS if k != "inputs"}, "inputs": inputs}
