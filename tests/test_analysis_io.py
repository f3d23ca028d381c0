"""Loaders (run directories, W&B stand-in, qscaled), the CLI end to end, and bad-input messages."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from pql_scaling.analysis import cli, config, load, pipeline
from pql_scaling.analysis.load import AnalysisInputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIGMAS = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
R_MAX = 5000.0


def _tau(sigma, tau0=2e4, a=0.8, b=2.0):
    return tau0 * (1 + (b / sigma) ** a)


def _write_run(
    d,
    task,
    sigma,
    seed,
    rng,
    num_envs=16,
    batch=256,
    lr=3e-4,
    n_params=1e5,
    experts=0,
    status="completed",
    truncate=False,
    r_max=R_MAX,
    steps=None,
    algo="pql",
):
    os.makedirs(d, exist_ok=True)
    cfg = {
        "task": task,
        "backend": "torch",
        "seed": seed,
        "num_envs": num_envs,
        "algo": {
            "name": algo,
            "batch_size": batch,
            "critic_lr": lr,
            "actor_lr": lr,
            "critic_updates_per_step": sigma * num_envs,
        },
        "net": {"critic_hidden": [256, 256]},
        "r_max": r_max,
    }
    with open(os.path.join(d, "config.yaml"), "w") as fh:
        yaml.safe_dump(cfg, fh)
    info = {
        "task": task,
        "algo": algo,
        "seed": seed,
        "num_envs": num_envs,
        "utd": sigma,
        "batch_size": batch,
        "critic_lr": lr,
        "actor_lr": lr,
        "critic_params": n_params,
        "actor_params": n_params // 2,
        "experts": experts,
        "flops_per_critic_update": 6 * n_params * batch,
        "flops_per_policy_update": 1.0,
        "r_max": r_max,
    }
    with open(os.path.join(d, "run.json"), "w") as fh:
        json.dump(info, fh)
    tau = _tau(sigma) * np.exp(rng.normal(0, 0.03))
    lines = []
    steps = steps if steps is not None else np.arange(1000, 8 * _tau(sigma), 1000)
    for i, t in enumerate(steps):
        ret = None if i == 0 else float(R_MAX * (1 - np.exp(-t / tau)) + rng.normal(0, 50))
        cu = sigma * t
        lines.append(
            json.dumps(
                {
                    "env_steps": float(t),
                    "critic_updates": cu,
                    "policy_updates": cu / 2,
                    "utd": sigma,
                    "flops": 6 * n_params * batch * cu,
                    "wall_time_s": t / 1e4,
                    "return_mean": ret,
                    "return_std": 1.0,
                    "episodes": i,
                    "env_steps_per_s": 1e4,
                    "critic_updates_per_s": 1e4 * sigma,
                    "critic_loss": 0.1,
                }
            )
        )
    text = "\n".join(lines) + "\n"
    if truncate:
        text += '{"env_steps": 99999, "critic_upd'
    with open(os.path.join(d, "metrics.jsonl"), "w") as fh:
        fh.write(text)
    with open(os.path.join(d, "status.json"), "w") as fh:
        json.dump({"status": status, "reason": "oom" if status == "failed" else None}, fh)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    for task in ("ta", "tb"):
        for s in SIGMAS:
            for seed in range(3):
                _write_run(
                    str(root / "sweep" / task / f"utd{s}" / f"s{seed}"),
                    task,
                    s,
                    seed,
                    rng,
                    truncate=(task == "ta" and s == 1.0 and seed == 0),
                    status="running" if (task == "tb" and s == 8.0 and seed == 2) else "completed",
                )
    _write_run(str(root / "broken" / "failed"), "ta", 1.0, 9, rng, status="failed")
    os.makedirs(root / "broken" / "half")
    (root / "broken" / "half" / "config.yaml").write_text("task: ta\n")
    return root


def test_run_loader_tidy_table_and_skips(runs):
    t, skipped = load.load_runs(str(runs))
    assert set(load.COLUMNS) <= set(t.columns)
    assert sorted(t.task.unique()) == ["ta", "tb"] and sorted(t.sigma.unique()) == SIGMAS
    assert (t.grad_steps == t.sigma * t.env_steps).all() and t.model_size.eq(1e5).all()
    reasons = " | ".join(r for _, r in skipped)
    assert "truncated (last line, skipped)" in reasons
    assert "status failed: oom" in reasons
    assert "no metrics.jsonl" in reasons
    assert "still running" in reasons
    assert 99999 not in t.env_steps.values
    cs = load.curves(t)
    assert len(cs) == 2 * len(SIGMAS) and all(c["n_seeds"] == 3 for c in cs)
    assert all(np.isfinite(c["returns"]).all() for c in cs)  # the leading null return is cut


def test_curves_align_seeds_logged_on_different_steps(tmp_path):
    rng = np.random.default_rng(1)
    _write_run(str(tmp_path / "a"), "t", 1.0, 0, rng, steps=np.arange(1000, 20000, 1000))
    _write_run(str(tmp_path / "b"), "t", 1.0, 1, rng, steps=np.arange(1500, 15000, 1000))
    (c,) = load.curves(load.load_runs(str(tmp_path))[0])
    assert c["returns"].shape[1] == 2 and c["steps"].max() <= 14500 and np.isfinite(c["returns"]).all()


def test_cli_analyze_and_recommend_on_run_directories(runs, tmp_path, capsys):
    out = tmp_path / "out"
    cfgf = tmp_path / "a.yaml"
    cfgf.write_text(
        yaml.safe_dump(
            {
                "inputs": [str(runs / "sweep")],
                "thresholds": [500.0, 600.0, 700.0, 800.0],
                "bootstrap": 20,
                "delta": 1e9,
                "holdout_top_k": 1,
                "out": str(out),
            }
        )
    )
    assert cli.analyze_main(["--config", str(cfgf), "--compute", "measured"]) == 0
    f = json.load(open(out / "fits.json"))
    for k in ("batch_size", "learning_rate"):
        assert "slope" in f["hparams"][k] and set(f["hparams"][k]["intercepts"]) == {"ta", "tb"}
    de = f["data_efficiency"]
    assert [r["J"] for r in de] == [500.0, 600.0, 700.0, 800.0]
    for r in de:
        assert {"J", "D_min", "beta", "alpha", "D_min_ci95", "alpha_ci95", "beta_ci95"} <= set(r) and r[
            "converged"
        ]
    r = de[-1]  # truth: D_min = ln5 * 2e4, alpha = 0.8
    assert r["D_min"] == pytest.approx(np.log(5) * 2e4, rel=0.15) and r["alpha"] == pytest.approx(
        0.8, rel=0.15
    )
    assert "coef" in f["budget"]["sigma_star"] and "exponent" in f["budget"]["sigma_star"]
    assert f["budget"]["holdout_rel_error"] is not None and "measured" in f["compute"]["formula"]
    x = next(c for c in f["crossings"] if c["D_J"] is not None)  # flops logged = 6 N B sigma * env steps
    assert x["C_J_measured"] == pytest.approx(6 * 1e5 * 256 * x["sigma"] * x["D_J"], rel=1e-6)
    for fn in (
        "report.md",
        "learning_curves.png",
        "data_efficiency.png",
        "pareto.png",
        "budget.png",
        "hparams.png",
        "data_efficiency.csv",
        "data_efficiency.md",
        "hparam_rules.csv",
        "crossings.csv",
    ):
        assert (out / fn).exists(), fn
    rep = (out / "report.md").read_text()
    assert rep.index("learning_curves.png") < rep.index("data_efficiency.png") < rep.index("budget.png")
    assert "truncated" in rep
    capsys.readouterr()
    assert cli.recommend_main(["--fits", str(out / "fits.json"), "--budget", "1e14", "--task", "ta"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    kv = dict(x.split("=") for x in line.split())
    assert set(kv) == {
        "num_envs",
        "algo.critic_updates_per_step",
        "algo.batch_size",
        "algo.critic_lr",
        "algo.actor_lr",
    }
    s = f["budget"]["sigma_star"]
    assert float(kv["algo.critic_updates_per_step"]) == pytest.approx(
        4096 * s["coef"] * 1e14 ** s["exponent"], rel=1e-3
    )
    assert int(kv["algo.batch_size"]) == 256  # every run used 256: the rule is flat


def test_python_m_analysis_entry_point(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pql_scaling.analysis",
            "recommend",
            "--fits",
            str(tmp_path / "none.json"),
            "--budget",
            "1e12",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "none.json" in r.stderr


class _Run:
    """Stand-in for wandb.apis.public.Run (same attributes the loader uses; no server is reachable here)."""

    def __init__(self, i, cfg, rows, state="finished"):
        self.id, self.name, self.config, self.state = f"r{i}", f"run-{i}", cfg, state
        self.summary = rows[-1] if rows else {}
        self._rows = rows

    def scan_history(self, keys=None, page_size=1000, min_step=0, max_step=None, use_cache=True):
        return iter([r for r in self._rows if keys is None or all(k in r for k in keys)])

    def history(self, samples=500, keys=None, x_axis="_step", pandas=True, stream="default"):
        import pandas as pd

        return pd.DataFrame(self._rows)


class _Api:
    def __init__(self, runs):
        self._runs = runs
        self.paths = []

    def runs(
        self, path=None, filters=None, order="+created_at", per_page=50, include_sweeps=False, lazy=True
    ):
        self.paths.append(path)
        return iter(self._runs)


def test_wandb_loader_with_api_stand_in():
    rng = np.random.default_rng(2)
    runs = []
    for i, s in enumerate([1.0, 2.0]):
        cfg = {
            "task": "ta",
            "seed": i,
            "num_envs": 8,
            "algo": {"name": "pql", "batch_size": 128, "critic_lr": 1e-3, "critic_updates_per_step": 8 * s},
            "critic_params": 5e4,
            "r_max": 100.0,
        }
        rows = [
            {
                "_step": k,
                "env_steps": 1000.0 * k,
                "critic_updates": 1000.0 * k * s,
                "flops": 1.0 * k,
                "wall_time_s": 0.1 * k,
                "return_mean": float(rng.uniform(0, 100)),
            }
            for k in range(1, 6)
        ]
        rows.insert(2, {"_step": 99, "critic_loss": 0.3})  # a row without env_steps (other logging)
        runs.append(_Run(i, cfg, rows))
    runs.append(_Run(9, {"task": "ta"}, [], state="crashed"))
    api = _Api(runs)
    t, skipped = load.load_wandb("wandb://me/proj", api=api)
    assert api.paths == ["me/proj"]
    assert sorted(t.sigma.unique()) == [1.0, 2.0] and len(t) == 10
    assert t.batch_size.eq(128).all() and t.model_size.eq(5e4).all() and t.r_max.eq(100).all()
    assert skipped == [("r9", "state crashed")]
    t2, _ = load.load(["wandb://me/proj"], api=api)
    assert len(t2) == len(t)


def test_qscaled_loader_layout(tmp_path):
    d = tmp_path / "exp" / "utd_0.5" / "Ant-v4" / "episode.return"
    d.mkdir(parents=True)
    np.save(d / "bs_256_lr_0.0003.npy", np.column_stack([np.arange(1, 11) * 1000.0, np.ones((10, 3))]))
    t = load.load_qscaled(str(tmp_path / "exp"))
    assert (
        len(t) == 30
        and t.sigma.eq(0.5).all()
        and t.lr.eq(3e-4).all()
        and (t.grad_steps == 0.5 * t.env_steps).all()
    )
    t2, _ = load.load([str(tmp_path / "exp")])  # auto-detected
    assert len(t2) == 30


@pytest.mark.parametrize(
    "cfg,match",
    [
        ({"inputs": []}, "no inputs given"),
        ({"inputs": ["/nonexistent/x"]}, "does not exist"),
        ({"inputs": ["EMPTY"]}, "no run directories"),
        ({"inputs": ["RUNS"], "max_returns": {}, "_no_rmax": True}, r"no R_max for task\(s\) \['ta'\]"),
        ({"inputs": ["RUNS"], "thresholds": [1050.0, 1100.0]}, "no run reaches any threshold"),
        ({"inputs": ["FEW"]}, "needs >= 4 distinct UTD"),
    ],
)
def test_bad_input_messages(tmp_path, cfg, match):
    rng = np.random.default_rng(3)
    (tmp_path / "empty").mkdir()
    few = "FEW" in cfg["inputs"]
    for s in [1.0, 2.0] if few else SIGMAS:
        _write_run(
            str(tmp_path / ("few" if few else "runs") / str(s)),
            "ta",
            s,
            0,
            rng,
            r_max=None if cfg.get("_no_rmax") else R_MAX,
        )
    sub = {"EMPTY": str(tmp_path / "empty"), "RUNS": str(tmp_path / "runs"), "FEW": str(tmp_path / "few")}
    cfg = {
        **{k: v for k, v in cfg.items() if k != "_no_rmax"},
        "bootstrap": 5,
        "inputs": [sub.get(x, x) for x in cfg["inputs"]],
    }
    if few:
        # 2 UTDs: the D_J fits cannot run; every threshold reports why, and the budget step says so
        res = pipeline.run_analysis({**cfg, "thresholds": [500.0]}).fits
        assert not res["data_efficiency"][0]["converged"]
        assert "needs >= 4 distinct UTD values" in res["data_efficiency"][0]["error"]
        assert "error" in res["budget"]
        return
    with pytest.raises(AnalysisInputError, match=match):
        pipeline.run_analysis(cfg)


def test_cli_reports_bad_input_with_exit_code(tmp_path, capsys):
    assert cli.analyze_main([str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_runs_spanning_model_sizes_fit_r5_surface_and_r2_intrinsic(tmp_path, capsys):
    """tau(sigma, N) = 2e4 (1 + (2/sigma)^0.8 + (2e5/N)^0.6): D_J follows R5's surface with alpha 0.8,
    beta 0.6."""
    rng = np.random.default_rng(7)
    for n in (1e5, 4e5, 1.6e6):
        for s in (0.5, 1.0, 2.0, 4.0, 8.0):
            tau = 2e4 * (1 + (2 / s) ** 0.8 + (2e5 / n) ** 0.6)
            for seed in range(2):
                d = str(tmp_path / "runs" / f"n{n:g}_s{s}_{seed}")
                _write_run(d, "ta", s, seed, rng, n_params=int(n), steps=np.arange(1000, 6 * tau, 1000))
                # _write_run uses _tau(sigma); rewrite returns with this run's tau
                rows = [json.loads(x) for x in open(os.path.join(d, "metrics.jsonl"))]
                for r in rows[1:]:
                    r["return_mean"] = float(R_MAX * (1 - np.exp(-r["env_steps"] / tau)) + rng.normal(0, 30))
                open(os.path.join(d, "metrics.jsonl"), "w").write(
                    "\n".join(json.dumps(r) for r in rows) + "\n"
                )
    out = tmp_path / "out"
    assert (
        cli.analyze_main(
            [
                str(tmp_path / "runs"),
                "--out",
                str(out),
                "--bootstrap",
                "10",
                "--thresholds",
                "600,700,800",
                "--holdout-top-k",
                "1",
            ]
        )
        == 0
    )
    f = json.load(open(out / "fits.json"))
    surf = f["model_size_fits"]["surface"]["ta"]
    assert (
        surf["converged"]
        and surf["alpha"] == pytest.approx(0.8, rel=0.2)
        and surf["beta"] == pytest.approx(0.6, rel=0.2)
    )
    assert 1e5 <= surf["optimum"]["model_size"] <= 1.6e6
    assert f["model_size_fits"]["intrinsic"]["ta"]["converged"]
    assert "n_opt" in f["model_size_fits"] and (out / "intrinsic.png").exists()
    capsys.readouterr()
    assert cli.recommend_main(["--fits", str(out / "fits.json"), "--budget", "1e15"]) == 0
    assert "critic size N_opt" in capsys.readouterr().out


def test_analysis_never_imports_the_training_side():
    import re

    for dp, _, files in os.walk(os.path.join(ROOT, "analysis")):  # the package and its subpackages
        for fn in files:
            if fn.endswith(".py"):
                src = open(os.path.join(dp, fn)).read()
                # only itself, the run directory's stdlib leaf (rundir.schema) and the spec helpers (specs)
                imports = re.findall(r"^\s*(?:from|import)\s+([\w.]+)", src, re.M)
                bad = [
                    m
                    for m in imports
                    if m.split(".")[0] in ("pql_scaling", "envs", "tasks", "torch")
                    and not m.startswith(
                        ("pql_scaling.analysis", "pql_scaling.rundir.schema", "pql_scaling.specs")
                    )
                    and m != "pql_scaling"
                ]
                assert not bad, (fn, bad)


def test_config_numbers_from_yaml_and_unknown_keys(tmp_path):
    with pytest.raises(AnalysisInputError, match="unknown config key"):
        pipeline.run_analysis({"inputs": ["x"], "treshold": 3})
    with pytest.raises(AnalysisInputError, match="`delta` must be a number"):
        pipeline.run_analysis({"inputs": ["x"], "delta": "lots"})
    cfg = yaml.safe_load("model_size: 1.5e5\ndelta: 4e9\n")  # YAML 1.1 reads these as strings
    assert isinstance(cfg["model_size"], str)
    assert config.number(cfg, "model_size") == 1.5e5 and config.number(cfg, "delta") == 4e9


def test_mixed_algorithms_are_refused(tmp_path):
    rng = np.random.default_rng(8)
    _write_run(str(tmp_path / "a"), "ta", 1.0, 0, rng, algo="pql")
    _write_run(str(tmp_path / "b"), "ta", 1.0, 0, rng, algo="sac")
    with pytest.raises(AnalysisInputError, match=r"mix algorithms \['pql', 'sac'\]"):
        pipeline.run_analysis({"inputs": [str(tmp_path)], "bootstrap": 0})
