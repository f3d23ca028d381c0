"""The analysis configuration: its keys and defaults (DEFAULTS), and the checks and coercions that turn a
user's dict (YAML or CLI) into the one `run_analysis` works on; every wrong value is named with its key.

Two modes share the keys: R1's (run_analysis's default: rules, D_J(sigma), compute, budget) and R5's
(per-task absolute thresholds, R5's released formats, or its threshold rule / pooled variant: `is_r5`).
"""

from pql_scaling.specs import did_you_mean  # the one "did you mean" of every spec (stdlib + yaml)

from .errors import AnalysisInputError

DEFAULTS = {
    "inputs": [],
    "format": "auto",
    "max_returns": {},
    "thresholds": None,
    "sweep_threshold": 800.0,
    "model_size": None,
    "delta": 4e9,
    "holdout_top_k": 2,
    "bootstrap": 100,
    "hparam_fits": None,
    "out": "analysis_out",
    "seed": 0,
    "compute": "r1",
    "no_crossing": "first",
    "plots": True,
    # R5 (docs/science.md 3): per-task absolute thresholds ({task: J} or {task: [J, ...]}), R5's threshold rule
    "threshold_rule": None,
    "threshold_base": {},
    "tasks": None,
    "exclude": {},
    "reset_every_grad_steps": None,
    "pool": None,
    "r5_seed": 42,
    "min_returns": {},
    "returns": "auto",
    "budget": "flops",
    # bring your own logs (config.TABLE_DEFAULTS, config.TENSORBOARD_DEFAULTS): how columns / tags map on runs
    "table": None,
    "tensorboard": None,
}
FORMATS = ("auto", "runs", "qscaled", "wandb", "table", "tensorboard", "model_scaling", "bro_ablations")
R5_FORMATS = ("model_scaling", "bro_ablations")
EXCLUDE_AXES = ("width", "size", "sigma", "batch_size")
RETURNS = ("auto", "eval", "train")  # auto: the deterministic-policy eval return when every run logs it
BUDGETS = ("flops", "wall_clock")


def number(cfg, key, typ=float):
    """YAML 1.1 reads `1.5e5` (no dot, no sign) as a string: coerce numbers, name the key if impossible."""
    try:
        return typ(float(cfg[key])) if typ is int else typ(cfg[key])
    except (TypeError, ValueError):
        raise AnalysisInputError(f"config key `{key}` must be a number, got {cfg[key]!r}") from None


def with_defaults(cfg):
    """The user's keys (each known) over DEFAULTS, with the shapes every mode relies on checked."""
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        hint = "".join(did_you_mean(k, DEFAULTS) for k in unknown[:1])
        raise AnalysisInputError(f"unknown config key(s) {unknown}{hint}; known: {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **{k: v for k, v in dict(cfg).items() if v is not None}}
    check_types(cfg)
    return cfg


def check_types(cfg):
    """The shapes the analysis relies on, each wrong one named (YAML lets any key hold anything)."""
    if isinstance(cfg["inputs"], str):
        cfg["inputs"] = [cfg["inputs"]]
    if not isinstance(cfg["inputs"], (list, tuple)) or not all(isinstance(x, str) for x in cfg["inputs"]):
        raise AnalysisInputError(
            f"config key `inputs` must be a list of paths or wandb://entity/project, got {cfg['inputs']!r}"
        )
    for key, options in (
        ("format", FORMATS),
        ("compute", ("r1", "measured")),
        ("no_crossing", ("first", "skip")),
    ):
        if cfg[key] not in options:
            raise AnalysisInputError(f"config key `{key}` must be one of {list(options)}, got {cfg[key]!r}")
    for key in ("out", "hparam_fits"):
        if cfg[key] is not None and not isinstance(cfg[key], str):
            raise AnalysisInputError(f"config key `{key}` must be a path, got {cfg[key]!r}")
    if not isinstance(cfg["max_returns"], dict):
        raise AnalysisInputError(
            f"config key `max_returns` must map task -> R_max, got {cfg['max_returns']!r}"
        )
    if cfg["thresholds"] is not None and not isinstance(cfg["thresholds"], (list, tuple, dict)):
        raise AnalysisInputError(
            "config key `thresholds` must be a list of numbers or map task -> J "
            f"(or [J, ...]), got {cfg['thresholds']!r}"
        )
    if not isinstance(cfg["plots"], bool):
        raise AnalysisInputError(f"config key `plots` must be true or false, got {cfg['plots']!r}")
    check_log_specs(cfg)


# ------------------------------------------------------------------------------- bring your own logs
# `table:` (format: table): which columns of a tidy CSV / Parquet identify a run, its task, seed, step, return
TABLE_DEFAULTS = {
    "run": None,  # column or list of columns whose values together identify one run (required)
    "task": None,  # column (required)
    "seed": None,  # column; without it the runs of one configuration are numbered 0, 1, ...
    "step": None,  # column of env steps; or
    "steps_per_row": None,  # env steps between a run's consecutive rows
    "value": None,  # column of the return (required)
    "where": {},  # {column: value or [values]}: keep only these rows (e.g. {metric: avg_return})
    "params": {},  # {name: column} or {name: {column: c, map: {value: number}}} or {name: {value: v}}
    "grad_steps": None,  # optional columns: critic updates (default sigma * env steps), FLOPs, wall time
    "flops": None,
    "wall_time_s": None,
}
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
# `tensorboard:` (format: tensorboard): which tags hold the return and the env step, where parameters come from
TENSORBOARD_DEFAULTS = {
    "scalar": None,  # the return's scalar tag (required), e.g. charts/episodic_return
    "step": None,  # a scalar tag holding env steps, joined on the event step; default: the event step
    "pattern": None,  # parameters from the run's path, e.g. utd_{utd}/bs_{batch_size}/seed_{seed}
    "task": None,  # the task when neither the hparams nor the pattern name it
    "params": {},  # constants for every run, e.g. {model_size: 1.5e5}
}


def _spec(cfg, key, defaults):
    """The `key:` mapping over its defaults, unknown keys named with a did-you-mean."""
    spec = cfg[key]
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
    t = _spec(cfg, "table", TABLE_DEFAULTS)
    t["run"] = [t["run"]] if isinstance(t["run"], str) else t["run"]
    if not t["run"] or not isinstance(t["run"], list) or not all(isinstance(c, str) for c in t["run"]):
        raise AnalysisInputError(
            "`table.run` must name the column(s) that identify a run, e.g. [exp_name, seed]"
        )
    for k in ("task", "value"):
        if not isinstance(t[k], str):
            raise AnalysisInputError(f"`table.{k}` must name a column, got {t[k]!r}")
    if (t["step"] is None) == (t["steps_per_row"] is None):
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


def check_tensorboard(cfg):
    """`tensorboard:` checked: the return's tag named, the pattern's fields known parameters."""
    t = _spec(cfg, "tensorboard", TENSORBOARD_DEFAULTS)
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
                keys = ", ".join(TABLE_DEFAULTS if key == "table" else TENSORBOARD_DEFAULTS)
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
    for delta = a * R from the runs' rates (analysis/wallclock.py); until then cfg holds the default."""
    delta_measured = cfg["delta"] == "measured"
    if delta_measured:
        cfg["delta"] = DEFAULTS["delta"]
    for k in ("sweep_threshold", "delta"):
        cfg[k] = number(cfg, k)
    for k, options in (("returns", RETURNS), ("budget", BUDGETS)):
        if cfg[k] not in options:
            raise AnalysisInputError(f"config key `{k}` must be one of {list(options)}, got {cfg[k]!r}")
    for k in ("bootstrap", "holdout_top_k", "seed"):
        cfg[k] = number(cfg, k, int)
    if cfg["model_size"] is not None:
        cfg["model_size"] = number(cfg, "model_size")
    if cfg["thresholds"] is not None:
        cfg["thresholds"] = [number({"thresholds": t}, "thresholds") for t in cfg["thresholds"]]
    for key in ("max_returns", "min_returns"):
        cfg[key] = {t: number({f"{key}.{t}": v}, f"{key}.{t}") for t, v in (cfg[key] or {}).items()}
    return cfg, delta_measured


def r5_config(cfg):
    """R5 mode's settings checked and coerced (thresholds become {task: [J, ...]})."""
    if cfg["pool"] not in (None, "r5"):
        raise AnalysisInputError(f"pool={cfg['pool']!r}: the only pooled variant is `pool: r5`")
    if cfg["threshold_rule"] not in (None, "r5"):
        raise AnalysisInputError(
            f"threshold_rule={cfg['threshold_rule']!r}: the only rule is `threshold_rule: r5`"
        )
    ex = dict(cfg["exclude"] or {})
    bad = sorted(set(ex) - set(EXCLUDE_AXES))
    if bad:
        raise AnalysisInputError(
            f"exclude: unknown axis {bad}; axes: {list(EXCLUDE_AXES)} (e.g. {{width: [2048]}})"
        )
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
    cfg["threshold_base"] = {
        t: number({f"threshold_base.{t}": v}, f"threshold_base.{t}")
        for t, v in (cfg["threshold_base"] or {}).items()
    }
    if (cfg["threshold_rule"] == "r5" or cfg["pool"] == "r5") and not cfg["threshold_base"]:
        raise AnalysisInputError(
            "threshold_rule: r5 (and pool: r5) need `threshold_base: {task: base}` "
            "(R5's DMC bases: docs/science.md 3)"
        )
    for k in ("bootstrap", "r5_seed"):
        cfg[k] = number(cfg, k, int)
    cfg["delta"] = number(cfg, "delta")
    if cfg["reset_every_grad_steps"] is not None:
        cfg["reset_every_grad_steps"] = number(cfg, "reset_every_grad_steps")
    return cfg


def config_record(cfg):
    """The config as fits.json records it: every key of DEFAULTS, `inputs` last as a list."""
    inputs = [cfg["inputs"]] if isinstance(cfg["inputs"], str) else list(cfg["inputs"])
    return {k: cfg[k] for k in DEFAULTS if k != "inputs"} | {"inputs": inputs}
