"""The study's stages, in order: grid -> fitted -> predict -> validate (grade, report). `run` runs (or
continues) them; each stage is an ordinary sweep and an analysis of its run directories, so a rerun skips what
is done. The analysis is imported where a stage needs it (it is called only through its public functions)."""

import datetime
import math
import os
import subprocess
import time

from pql_scaling import config as config_lib
from pql_scaling.experiments import sweep
from pql_scaling.experiments.study.spec import StudyError, _dir, _sweep_dict
from pql_scaling.rundir.disk import log, write_json_atomic


def _analysis_cfg(spec, inputs, out, **kw):
    a = spec.analysis
    cfg = {
        "inputs": [inputs],
        "max_returns": {spec.task: spec.returns.max},
        "min_returns": {spec.task: spec.returns.min},
        "thresholds": list(a.thresholds) if a.thresholds else None,
        "sweep_threshold": a.sweep_threshold,
        "bootstrap": a.bootstrap,
        "returns": a.returns,
        "budget": a.budget,
        "delta": a.delta,
        "compute": a.compute,
        "model_size": a.model_size,
        "holdout_top_k": a.holdout_top_k,
        "out": out,
    }
    cfg.update(kw)
    return cfg


def code_version():
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if rev.returncode == 0:
            return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown (not a git checkout)"


STAGES = ("grid", "fitted", "predict", "validate")


def _say(spec, stage, what):
    """A stage's progress line: printed for the user, not a log WARNING (nothing is wrong)."""
    n = STAGES.index(stage) + 1
    print("study %s: stage %d/%d %s: %s" % (spec.name, n, len(STAGES), stage, what), flush=True)


def _launch(spec, d, timings, stage):
    t0 = time.monotonic()
    s = sweep.load_spec(d)
    rows = sweep.launch(s, live="auto")  # runs done / to do and the time left, as the sweep shows them
    bad = [r for r in rows if r["state"] != "completed"]
    timings[stage] = timings.get(stage, 0.0) + time.monotonic() - t0
    if bad:
        first = "; ".join("%s: %s %s" % (r["name"], r["state"], r["reason"]) for r in bad[:3])
        raise StudyError(
            "stage %s: %d run(s) did not complete (%s); fix the cause and rerun `pql-scale "
            "study` to continue" % (stage, len(bad), first)
        )
    return rows


def _analyze(cfg, timings, stage):
    from pql_scaling.analysis import pipeline, report

    t0 = time.monotonic()
    res = pipeline.run_analysis(cfg)
    report.write_outputs(res, cfg["out"], plots=True)
    timings[stage] = timings.get(stage, 0.0) + time.monotonic() - t0
    return res


def _steps(spec, d):
    cfg = config_lib.load(
        ["task=%s" % spec.task] + ["%s=%s" % (k, sweep.arg_string(v)) for k, v in spec.base.items()]
    )
    n = cfg.num_envs
    return int(math.ceil(d / n) * n)


# ---------------------------------------------------------------------------------------------- the stages
def _grid(spec, timings):
    """Sweep UTD x batch size x lr, analyze: the (B, lr) rules (grid_analysis/fits.json)."""
    _say(spec, "grid", "UTD x batch size x learning rate runs in %s" % _dir(spec, "grid"))
    _launch(spec, _sweep_dict(spec, "grid"), timings, "grid_runs")
    _say(spec, "grid", "fitting the rules B*(sigma), lr*(sigma) -> %s" % _dir(spec, "grid_analysis"))
    return _analyze(
        _analysis_cfg(spec, _dir(spec, "grid"), _dir(spec, "grid_analysis")), timings, "grid_analysis"
    )


def _fitted(spec, rules, timings):
    """Sweep the fitted UTDs with the rules' (B, lr), analyze: the laws."""
    _say(spec, "fitted", "runs at the rules' (B, lr) in %s" % _dir(spec, "fitted"))
    _launch(spec, _sweep_dict(spec, "fitted", rules=rules), timings, "fitted_runs")
    _say(spec, "fitted", "fitting the laws -> %s" % _dir(spec, "fitted_analysis"))
    cfg = _analysis_cfg(spec, _dir(spec, "fitted"), _dir(spec, "fitted_analysis"), hparam_fits=rules)
    return _analyze(cfg, timings, "fitted_analysis")


def _validation_steps(spec, c):
    """What a validation run needs: enough steps to cross the top threshold (and spend F)."""
    top = c["thresholds"][-1] if c["thresholds"] else {"D": 0, "D_ci95": [None, None]}
    hi = top["D_ci95"][1]
    if hi is not None and top["D"] is not None:
        hi = min(hi, spec.validate.max_steps_over_prediction * top["D"])
    need = max(v for v in (top["D"], hi, c.get("env_steps_for_F")) if v is not None and math.isfinite(v))
    return _steps(spec, spec.validate.steps_margin * need)


def _predict(spec, fit_res, rules):
    """prediction.json: written once, before any validation run starts; read back when it exists."""
    from pql_scaling.analysis import predict as P
    from pql_scaling.analysis.report import to_json

    pred_path = _dir(spec, "prediction.json")
    prediction = sweep.read_json(pred_path)
    if prediction is not None:
        _say(spec, "predict", "read back %s (made before any validation run)" % pred_path)
        return prediction
    _say(spec, "predict", "writing %s" % pred_path)
    if os.path.isdir(_dir(spec, "validate")) and os.listdir(_dir(spec, "validate")):
        raise StudyError(
            "%s has validation runs but no prediction.json: the prediction cannot be made after "
            "its runs exist; delete that folder to predict and validate again" % _dir(spec, "validate")
        )
    p = P.predict(fit_res, list(spec.validate.utd), budget_factor=spec.validate.budget_factor)
    lo, hi, x = p["fitted_utd_range"][0], p["fitted_utd_range"][1], spec.validate.max_extrapolation
    if p.get("budget") and not lo / x <= p["budget"]["sigma"] <= hi * x:  # recorded, but not run
        why = (
            "sigma*(F) = %.4g is more than %gx outside the fitted range [%g, %g] "
            "(validate.max_extrapolation)" % (p["budget"]["sigma"], x, lo, hi)
        )
        p["budget_not_run"] = dict(p.pop("budget"), reason=why)
    for c in p["held_out"] + ([p["budget"]] if p.get("budget") else []):
        c["max_env_steps"] = _validation_steps(spec, c)
    prediction = {
        "study": spec.name,
        "task": spec.task,
        "code_version": code_version(),
        "time": _now(),
        "fits": os.path.join(_dir(spec, "fitted_analysis"), "fits.json"),
        "rules": rules,
        **p,
    }
    write_json_atomic(pred_path, to_json(prediction))
    return sweep.read_json(pred_path)


def _validate(spec, prediction, rules, timings):
    """Sweep the held-out configurations, measure them against the prediction: grade.json and grade.png."""
    from pql_scaling.analysis import predict as P
    from pql_scaling.analysis.report import to_json

    configs = prediction["held_out"] + ([prediction["budget"]] if prediction.get("budget") else [])
    sig = [float("%.6g" % c["sigma"]) for c in configs]
    zip_ = {"utd": sig, "max_env_steps": [int(c["max_env_steps"]) for c in configs]}
    _say(
        spec,
        "validate",
        "held-out runs at UTD %s in %s" % (", ".join("%g" % x for x in sig), _dir(spec, "validate")),
    )
    _launch(spec, _sweep_dict(spec, "validate", rules=rules, zip_=zip_), timings, "validate_runs")
    t0 = time.monotonic()
    at = {}
    b = prediction.get("budget")
    if b:
        at[float("%.6g" % b["sigma"])] = b["env_steps_for_F"]
    measured, returns_note, skipped = P.measure_inputs(
        [_dir(spec, "validate")],
        prediction["thresholds"],
        {spec.task: spec.returns.max},
        {spec.task: spec.returns.min},
        spec.analysis.returns,
        spec.analysis.bootstrap,
        at,
    )
    for c in configs:  # the runs' sigma is the rounded one the sweep launched
        c["sigma"] = float("%.6g" % c["sigma"])
    g = P.grade(prediction, measured, spec.analysis.grade_top_k, spec.analysis.target_rel_error)
    g.update(
        study=spec.name,
        code_version=code_version(),
        time=_now(),
        returns=returns_note,
        prediction_code_version=prediction["code_version"],
        prediction_time=prediction["time"],
    )
    write_json_atomic(_dir(spec, "grade.json"), to_json(g))
    from pql_scaling.analysis import plots

    plots.grade(g, _dir(spec, "grade.png"))
    timings["grade"] = timings.get("grade", 0.0) + time.monotonic() - t0
    return g


def run(spec, stop_after=None):
    """Run (or continue) the study; returns the grade dict (None if stopped early with stop_after)."""
    from pql_scaling.analysis import predict, report  # noqa: F401 - the analysis stack, before any run

    os.makedirs(spec.out, exist_ok=True)
    state_path = _dir(spec, "study.json")
    state = sweep.read_json(state_path) or {"started": _now(), "timings_s": {}}
    timings = state["timings_s"]
    t_start = time.monotonic()

    def save(stage):
        state["stage"] = stage
        state["updated"] = _now()
        write_json_atomic(state_path, state)

    grid_res = _grid(spec, timings)
    save("grid")
    if stop_after == "grid":
        return None
    rules = os.path.join(_dir(spec, "grid_analysis"), "fits.json")
    fit_res = _fitted(spec, rules, timings)
    save("fitted")
    if stop_after == "fitted":
        return None
    prediction = _predict(spec, fit_res, rules)
    save("predicted")
    if stop_after == "predict":
        return None
    g = _validate(spec, prediction, rules, timings)
    state["wall_s_this_invocation"] = time.monotonic() - t_start
    rec = _recommend(spec, _dir(spec, "fitted_analysis"), prediction)
    from pql_scaling.analysis.study_report import study_report

    study_report(
        _dir(spec, "report.md"),
        spec.name,
        spec.task,
        spec.returns.min,
        spec.returns.max,
        grid_res.fits,
        fit_res.fits,
        prediction,
        g,
        rec,
        timings,
    )
    save("graded")
    if spec.wandb.mode != "disabled":
        _wandb(spec, fit_res.fits, g, prediction)
    return g


def _recommend(spec, fit_out, prediction):
    from pql_scaling.analysis.recommend import recommend, recommend_line

    fits = sweep.read_json(os.path.join(fit_out, "fits.json"))
    # the held-out budget, run or not (a sigma* far outside the fitted range is recorded but not run)
    held_out = prediction.get("budget") or prediction.get("budget_not_run") or {}
    budget = spec.recommend.budget or held_out.get("F")
    if not budget or not (fits or {}).get("budget", {}).get("sigma_star"):
        return None
    n = spec.recommend.num_envs or _steps(spec, 1)
    r = recommend(fits, budget, spec.task, n)
    line = recommend_line(r, n, task=spec.task, width=False)  # the study's runs are at one width
    return {"budget": budget, "sigma": r["sigma"], "line": "pql-scale train " + line}


# ---------------------------------------------------------------------------------------------- outputs
def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _wandb(spec, fit_res, g, pred):
    """The study's fits, tables and plots to a W&B run of job type `analysis` in the runs' group."""
    try:
        import wandb

        config = {"study": spec.name, "task": spec.task, "code_version": pred["code_version"]}
        run = wandb.init(
            project=spec.wandb.project,
            entity=spec.wandb.entity,
            group=spec.name,
            job_type="analysis",
            name="%s-analysis" % spec.name,
            mode=spec.wandb.mode,
            dir=spec.out,
            reinit=True,
            config=config,
        )
        cols = ["kind", "sigma", "J", "D_pred", "D_pred_lo", "D_pred_hi", "D_meas", "rel_error", "inside"]
        run.log(
            {
                "grade": wandb.Table(columns=cols, data=[[r[c] for c in cols] for r in g["rows"]]),
                "data_efficiency": wandb.Table(
                    columns=["J", "D_min", "alpha", "beta"],
                    data=[
                        [r["J"], r.get("D_min"), r.get("alpha"), r.get("beta")]
                        for r in fit_res["data_efficiency"]
                    ],
                ),
            }
        )
        for img in (
            "grade.png",
            "fitted_analysis/data_efficiency.png",
            "fitted_analysis/pareto.png",
            "fitted_analysis/budget.png",
            "grid_analysis/hparams.png",
        ):
            if os.path.exists(_dir(spec, img)):
                run.log({img.replace("/", "_").replace(".png", ""): wandb.Image(_dir(spec, img))})
        s = g["summary"]
        run.summary.update(
            {"grade_median_abs_rel_error": s["median_abs_rel_error"], "grade_coverage": s["coverage"]}
        )
        b = fit_res.get("budget", {}).get("sigma_star")
        if b:
            run.summary.update({"sigma_star_coef": b["coef"], "sigma_star_exponent": b["exponent"]})
        run.finish()
    except Exception as e:  # noqa: BLE001 - the local files are the record; W&B is a mirror
        log.warning("W&B analysis run failed (%s: %s); the study's files are complete", type(e).__name__, e)
