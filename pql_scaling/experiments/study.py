"""`pql-scale study SPEC`: R1's protocol as one resumable command (science.md 2), graded on runs it never fitted.

    grid      sweep UTD x batch size x lr (x seeds), short budget -> analyze -> B*(sigma), lr*(sigma) rules
    fitted    sweep UTDs with the rules' (B, lr)                  -> analyze -> D_J(sigma), C_J, frontier, sigma*(F)
    predict   prediction.json for held-out configurations: UTDs outside the fitted range and the budget-optimal
              UTD for a budget above every fitted one (written once, before any validation run starts, with the
              code version and time; never recomputed once it exists)
    validate  sweep those configurations -> grade.json (predicted vs measured per threshold), report.md

Every stage is an ordinary sweep (pql_scaling/sweep.py) writing ordinary run directories under the study's
`out`, so a rerun continues where it stopped: completed runs are skipped, stopped ones resumed, analyses
recomputed from the run directories. Analysis is called only through its public functions; it never imports
this module.
"""
import datetime
import math
import os
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import yaml
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pql_scaling import config as config_lib
from pql_scaling.experiments import sweep
from pql_scaling.rundir.disk import log, write_json_atomic


# --------------------------------------------------------------------------------------------------- the spec
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
    seeds: Any = 2
    base: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ValidateStage:
    utd: List[float] = MISSING  # held-out UTDs; at least one outside the fitted range
    budget_factor: float = 4.0  # the larger budget = this x the largest fitted budget optimum F*
    seeds: Any = 2
    steps_margin: float = 1.5  # max_env_steps = margin x the larger of the predicted upper bound and F's steps
    max_steps_over_prediction: float = 4.0  # ... but the upper bound counts at most this x the point prediction
    # (a noisy fit's interval can reach 1e13 env steps; a run that needs more than 4x the prediction is a miss)
    max_extrapolation: float = 4.0  # the budget run is skipped (noted) when sigma*(F) lies this factor outside the fitted range
    base: Dict[str, Any] = field(default_factory=dict)


@dataclass
class AnalysisSpec:
    thresholds: Optional[List[float]] = None  # default R1's 300 ... 800
    sweep_threshold: float = 800.0
    bootstrap: int = 100
    returns: str = "auto"  # auto | eval | train: which logged return the laws are fitted on
    budget: str = "flops"  # flops (F = C + delta D) | wall_clock (also: the time model from the logged rates)
    delta: Any = 4e9  # FLOPs-equivalent per transition, or "measured" (from the rates)
    compute: str = "measured"  # measured (our FLOP counts) | r1 (10 N B sigma D)
    model_size: Optional[float] = None  # default: run.json's critic_params
    holdout_top_k: int = 2
    grade_top_k: int = 2  # the summary grades the top-k thresholds
    target_rel_error: float = 0.15


@dataclass
class WandbSpec:
    mode: str = "disabled"  # online | offline | disabled; runs and the analysis run share the group `name`
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


class StudyError(config_lib.ConfigError):
    pass


def load_spec(path_or_dict, overrides=()):
    """A validated StudySpec from YAML or a dict plus `key=value` overrides; unknown keys and bad values fail
    here naming the key, before anything runs; every stage's sweep is expanded (so every run config checked)."""
    where, raw = config_lib.read_spec(path_or_dict, "study", StudyError, "name, task, grid, fitted, validate, ...")
    for arg in overrides:
        if "=" not in arg:
            raise StudyError("expected key=value, got %r (e.g. validate.seeds=3 launcher.local.runs_per_device=2)" % arg)
        k, v = arg.split("=", 1)
        config_lib.set_dotted(raw, k, yaml.safe_load(v) if v != "" else None, arg, StudyError)
    for section in ("base",):
        if isinstance(raw.get(section), dict):
            raw[section] = dict(config_lib._flatten(raw[section]))
    try:
        spec = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(StudySpec), raw))
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        valid = sorted(config_lib.spec_keys(StudySpec))
        import difflib

        close = difflib.get_close_matches(str(key), valid, n=3, cutoff=0.5)
        raise StudyError("study spec %s: %s at %s%s" % (where, str(e).splitlines()[0], key,
                                                         ("; did you mean: " + ", ".join(close)) if close else ""))
    _validate(spec, where)
    return spec


def _validate(spec, where):
    if not spec.name:
        raise StudyError("name is empty (in %s)" % where)
    spec.out = os.path.abspath(spec.out or os.path.join("runs", spec.name))
    if not spec.returns.max > spec.returns.min:
        raise StudyError("returns.max=%g must be above returns.min=%g (the returns counted as 1000 and 0)"
                         % (spec.returns.max, spec.returns.min))
    a = spec.analysis
    for key, value, options in (("analysis.returns", a.returns, ("auto", "eval", "train")),
                                ("analysis.budget", a.budget, ("flops", "wall_clock")),
                                ("analysis.compute", a.compute, ("measured", "r1")),
                                ("wandb.mode", spec.wandb.mode, ("online", "offline", "disabled"))):
        if value not in options:
            raise StudyError("%s=%r is not one of %s" % (key, value, ", ".join(options)))
    if not (a.delta == "measured" or isinstance(a.delta, (int, float)) and a.delta >= 0):
        raise StudyError("analysis.delta=%r: give FLOPs per transition (>= 0) or \"measured\"" % (a.delta,))
    if len(set(spec.fitted.utd)) < 4:
        raise StudyError("fitted.utd=%s: D_J(sigma) = D_min + (beta/sigma)^alpha needs >= 4 distinct UTDs"
                         % list(spec.fitted.utd))
    for stage in ("grid", "fitted"):
        st = getattr(spec, stage)
        if st.max_env_steps and len(st.max_env_steps) != len(st.utd):
            raise StudyError("%s.max_env_steps has %d values for %d UTDs: give one per UTD (or none)"
                             % (stage, len(st.max_env_steps), len(st.utd)))
    if len(set(spec.grid.utd)) < 2:
        raise StudyError("grid.utd=%s: the hyperparameter rules need >= 2 UTDs" % list(spec.grid.utd))
    lo, hi = min(spec.fitted.utd), max(spec.fitted.utd)
    if not any(not lo <= s <= hi for s in spec.validate.utd):
        raise StudyError("validate.utd=%s: at least one held-out UTD must lie outside the fitted range [%g, %g]"
                         % (list(spec.validate.utd), lo, hi))
    if spec.validate.max_steps_over_prediction < 1 or spec.validate.steps_margin < 1:
        raise StudyError("validate.steps_margin=%g and validate.max_steps_over_prediction=%g must be >= 1 (a run "
                         "shorter than its prediction cannot cross the threshold)"
                         % (spec.validate.steps_margin, spec.validate.max_steps_over_prediction))
    if spec.validate.budget_factor <= 1:
        raise StudyError("validate.budget_factor=%g must be > 1 (a budget above every fitted one)" % spec.validate.budget_factor)
    for k in spec.base:
        if k in ("task", "algo.batch_size", "algo.critic_lr", "algo.actor_lr", "algo.critic_updates_per_step"):
            raise StudyError("base.%s: the study sets %s itself (task / grid / rules)" % (k, k))
    for stage in ("grid", "fitted", "validate"):  # every run of every stage is a valid training config
        try:
            z = {"utd": list(spec.validate.utd), "max_env_steps": [1] * len(spec.validate.utd)}  # steps: predicted later
            sweep.expand(sweep.load_spec(_sweep_dict(spec, stage, rules=None if stage == "grid" else "__skip__", zip_=z)))
        except config_lib.ConfigError as e:
            raise StudyError("stage %s of study %s: %s" % (stage, where, e))


# --------------------------------------------------------------------------------------------------- stages
def _dir(spec, *parts):
    return os.path.join(spec.out, *parts)


def _sweep_dict(spec, stage, rules=None, zip_=None):
    """The sweep spec of one stage. rules="__skip__" (validation only): expand without rules, nothing runs."""
    st = getattr(spec, stage)
    base = dict(spec.base, task=spec.task)
    base.update(st.base)
    base.setdefault("wandb.group", spec.name)  # the analysis run joins this group; base's own values win
    base.setdefault("wandb.mode", spec.wandb.mode)
    base.setdefault("wandb.project", spec.wandb.project)
    if spec.wandb.entity:
        base.setdefault("wandb.entity", spec.wandb.entity)
    d = {"name": "%s-%s" % (spec.name, stage), "out": _dir(spec, stage), "seeds": st.seeds, "retry": spec.retry,
         "launcher": OmegaConf.to_container(OmegaConf.structured(spec.launcher))}
    if stage in ("grid", "fitted"):
        d["grid"] = {}
        if st.max_env_steps:  # each UTD with its own data budget
            d["zip"] = {"utd": list(st.utd), "max_env_steps": list(st.max_env_steps)}
            base.pop("max_env_steps", None)
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


def _analysis_cfg(spec, inputs, out, **kw):
    a = spec.analysis
    cfg = {"inputs": [inputs], "max_returns": {spec.task: spec.returns.max}, "min_returns": {spec.task: spec.returns.min},
           "thresholds": list(a.thresholds) if a.thresholds else None, "sweep_threshold": a.sweep_threshold,
           "bootstrap": a.bootstrap, "returns": a.returns, "budget": a.budget, "delta": a.delta, "compute": a.compute,
           "model_size": a.model_size, "holdout_top_k": a.holdout_top_k, "out": out}
    cfg.update(kw)
    return cfg


def code_version():
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True,
                               text=True, timeout=10)
        if rev.returncode == 0:
            return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown (not a git checkout)"


def _launch(spec, d, timings, stage):
    t0 = time.monotonic()
    s = sweep.load_spec(d)
    rows = sweep.launch(s, live="off")
    bad = [r for r in rows if r["state"] != "completed"]
    timings[stage] = timings.get(stage, 0.0) + time.monotonic() - t0
    if bad:
        raise StudyError("stage %s: %d run(s) did not complete (%s); fix the cause and rerun `pql-scale study` to "
                         "continue" % (stage, len(bad), "; ".join("%s: %s %s" % (r["name"], r["state"], r["reason"])
                                                                   for r in bad[:3])))
    return rows


def _analyze(cfg, timings, stage):
    from pql_scaling.analysis import pipeline, report

    t0 = time.monotonic()
    res = pipeline.run_analysis(cfg)
    report.write_outputs(res, cfg["out"], plots=True)
    timings[stage] = timings.get(stage, 0.0) + time.monotonic() - t0
    return res


def _steps(spec, d):
    cfg = config_lib.load(["task=%s" % spec.task] + ["%s=%s" % (k, sweep._arg(v)) for k, v in spec.base.items()])
    n = cfg.num_envs
    return int(math.ceil(d / n) * n)


def run(spec, stop_after=None):
    """Run (or continue) the study; returns the grade dict (None if stopped early with stop_after)."""
    from pql_scaling.analysis import predict as P
    from pql_scaling.analysis import report
    from pql_scaling.analysis.report import to_json

    os.makedirs(spec.out, exist_ok=True)
    state_path = _dir(spec, "study.json")
    state = sweep._read_json(state_path) or {"started": _now(), "timings_s": {}}
    timings = state["timings_s"]
    t_start = time.monotonic()

    def save(stage):
        state["stage"] = stage
        state["updated"] = _now()
        write_json_atomic(state_path, state)

    log.warning("study %s: stage grid (%s)", spec.name, _dir(spec, "grid"))
    _launch(spec, _sweep_dict(spec, "grid"), timings, "grid_runs")
    grid_out = _dir(spec, "grid_analysis")
    grid_res = _analyze(_analysis_cfg(spec, _dir(spec, "grid"), grid_out), timings, "grid_analysis")
    save("grid")
    if stop_after == "grid":
        return None
    rules = os.path.join(grid_out, "fits.json")

    log.warning("study %s: stage fitted", spec.name)
    _launch(spec, _sweep_dict(spec, "fitted", rules=rules), timings, "fitted_runs")
    fit_out = _dir(spec, "fitted_analysis")
    fit_res = _analyze(_analysis_cfg(spec, _dir(spec, "fitted"), fit_out, hparam_fits=rules), timings, "fitted_analysis")
    save("fitted")
    if stop_after == "fitted":
        return None

    pred_path = _dir(spec, "prediction.json")
    prediction = sweep._read_json(pred_path)
    if prediction is None:  # written once, before any validation run starts
        if os.path.isdir(_dir(spec, "validate")) and os.listdir(_dir(spec, "validate")):
            raise StudyError("%s has validation runs but no prediction.json: the prediction cannot be made after its "
                             "runs exist; delete that folder to predict and validate again" % _dir(spec, "validate"))
        p = P.predict(fit_res, list(spec.validate.utd), budget_factor=spec.validate.budget_factor)
        lo, hi, x = p["fitted_utd_range"][0], p["fitted_utd_range"][1], spec.validate.max_extrapolation
        if p.get("budget") and not lo / x <= p["budget"]["sigma"] <= hi * x:  # recorded, but not run
            why = "sigma*(F) = %.4g is more than %gx outside the fitted range [%g, %g] (validate.max_extrapolation)" % (
                p["budget"]["sigma"], x, lo, hi)
            p["budget_not_run"] = dict(p.pop("budget"), reason=why)
        configs = p["held_out"] + ([p["budget"]] if p.get("budget") else [])
        for c in configs:  # what each validation run needs: enough steps to cross the top threshold (and spend F)
            top = c["thresholds"][-1] if c["thresholds"] else {"D": 0, "D_ci95": [None, None]}
            hi = top["D_ci95"][1]
            if hi is not None and top["D"] is not None:
                hi = min(hi, spec.validate.max_steps_over_prediction * top["D"])
            need = max(v for v in (top["D"], hi, c.get("env_steps_for_F")) if v is not None and math.isfinite(v))
            c["max_env_steps"] = _steps(spec, spec.validate.steps_margin * need)
        prediction = {"study": spec.name, "task": spec.task, "code_version": code_version(), "time": _now(),
                      "fits": os.path.join(fit_out, "fits.json"), "rules": rules, **p}
        write_json_atomic(pred_path, to_json(prediction))
        prediction = sweep._read_json(pred_path)
    save("predicted")
    if stop_after == "predict":
        return None

    configs = prediction["held_out"] + ([prediction["budget"]] if prediction.get("budget") else [])
    sig = [float("%.6g" % c["sigma"]) for c in configs]
    zip_ = {"utd": sig, "max_env_steps": [int(c["max_env_steps"]) for c in configs]}
    log.warning("study %s: stage validate (UTDs %s)", spec.name, sig)
    _launch(spec, _sweep_dict(spec, "validate", rules=rules, zip_=zip_), timings, "validate_runs")
    t0 = time.monotonic()
    J = prediction["thresholds"]
    at = {}
    b = prediction.get("budget")
    if b:
        at[float("%.6g" % b["sigma"])] = b["env_steps_for_F"]
    measured, returns_note, skipped = P.measure_inputs(
        [_dir(spec, "validate")], J, {spec.task: spec.returns.max}, {spec.task: spec.returns.min},
        spec.analysis.returns, spec.analysis.bootstrap, at)
    for c in configs:  # the runs' sigma is the rounded one the sweep launched
        c["sigma"] = float("%.6g" % c["sigma"])
    g = P.grade(prediction, measured, spec.analysis.grade_top_k, spec.analysis.target_rel_error)
    g.update(study=spec.name, code_version=code_version(), time=_now(), returns=returns_note,
             prediction_code_version=prediction["code_version"], prediction_time=prediction["time"])
    write_json_atomic(_dir(spec, "grade.json"), to_json(g))
    from pql_scaling.analysis import plots

    plots.grade(g, _dir(spec, "grade.png"))
    timings["grade"] = timings.get("grade", 0.0) + time.monotonic() - t0
    state["wall_s_this_invocation"] = time.monotonic() - t_start
    rec = _recommend(spec, fit_out, prediction)
    report.study_report(_dir(spec, "report.md"), spec.name, spec.task, spec.returns.min, spec.returns.max,
                        grid_res.fits, fit_res.fits, prediction, g, rec, timings)
    save("graded")
    if spec.wandb.mode != "disabled":
        _wandb(spec, fit_res.fits, g, prediction)
    return g


def _recommend(spec, fit_out, prediction):
    from pql_scaling.analysis.recommend import recommend, recommend_line

    fits = sweep._read_json(os.path.join(fit_out, "fits.json"))
    # the held-out budget, run or not (a sigma* far outside the fitted range is recorded but not run)
    budget = spec.recommend.budget or (prediction.get("budget") or prediction.get("budget_not_run") or {}).get("F")
    if not budget or not (fits or {}).get("budget", {}).get("sigma_star"):
        return None
    n = spec.recommend.num_envs or _steps(spec, 1)
    r = recommend(fits, budget, spec.task, n)
    line = recommend_line(r, n, task=spec.task, width=False)  # the study's runs are at one width
    return {"budget": budget, "sigma": r["sigma"], "line": "pql-scale train " + line}


# --------------------------------------------------------------------------------------------------- outputs
def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _wandb(spec, fit_res, g, pred):
    """The study's fits, tables and plots to a W&B run of job type `analysis` in the runs' group."""
    try:
        import wandb

        run = wandb.init(project=spec.wandb.project, entity=spec.wandb.entity, group=spec.name, job_type="analysis",
                         name="%s-analysis" % spec.name, mode=spec.wandb.mode, dir=spec.out, reinit=True,
                         config={"study": spec.name, "task": spec.task, "code_version": pred["code_version"]})
        cols = ["kind", "sigma", "J", "D_pred", "D_pred_lo", "D_pred_hi", "D_meas", "rel_error", "inside"]
        run.log({"grade": wandb.Table(columns=cols, data=[[r[c] for c in cols] for r in g["rows"]]),
                 "data_efficiency": wandb.Table(columns=["J", "D_min", "alpha", "beta"], data=[
                     [r["J"], r.get("D_min"), r.get("alpha"), r.get("beta")] for r in fit_res["data_efficiency"]])})
        for img in ("grade.png", "fitted_analysis/data_efficiency.png", "fitted_analysis/pareto.png",
                    "fitted_analysis/budget.png", "grid_analysis/hparams.png"):
            if os.path.exists(_dir(spec, img)):
                run.log({img.replace("/", "_").replace(".png", ""): wandb.Image(_dir(spec, img))})
        s = g["summary"]
        run.summary.update({"grade_median_abs_rel_error": s["median_abs_rel_error"], "grade_coverage": s["coverage"]})
        b = fit_res.get("budget", {}).get("sigma_star")
        if b:
            run.summary.update({"sigma_star_coef": b["coef"], "sigma_star_exponent": b["exponent"]})
        run.finish()
    except Exception as e:  # noqa: BLE001 - the local files are the record; W&B is a mirror
        log.warning("W&B analysis run failed (%s: %s); the study's files are complete", type(e).__name__, e)
