"""The study's stages, in order: grid -> fitted -> predict -> validate (grade, report). `run` runs (or
continues) them; each stage is an ordinary sweep and an analysis of its run directories, so a rerun skips what
is done. The analysis is imported where a stage needs it (it is called only through its public functions)."""

import datetime
import math
import os
import subprocess
import time

from pql_scaling.experiments import sweep
from pql_scaling.experiments.study import costs
from pql_scaling.experiments.study.outputs import _recommend, _wandb
from pql_scaling.experiments.study.spec import StudyError, _dir, _sweep_dict, eval_every, stage_seeds
from pql_scaling.experiments.study.spec import base_cfg as _base_cfg
from pql_scaling.rundir.disk import write_json_atomic


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
        "crossing": a.crossing,
        "dj_fit": a.dj_fit,
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
    try:  # an interrupted stage's time counts too: the rerun finishes its runs, the costs model all of them
        rows = sweep.launch(s, live="auto")  # runs done / to do and the time left, as the sweep shows them
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.monotonic() - t0
    bad = [r for r in rows if r["state"] != "completed"]
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


# the shares of the study's time left that `seeds: auto` gives the fitted stage, then the validation stage
# (what is left after validation pays for the analyses and the report)
FITTED_SHARE, VALIDATE_SHARE = 0.55, 0.85


def _steps(spec, d):
    n = _base_cfg(spec).num_envs
    return int(math.ceil(d / n) * n)


# ---------------------------------------------------------------------------------------------- the stages
def _runs(spec, stage, state, rules="__skip__", zip_=None):
    """The Runs of a stage's sweep (their directories), as launched."""
    return sweep.expand(
        sweep.load_spec(_sweep_dict(spec, stage, rules=rules, zip_=zip_, seeds=state["seeds"]))
    )


def _grid(spec, timings, state):
    """Sweep UTD x batch size x lr, analyze: the (B, lr) rules (grid_analysis/fits.json)."""
    _say(spec, "grid", "UTD x batch size x learning rate runs in %s" % _dir(spec, "grid"))
    _launch(spec, _sweep_dict(spec, "grid", seeds=state["seeds"]), timings, "grid_runs")
    _say(spec, "grid", "fitting the rules B*(sigma), lr*(sigma) -> %s" % _dir(spec, "grid_analysis"))
    return _analyze(
        _analysis_cfg(spec, _dir(spec, "grid"), _dir(spec, "grid_analysis")), timings, "grid_analysis"
    )


def _fitted(spec, rules, timings, state):
    """Sweep the fitted UTDs with the rules' (B, lr) (seeds: auto chosen from the grid's measured costs),
    analyze: the laws."""
    if spec.fitted.seeds == "auto" and "fitted" not in state["seeds"]:
        steps = spec.fitted.max_env_steps or [_base_cfg(spec).max_env_steps] * len(spec.fitted.utd)
        state["seeds"]["fitted"], state["seed_choice"]["fitted"] = costs.choose_seeds(
            spec,
            list(zip(spec.fitted.utd, steps, eval_every(spec, "fitted"))),
            [(_runs(spec, "grid", state), timings.get("grid_runs", 0.0))],
            sum(timings.values()),
            share=FITTED_SHARE,
        )
        write_json_atomic(_dir(spec, "study.json"), state)  # a rerun keeps the choice
    n = len(stage_seeds(spec, "fitted", state["seeds"]))
    _say(spec, "fitted", "runs at the rules' (B, lr), %d seeds each, in %s" % (n, _dir(spec, "fitted")))
    _launch(spec, _sweep_dict(spec, "fitted", rules=rules, seeds=state["seeds"]), timings, "fitted_runs")
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


def _eval_every(spec, c):
    """eval.every_steps of a validation run: <= validate.eval_spacing x its smallest predicted D_J, so the
    crossing is resolved to that fraction (a multiple of num_envs, at least one actor step)."""
    n = _base_cfg(spec).num_envs
    ds = [t["D"] for t in c["thresholds"] if t.get("D") and math.isfinite(t["D"]) and t["D"] > 0]
    if not spec.validate.eval_spacing or not ds:
        return None
    return int(max(1, math.floor(spec.validate.eval_spacing * min(ds) / n)) * n)


def _predict(spec, fit_res, rules, state, timings):
    """prediction.json: written once, before any validation run starts; read back when it exists. With
    validate.seeds=auto the seed count is chosen here (the runs' lengths are known now), and the intervals
    are for a measurement with that many seeds."""
    from pql_scaling.analysis.report import to_json

    pred_path = _dir(spec, "prediction.json")
    prediction = sweep.read_json(pred_path)
    if prediction is not None:
        _say(spec, "predict", "read back %s (made before any validation run)" % pred_path)
        state["seeds"]["validate"] = prediction["n_seeds"]
        return prediction
    _say(spec, "predict", "writing %s" % pred_path)
    if os.path.isdir(_dir(spec, "validate")) and os.listdir(_dir(spec, "validate")):
        raise StudyError(
            "%s has validation runs but no prediction.json: the prediction cannot be made after "
            "its runs exist; delete that folder to predict and validate again" % _dir(spec, "validate")
        )
    n = len(stage_seeds(spec, "validate", state["seeds"]))
    p = _prediction(spec, fit_res, n)
    if spec.validate.seeds == "auto":
        measured = [
            (_runs(spec, "grid", state), timings.get("grid_runs", 0.0)),
            (_runs(spec, "fitted", state, rules=rules), timings.get("fitted_runs", 0.0)),
        ]
        base_every = _base_cfg(spec).eval.every_steps

        def cfgs(cs):
            return [(c["sigma"], c["max_env_steps"], c.get("eval_every_steps") or base_every) for c in cs]

        others = [c for c in _validation_configs(p) if c["kind"] != "utd"]  # the budget leg's runs
        n, state["seed_choice"]["validate"], dropped = costs.choose_dropping(
            spec, cfgs(p["held_out"]), cfgs(others), measured, sum(timings.values()), share=VALIDATE_SHARE
        )
        p = _prediction(spec, fit_res, n, dropped)
        for d in dropped:
            _say(spec, "predict", "held-out UTD %g not run: %s" % (d["sigma"], d["reason"]))
    state["seeds"]["validate"] = n
    write_json_atomic(_dir(spec, "study.json"), state)
    prediction = {
        "study": spec.name,
        "task": spec.task,
        "code_version": code_version(),
        "time": _now(),
        "fits": os.path.join(_dir(spec, "fitted_analysis"), "fits.json"),
        "rules": rules,
        "validation_seeds": stage_seeds(spec, "validate", state["seeds"]),
        **p,
    }
    write_json_atomic(pred_path, to_json(prediction))
    return sweep.read_json(pred_path)


def _prediction(spec, fit_res, n_seeds, dropped=()):
    """The predictions for n_seeds validation seeds: held-out UTDs, the budget leg (sigma*(F) and its
    neighbours sigma* x validate.budget_neighbours), each with its run length and evaluation spacing.
    `dropped` (costs.choose_dropping): held-out UTDs predicted but not run, kept with the reason."""
    from pql_scaling.analysis import predict as P

    v = spec.validate
    p = P.predict(fit_res, list(v.utd), budget_factor=v.budget_factor, n_seeds=n_seeds)
    gone = {d["sigma"]: d for d in dropped}
    if gone:
        p["held_out_not_run"] = [dict(c, **gone[c["sigma"]]) for c in p["held_out"] if c["sigma"] in gone]
        p["held_out"] = [c for c in p["held_out"] if c["sigma"] not in gone]
    lo, hi, x = p["fitted_utd_range"][0], p["fitted_utd_range"][1], v.max_extrapolation
    if p.get("budget") and not lo / x <= p["budget"]["sigma"] <= hi * x:  # recorded, but not run
        why = (
            "sigma*(F) = %.4g is more than %gx outside the fitted range [%g, %g] "
            "(validate.max_extrapolation)" % (p["budget"]["sigma"], x, lo, hi)
        )
        p["budget_not_run"] = dict(p.pop("budget"), reason=why)
    if p.get("budget"):
        b = p["budget"]
        p["budget_checks"] = [
            dict(P.budget_point(fit_res, b["F"], b["sigma"] * f, n_seeds, kind="budget_check"), F=b["F"])
            for f in v.budget_neighbours
        ]
    for c in _validation_configs(p):
        c["max_env_steps"] = _validation_steps(spec, c)
        c["eval_every_steps"] = _eval_every(spec, c)
    return p


def _validation_configs(p):
    return p["held_out"] + ([p["budget"]] if p.get("budget") else []) + p.get("budget_checks", [])


def _validate(spec, prediction, rules, timings, state):
    """Sweep the held-out configurations, measure them against the prediction: grade.json and grade.png."""
    from pql_scaling.analysis import predict as P
    from pql_scaling.analysis.report import to_json

    configs = _validation_configs(prediction)
    for c in configs:  # the runs' sigma is the rounded one the sweep launched
        c["sigma"] = float("%.6g" % c["sigma"])
    runs = {}  # one run per UTD: the longest any of its configurations needs, the finest evaluation
    for c in configs:
        r = runs.setdefault(c["sigma"], {"steps": 0, "every": None})
        r["steps"] = max(r["steps"], int(c["max_env_steps"]))
        if c.get("eval_every_steps"):
            r["every"] = min(r["every"] or c["eval_every_steps"], c["eval_every_steps"])
    sig = sorted(runs)
    zip_ = {"utd": sig, "max_env_steps": [runs[x]["steps"] for x in sig]}
    if all(runs[x]["every"] for x in sig):  # evaluations happen at log points: log as often
        n = _base_cfg(spec).num_envs
        zip_["eval.every_steps"] = [runs[x]["every"] for x in sig]
        zip_["log.every_steps"] = [max(1, runs[x]["every"] // n) for x in sig]
    _say(
        spec,
        "validate",
        "held-out runs at UTD %s, seeds %s, in %s"
        % (
            ", ".join("%g" % x for x in sig),
            _seed_range(prediction["validation_seeds"]),
            _dir(spec, "validate"),
        ),
    )
    d = _sweep_dict(spec, "validate", rules=rules, zip_=zip_, seeds=state["seeds"])
    _launch(spec, d, timings, "validate_runs")
    t0 = time.monotonic()
    at = {c["sigma"]: c["env_steps_for_F"] for c in configs if c["kind"] in ("budget", "budget_check")}
    measured, returns_note, skipped = P.measure_inputs(
        [_dir(spec, "validate")],
        prediction["thresholds"],
        {spec.task: spec.returns.max},
        {spec.task: spec.returns.min},
        spec.analysis.returns,
        spec.analysis.bootstrap,
        at,
        interpolate=spec.analysis.crossing == "interpolate",
    )
    g = P.grade(prediction, measured, spec.analysis.grade_top_k, spec.analysis.target_rel_error)
    g.update(
        study=spec.name,
        code_version=code_version(),
        time=_now(),
        returns=returns_note,
        prediction_code_version=prediction["code_version"],
        prediction_time=prediction["time"],
        replays=_replays(spec, state, rules, d),
    )
    write_json_atomic(_dir(spec, "grade.json"), to_json(g))
    from pql_scaling.analysis import plots

    plots.grade(g, _dir(spec, "grade.png"))
    timings["grade"] = timings.get("grade", 0.0) + time.monotonic() - t0
    return g


def _seed_range(seeds):
    return "%d-%d" % (min(seeds), max(seeds)) if seeds else "-"


def _replays(spec, state, rules, validate_dict):
    """Validation runs that repeat a fitted or grid run exactly (same overrides, seed included): there must be
    none, or the grade is not a test of the laws (recorded; the grade's rows at a fitted UTD are in-sample)."""

    def key(run):  # what trains: every override but where it is written and logged
        return tuple(sorted(a for a in run.overrides if not a.startswith(("run_dir=", "wandb."))))

    seen = {
        key(run)
        for stage, r in (("grid", None), ("fitted", rules))
        for run in _runs(spec, stage, state, rules=r or "__skip__")
    }
    return [run.name for run in sweep.expand(sweep.load_spec(validate_dict)) if key(run) in seen]


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

    state.setdefault("seeds", {})
    state.setdefault("seed_choice", {})
    try:
        grid_res = _grid(spec, timings, state)
        save("grid")
        if stop_after == "grid":
            return None
        rules = os.path.join(_dir(spec, "grid_analysis"), "fits.json")
        fit_res = _fitted(spec, rules, timings, state)
        save("fitted")
        if stop_after == "fitted":
            return None
        prediction = _predict(spec, fit_res, rules, state, timings)
        save("predicted")
        if stop_after == "predict":
            return None
        g = _validate(spec, prediction, rules, timings, state)
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
            state.get("seed_choice"),
        )
        save("graded")
        if spec.wandb.mode != "disabled":
            _wandb(spec, fit_res.fits, g, prediction)
        return g
    except BaseException:  # keep the stages' timings: a rerun's `seeds: auto` costs its next stage on them
        write_json_atomic(state_path, state)
        raise


# ---------------------------------------------------------------------------------------------- outputs
def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
