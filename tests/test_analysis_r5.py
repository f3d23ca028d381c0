"""R5's model-size analysis: the released-data loaders (zip and folder), time to threshold with the best
batch size and its bootstrap std, the log-space surface, the pooled multi-task variant with BRO's reset
filter, and `recommend`'s (sigma, N, width). Synthetic fixtures with known parameters live in
tests/data/r5_synth (make.py); R5's own SimbaV2 sample is read from ../shared when present."""

import json
import os
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression

from pql_scaling.analysis import cli, fit, load, modelsize, pipeline, recommend
from pql_scaling.analysis.load import AnalysisInputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNTH = os.path.join(ROOT, "tests", "data", "r5_synth")
SHARED = os.path.join(ROOT, "..", "shared", "data", "r5_simbav2")
ZIP = os.path.join(SHARED, "simbav2_model_scaling_linear20_with_base.zip")
R5_THRESHOLDS = {"h1-crawl-v0": 788.8871690886515, "h1-stand-v0": 657.0001967485866}
ALPHA, BETA = 0.6, 0.8  # tests/data/r5_synth/make.py


def _zip(folder, top, tmp_path):
    path = str(tmp_path / f"{top}.zip")
    with zipfile.ZipFile(path, "w") as z:
        for dp, dirs, files in sorted(os.walk(folder)):
            dirs.sort()
            for f in sorted(files):
                z.write(
                    os.path.join(dp, f), os.path.join("release", os.path.relpath(os.path.join(dp, f), folder))
                )
    return path


def _table(result):
    return pd.DataFrame(result.fits["surface_table"])


@pytest.mark.skipif(not os.path.exists(ZIP), reason="R5's SimbaV2 sample is not in ../shared/data/r5_simbav2")
def test_r5_simbav2_table_is_reproduced(tmp_path):
    cfg = {
        "inputs": [ZIP],
        "format": "model_scaling",
        "thresholds": R5_THRESHOLDS,
        "exclude": {"width": [2048]},
        "delta": 1e11,
        "out": str(tmp_path / "out"),
    }
    res = pipeline.run_analysis(cfg)
    pub = pd.read_csv(os.path.join(SHARED, "published_simba_250823.csv")).rename(
        columns={"env_name": "task", "utd": "sigma", "critic_params": "N"}
    )
    m = pub.merge(_table(res), on=["task", "sigma", "N"], suffixes=("_pub", ""))
    assert len(m) == len(pub) == 32
    assert (m.time_to_threshold == m.time_to_threshold_pub).all()  # deterministic: exact
    rel_std = (m.time_to_threshold_std / m.time_to_threshold_std_pub - 1).abs()
    # measured: 0 (the same MT19937 stream, in the zip's member order)
    assert rel_std.median() < 0.10
    rel_surf = (m.time_to_threshold_surface / m.time_to_threshold_sum_powerlaw - 1).abs()
    assert rel_surf.max() < 0.01  # measured: < 1e-6
    assert (m.width == m.critic_width).all()
    # the whole command writes surface.csv with the columns and the fits under fits.json["surface"]
    from pql_scaling.analysis import report

    report.write_outputs(res, cfg["out"], plots=True)
    csv = pd.read_csv(tmp_path / "out" / "surface.csv")
    assert list(csv.columns[:6]) == [
        "task",
        "sigma",
        "N",
        "time_to_threshold",
        "time_to_threshold_std",
        "time_to_threshold_surface",
    ]
    f = json.load(open(tmp_path / "out" / "fits.json"))["surface"]
    assert set(f) == set(R5_THRESHOLDS) and all(
        {"C", "A", "alpha", "B", "beta"} <= set(v) for v in f.values()
    )
    assert (tmp_path / "out" / "surface.png").exists()
    # the unpacked folder: same times; the stream runs in sorted order there, so the stds are new bootstrap
    # draws (measured: median 6.6 %, max 20 % off R5's) and the surface (fitted on the times) is unchanged
    with zipfile.ZipFile(ZIP) as z:
        z.extractall(tmp_path / "unpacked")
    res = pipeline.run_analysis({**cfg, "inputs": [str(tmp_path / "unpacked")], "format": "auto"})
    u = pub.merge(_table(res), on=["task", "sigma", "N"], suffixes=("_pub", ""))
    assert (u.time_to_threshold == u.time_to_threshold_pub).all()
    assert (u.time_to_threshold_std / u.time_to_threshold_std_pub - 1).abs().median() < 0.10
    assert (u.time_to_threshold_surface / u.time_to_threshold_sum_powerlaw - 1).abs().max() < 0.01


def test_model_scaling_fixture_zip_and_folder_agree_and_recover_the_surface(tmp_path):
    thr = {"t-a": 600.0, "t-b": 480.0}
    folder = os.path.join(SYNTH, "model_scaling")
    zres = pipeline.run_analysis(
        {"inputs": [_zip(folder, "ms", tmp_path)], "format": "model_scaling", "thresholds": thr}
    )
    fres = pipeline.run_analysis({"inputs": [folder], "thresholds": thr})  # format: auto sniffs the layout
    z, f = _table(zres).sort_values(["task", "sigma", "N"]), _table(fres).sort_values(["task", "sigma", "N"])
    assert len(z) == 2 * 4 * 3 and (z.time_to_threshold.to_numpy() == f.time_to_threshold.to_numpy()).all()
    for t in thr:
        s = zres.fits["surface"][t]
        assert (
            s["converged"]
            and s["alpha"] == pytest.approx(ALPHA, rel=0.3)
            and s["beta"] == pytest.approx(BETA, rel=0.3)
        )
    # best batch size: every cell's time is the min over the two batch sizes' own crossings
    curves = load.load_model_scaling(folder)
    c = [x for x in curves if x["task"] == "t-a" and x["sigma"] == 2.0 and x["width"] == 256]
    own = [fit.r5_cells([x], {"t-a": 600.0}, 0)[0]["time_to_threshold"] for x in c]
    cell = z[(z.task == "t-a") & (z.sigma == 2.0) & (z.width == 256)].time_to_threshold.item()
    assert len(c) == 2 and cell == min(own)
    # tasks and exclude
    r = pipeline.run_analysis(
        {"inputs": [folder], "thresholds": thr, "tasks": ["t-b"], "exclude": {"width": [512], "sigma": [8]}}
    )
    t = _table(r)
    assert set(t.task) == {"t-b"} and 512 not in set(t.width) and 8.0 not in set(t.sigma) and len(t) == 6
    # several thresholds per task: one surface each
    r = pipeline.run_analysis(
        {"inputs": [folder], "thresholds": {"t-a": [500.0, 600.0]}, "tasks": ["t-a"], "bootstrap": 5}
    )
    assert sorted(r.fits["surface"]) == ["t-a@J=500", "t-a@J=600"]


def test_bad_r5_settings_are_named():
    folder = os.path.join(SYNTH, "model_scaling")
    with pytest.raises(AnalysisInputError, match="unknown axis"):
        pipeline.run_analysis({"inputs": [folder], "thresholds": {"t-a": 1.0}, "exclude": {"depth": [2]}})
    with pytest.raises(AnalysisInputError, match="no threshold for task 't-b'"):
        pipeline.run_analysis({"inputs": [folder], "format": "model_scaling", "thresholds": {"t-a": 600.0}})
    with pytest.raises(AnalysisInputError, match="threshold_base"):
        pipeline.run_analysis({"inputs": [folder], "format": "model_scaling", "pool": "r5"})
    with pytest.raises(AnalysisInputError, match="not in the inputs"):
        pipeline.run_analysis({"inputs": [folder], "thresholds": {"t-a": 1.0}, "tasks": ["nope"]})
    with pytest.raises(AnalysisInputError, match="no BRO ablation arrays"):
        pipeline.run_analysis(
            {"inputs": [folder], "format": "bro_ablations", "pool": "r5", "threshold_base": {"t-a": 1}}
        )


BASES = {"d-a": 200.0, "d-b": 150.0, "d-c": 250.0}
RESET = 2.5e5  # make.py


def _pooled_by_hand(folder, bases, reset, leave_out=("xs",)):
    """R5's pooled variant written out directly from docs/science.md 3, independent of analysis.fit."""
    per_task = {}
    for rr in sorted(os.listdir(os.path.join(folder, "ablations_rr"))):
        sigma, size = rr[2:].split("_")
        if size in leave_out:
            continue
        sigma = float(sigma)
        for f in sorted(os.listdir(os.path.join(folder, "ablations_rr", rr))):
            y = np.load(os.path.join(folder, "ablations_rr", rr, f))
            steps = 25000.0 * (np.arange(len(y)) + 1)
            keep = np.ones(len(y), bool)
            mean = y.mean(1)
            every = reset / sigma
            k = 1
            while k * every < steps[-1]:
                t = k * every
                level = mean[steps <= t][-1]
                for i in np.nonzero(steps > t)[0]:
                    if mean[i] >= level:
                        break
                    keep[i] = False
                k += 1
            iso = IsotonicRegression(increasing=True).fit(steps[keep], mean[keep]).predict(steps[keep])
            per_task.setdefault(f[:-4], []).append((sigma, size, steps[keep], iso))
    ratios, medians = {}, {}
    for task, rows in per_task.items():
        top = np.floor(0.95 * np.percentile([r[3][-1] for r in rows], 20) / 10) * 10
        Js = np.linspace(bases[task], top, 20)
        cross = []
        for sigma, size, st, iso in rows:
            row = []
            for J in Js:
                hit = [s for s, v in zip(st, iso) if v >= J]
                row.append(hit[0] if hit else np.nan)
            cross.append(row)
        cross = np.array(cross)
        medians[task] = np.nanmedian(cross)
        for (sigma, size, *_), c in zip(rows, cross):
            ratios.setdefault((sigma, size), []).append(c[-1] / medians[task])
    mm = np.median(list(medians.values()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {k: (mm * np.nanmean(v), mm * np.nanstd(v)) for k, v in ratios.items()}


@pytest.mark.parametrize("as_zip", [False, True])
def test_pooled_variant_matches_a_direct_computation(as_zip, tmp_path):
    folder = SYNTH
    src = folder
    if as_zip:  # the zip's members are release/<rr...>: keep the ablations_rr folder name in the member path
        src = str(tmp_path / "bro2.zip")
        with zipfile.ZipFile(src, "w") as z:
            for dp, _, files in sorted(os.walk(os.path.join(SYNTH, "ablations_rr"))):
                for f in sorted(files):
                    z.write(os.path.join(dp, f), os.path.relpath(os.path.join(dp, f), SYNTH))
    cfg = {
        "inputs": [src],
        "format": "bro_ablations",
        "pool": "r5",
        "threshold_rule": "r5",
        "threshold_base": BASES,
        "exclude": {"size": ["xs"]},
        "reset_every_grad_steps": RESET,
    }
    res = pipeline.run_analysis(cfg)
    t = _table(res)
    want = _pooled_by_hand(SYNTH, BASES, RESET)
    size_n = load.BRO_PARAMS
    assert len(t) == len(want) == 4 * 2 and set(t.task) == {"pooled"}
    got = np.array(
        [
            [
                t[(t.sigma == sg) & (t.N == size_n[sz])][c].item()
                for c in ("time_to_threshold", "time_to_threshold_std")
            ]
            for sg, sz in want
        ]
    )
    np.testing.assert_allclose(got, np.array(list(want.values())), rtol=1e-12, equal_nan=True)
    assert np.isfinite(got[:, 0]).sum() >= 6  # R5's top threshold (0.95 q20) is reached by most cells
    assert "pooled" in res.fits["surface"] and res.fits["surface"]["pooled"]["converged"]
    # without the reset filter the dips move the crossings: the filter is doing something
    res2 = pipeline.run_analysis({**cfg, "reset_every_grad_steps": None})
    assert not np.allclose(_table(res2).time_to_threshold, t.time_to_threshold)


def test_recommend_gives_sigma_n_and_width(tmp_path, capsys):
    folder = os.path.join(SYNTH, "model_scaling")
    res = pipeline.run_analysis(
        {
            "inputs": [folder],
            "thresholds": {"t-a": [500.0, 700.0]},
            "tasks": ["t-a"],
            "bootstrap": 0,
            "out": str(tmp_path),
        }
    )
    from pql_scaling.analysis import report

    report.write_outputs(res, str(tmp_path), plots=False)
    fits = json.load(open(tmp_path / "fits.json"))
    wf = fits["width_fit"]
    for w, n in load.SIMBA_PARAMS.items():  # SimbaV2's N is exactly quadratic in the width
        if w <= 512:
            assert modelsize.width_for(wf, n) == pytest.approx(w, rel=1e-6)
    hi = fits["surface"]["t-a@J=700"]["optimum"]
    lo = fits["surface"]["t-a@J=500"]["optimum"]
    r = recommend.recommend(fits, hi["F"] * 1.01, task="t-a")
    assert r["surface"]["J"] == 700.0 and r["model_size"] == pytest.approx(hi["model_size"])
    assert r["width"] == pytest.approx(modelsize.width_for(wf, hi["model_size"]))
    r = recommend.recommend(fits, (lo["F"] + hi["F"]) / 2 if lo["F"] < hi["F"] else lo["F"], task="t-a")
    assert r["surface"]["J"] == 500.0
    assert (
        cli.recommend_main(["--fits", str(tmp_path / "fits.json"), "--budget", "1e30", "--task", "t-a"]) == 0
    )
    out = capsys.readouterr().out
    assert "net.critic_width=" in out and "R5 surface t-a@J=700" in out


def test_our_runs_at_several_widths_give_the_surface_and_the_width(tmp_path, capsys):
    """Run directories whose run.json carries critic_params and critic_width (as train.py writes them):
    R1 mode fits R5's surface and R2 on them, R5 mode (per-task absolute thresholds) too, and `recommend`
    turns N into a width through N(w), which is quadratic for a fixed depth."""
    from tests.test_analysis_io import R_MAX, _write_run

    rng = np.random.default_rng(3)
    # a 2-layer twin MLP on 20 inputs
    widths = {w: 2 * (20 * w + w + w * w + w + w + 1) for w in (64, 128, 256)}
    for w, n in widths.items():
        for s in (0.5, 1.0, 2.0, 4.0, 8.0):
            tau = 2e4 * (1 + (2 / s) ** 0.8 + (2e4 / n) ** 0.6)
            for seed in range(2):
                d = str(tmp_path / "runs" / f"w{w}_s{s}_{seed}")
                _write_run(d, "ta", s, seed, rng, n_params=int(n), steps=np.arange(1000, 6 * tau, 1000))
                info = json.load(open(os.path.join(d, "run.json")))
                json.dump(
                    {**info, "critic_width": w, "critic_arch": "mlp"}, open(os.path.join(d, "run.json"), "w")
                )
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
                "5",
                "--thresholds",
                "600,700,800",
                "--holdout-top-k",
                "1",
                "--no-plots",
            ]
        )
        == 0
    )
    fits = json.load(open(out / "fits.json"))
    wf = fits["model_size_fits"]["width_fit"]
    assert all(modelsize.width_for(wf, n) == pytest.approx(w, rel=1e-6) for w, n in widths.items())
    s = fits["surface"]["ta"]
    assert s["alpha"] == pytest.approx(0.8, rel=0.3) and s["beta"] == pytest.approx(0.6, rel=0.3)
    assert (out / "surface.csv").exists()
    r = recommend.recommend(fits, 1e15)
    assert r["width"] == pytest.approx(modelsize.width_for(wf, r["model_size"]))
    # R5 mode on our runs: absolute per-task threshold (raw return units)
    res = pipeline.run_analysis(
        {"inputs": [str(tmp_path / "runs")], "thresholds": {"ta": 0.7 * R_MAX}, "bootstrap": 10}
    )
    t = _table(res)
    assert len(t) == 15 and set(t.width) == set(widths) and res.fits["surface"]["ta"]["converged"]
    # runs of another critic architecture are a different family: refused, not pooled
    d = str(tmp_path / "runs" / "bro")
    _write_run(d, "ta", 1.0, 0, rng, n_params=99999)
    info = json.load(open(os.path.join(d, "run.json")))
    json.dump({**info, "critic_arch": "bro"}, open(os.path.join(d, "run.json"), "w"))
    with pytest.raises(AnalysisInputError, match="pql\\+bro"):
        pipeline.run_analysis({"inputs": [str(tmp_path / "runs")], "thresholds": {"ta": 0.7 * R_MAX}})
