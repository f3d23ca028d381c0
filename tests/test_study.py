"""`pql-scale study` end to end on a miniature pendulum study (real training subprocesses, a real local
launcher, the real wandb in offline mode), its spec validation, and that a rerun continues without
recomputing the prediction."""

import json
import os

import pytest

from pql_scaling.experiments import study

MINI = {
    "name": "mini",
    "task": "pendulum",
    # pendulum's earlier CPU defaults (16 envs, 64x64 nets, ELU, 32 warm-up steps; tasks/pendulum.yaml now has 32
    # envs, ReLU and 100) at lr
    # 4e-3, which learn in a few thousand env steps at UTD >= 1/8 (measured on the studies/pendulum_cpu.yaml grid,
    # which pins the same)
    "base": {
        "mode": "sync",
        "threads": 1,
        "net.activation": "elu",
        "num_envs": 16,
        "algo.warmup_steps": 32,  # ditto (the task default is now 100)
        "log.every_steps": 25,
        "max_env_steps": 3200,
        "max_time_s": 0,
        "eval.every_steps": 400,
        "eval.episodes": 8,
        "wandb.mode": "disabled",
    },
    "returns": {"min": -1500.0, "max": -100.0},
    "grid": {"utd": [0.25, 1.0], "batch_size": [64, 128], "lr": [0.004], "seeds": 1},
    "fitted": {"utd": [0.125, 0.25, 0.5, 1.0], "max_env_steps": [6000, 4000, 3200, 2400], "seeds": 1},
    # no evaluation spacing from the prediction and no sigma* neighbours: at these run lengths their extra
    # evaluations and runs cost most of the test (tests/test_study_bets.py checks both as functions)
    "validate": {"utd": [2.0], "seeds": 1, "budget_factor": 2.0, "eval_spacing": 0, "budget_neighbours": []},
    # low thresholds: this test checks the machinery; test_study_analysis.py checks the numbers on known laws
    "analysis": {
        "thresholds": [200.0, 300.0, 400.0],
        "sweep_threshold": 300.0,
        "bootstrap": 10,
        "returns": "eval",
        "holdout_top_k": 0,
    },
    "launcher": {"local": {"runs_per_device": 2, "threads_per_run": 1}},
    "wandb": {"mode": "offline", "project": "mini"},
}


def test_mini_study_end_to_end_and_resume(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    spec = study.load_spec(dict(MINI, out=str(tmp_path / "mini")))
    g = study.run(spec)
    out = spec.out
    for f in (
        "grid_analysis/fits.json",
        "fitted_analysis/fits.json",
        "prediction.json",
        "grade.json",
        "grade.png",
        "report.md",
        "study.json",
    ):
        assert os.path.exists(os.path.join(out, f)), f
    pred = json.load(open(os.path.join(out, "prediction.json")))
    assert pred["code_version"] and pred["time"]
    assert pred["held_out"][0]["outside_fitted_range"] and pred["held_out"][0]["sigma"] == 2.0
    budget = pred.get("budget") or pred["budget_not_run"]  # not run when sigma*(F) extrapolates > 4x
    assert budget["F"] > budget["largest_fitted_F"]
    # the prediction was on disk before the first validation run started
    first_val = min(
        os.path.getmtime(os.path.join(r, "config.yaml"))
        for r, _, fs in os.walk(os.path.join(out, "validate"))
        if "config.yaml" in fs
    )
    assert os.path.getmtime(os.path.join(out, "prediction.json")) < first_val
    # the held-out UTD (and the budget optimum when run), per threshold
    assert len(g["rows"]) == (1 + ("budget" in pred)) * len(pred["thresholds"])
    report = open(os.path.join(out, "report.md")).read()
    assert "## 5. Grade" in report and "pql-scale train task=pendulum" in report
    wb = [
        os.path.join(r, f)
        for r, _, fs in os.walk(os.path.join(out, "wandb"))
        for f in fs
        if f.endswith(".wandb")
    ]
    assert wb  # the analysis run, written offline
    # a rerun continues: nothing is trained again, the prediction stays the one written first
    before = {
        r: os.path.getmtime(os.path.join(r, "metrics.jsonl"))
        for r, _, fs in os.walk(out)
        if "metrics.jsonl" in fs
    }
    pred_bytes = open(os.path.join(out, "prediction.json")).read()
    study.run(spec)
    assert open(os.path.join(out, "prediction.json")).read() == pred_bytes
    assert before == {r: os.path.getmtime(os.path.join(r, "metrics.jsonl")) for r in before}


@pytest.mark.parametrize(
    "change, match",
    [
        ({"validate": {"utd": [0.25]}}, "outside the fitted range"),
        ({"fitted": {"utd": [0.125, 0.25, 0.5]}}, "needs >= 4 distinct UTDs"),
        ({"returns": {"min": 0.0, "max": -100.0}}, "must be above returns.min"),
        ({"analysis": {"returns": "test"}}, "analysis.returns"),
        ({"grid": {"utd": [0.125, 0.5], "batch_size": [64], "lr": [0.003], "sedes": 2}}, "sedes"),
        ({"base": {"algo.batch_size": 64}}, "the study sets"),
        ({"base": {"num_envz": 8}}, "num_envz"),
        ({"validate": {"utd": [2.0], "over_budget": "skip"}}, "validate.over_budget"),
    ],
)
def test_spec_errors_name_the_key(tmp_path, change, match):
    spec = json.loads(json.dumps(MINI))
    for k, v in change.items():
        spec[k] = dict(spec[k], **v) if isinstance(spec.get(k), dict) else v
    with pytest.raises(study.StudyError, match=match):
        study.load_spec(dict(spec, out=str(tmp_path / "x")))
