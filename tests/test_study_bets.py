"""A study one can bet on (issue 26), as pure functions on known laws: crossings interpolated at the data's
resolution, the joint D_J(sigma) fit (identifiable, monotone in J), prediction intervals for a measurement
with n seeds and their calibration, in-sample rows graded apart, validation seeds that never replay a fitted
run, and `seeds: auto` from measured costs."""

import os

import numpy as np
import pytest

from pql_scaling.analysis import fit, pipeline, predict
from pql_scaling.analysis.study_report import headline, verdict
from pql_scaling.experiments import study
from pql_scaling.experiments.study import costs, stages
from pql_scaling.experiments.study.spec import _sweep_dict, stage_seeds
from tests.test_study_analysis import RMAX, RMIN, tau, write_run
from tests.test_study_analysis import _cfg as analysis_cfg

HERE = os.path.dirname(os.path.abspath(__file__))
PENDULUM = os.path.join(HERE, "..", "studies", "pendulum_cpu.yaml")


def test_interpolated_crossing_lies_on_the_curve_not_on_the_log_grid():
    steps = np.arange(0.0, 1000.0, 100.0)
    y = np.linspace(0.0, 900.0, 10)  # 1 return point per env step
    J = [450.0, 0.0, 950.0]
    first = fit.crossing_at(y, steps, J)
    inter = fit.crossing_at(y, steps, J, interpolate=True)
    assert first[0] == 500.0 and inter[0] == pytest.approx(450.0)  # R1's rule vs the segment's crossing
    assert first[1] == inter[1] == 0.0  # above J from the first point: that point
    assert np.isnan(first[2]) and np.isnan(inter[2])
    assert fit.crossing_resolution(steps, inter)[0] == 100.0
    # batched rows (bootstrap resamples) give each row's own crossing
    rows = np.stack([y, y / 2])
    assert fit.crossing_at(rows, steps, [450.0], True)[:, 0] == pytest.approx([450.0, 900.0])


def _law(x, alpha, dmin, beta):
    return dmin[None, :] + (beta[None, :] / x[:, None]) ** alpha


def test_joint_fit_recovers_a_known_law_and_every_resample_is_monotone_in_J():
    x = np.array([1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0])
    alpha, dmin, beta = 0.9, np.array([1500.0, 2000.0, 2600.0]), np.array([60.0, 80.0, 110.0])
    times = _law(x, alpha, dmin, beta)[None]  # [task, utd, K]
    rows = fit.data_efficiency_joint(x, times)
    assert [r["alpha"] for r in rows] == pytest.approx([alpha] * 3, rel=1e-6)
    assert [r["D_min"] for r in rows] == pytest.approx(dmin.tolist(), rel=1e-5)
    assert [r["beta"] for r in rows] == pytest.approx(beta.tolist(), rel=1e-5)
    # seed noise of 15% per crossing: R1's separate fits can cross over in J, the joint fit cannot
    rng = np.random.default_rng(0)
    noisy = times[None] * np.exp(0.15 * rng.standard_normal((40,) + times.shape))
    boot = fit.data_efficiency_joint_boot(x, noisy, rows)
    grid = np.logspace(-2, 1, 30)
    for r in range(40):
        if not all(b["converged"][r] for b in boot):
            continue
        d = np.stack([fit.d_of_sigma({q: b[q][r] for q in ("a", "b", "c", "m")}, grid) for b in boot])
        assert (np.diff(d, axis=0) >= -1e-9 * d[1:]).all()  # D_J(sigma) nondecreasing in J at every sigma
        assert all(b["D_min"][r] >= 0 for b in boot)


@pytest.fixture(scope="module")
def law_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("law")
    for s in (0.125, 0.25, 0.5, 1.0):
        for seed in range(12):
            write_run(str(root / ("u%g_s%d" % (s, seed))), s, seed, params=1e4, every=200, noise=30.0)
    return str(root)


def _cfg(inputs, **kw):  # test_study_analysis's config with the study's crossing and fit
    law = dict(thresholds=[500.0, 650.0, 800.0], bootstrap=60, crossing="interpolate", dj_fit="joint")
    law.update(model_size=1e4, delta=1e6, holdout_top_k=0)
    return analysis_cfg(inputs, **{**law, **kw})


def test_held_out_predictions_of_a_known_law_are_tight_and_calibrated(law_runs, tmp_path):
    res = pipeline.run_analysis(_cfg(law_runs))
    n_val = 12
    p = predict.predict(res, [0.0625, 2.0, 0.5], n_seeds=n_val)
    assert p["fitted_utds"] == [0.125, 0.25, 0.5, 1.0]
    k = np.log(1000 / (1000 - 800.0))
    for h in p["held_out"]:
        top = h["thresholds"][-1]
        assert top["D"] == pytest.approx(k * tau(h["sigma"]), rel=0.1)
        lo, hi = top["D_ci95"]
        assert lo < top["D"] < hi and hi / lo < 2.0
        flo, fhi = top["D_ci95_fit_only"]  # a measurement's own seed noise widens the fit's interval
        assert lo <= flo and fhi <= hi
    val = tmp_path / "val"
    for s in (0.0625, 2.0, 0.5):
        for seed in range(100, 100 + n_val):  # fresh seeds
            write_run(str(val / ("u%g_s%d" % (s, seed))), s, seed, every=50, noise=30.0)
    measured, _, _ = predict.measure_inputs(
        [str(val)], p["thresholds"], {"synth": RMAX}, {"synth": RMIN}, "eval", 20, interpolate=True
    )
    assert all(t["resolution"] == 50.0 for m in measured for t in m["thresholds"] if t["D"])
    g = predict.grade(p, measured)
    s = g["summary"]
    assert s["n_measured"] == 4  # 0.0625 and 2.0 at the top two thresholds; 0.5 is in-sample
    assert s["median_abs_rel_error"] < 0.1 and s["max_interval_ratio"] < 2.0
    assert g["calibration"]["n"] == 6 and g["calibration"]["coverage"] >= 0.5
    assert [r["in_sample"] for r in g["rows"] if r["sigma"] == 0.5] == [True] * 3
    assert g["in_sample_summary"]["n_measured"] == 2
    word, why = verdict(s, g["calibration"], [])
    assert word in ("trust", "use with care"), why
    assert headline(p, g)[0].startswith("**Verdict: ")
    assert verdict(s, g["calibration"], ["v/run"])[0] == "do not trust"  # a replay voids the grade


def _spec(tmp_path, **kw):
    return study.load_spec(PENDULUM, ["out=%s" % (tmp_path / "s")] + ["%s=%s" % kv for kv in kw.items()])


def _keys(d):
    from pql_scaling.experiments import sweep

    return {
        tuple(sorted(a for a in r.overrides if not a.startswith(("run_dir=", "wandb."))))
        for r in sweep.expand(sweep.load_spec(d))
    }


@pytest.fixture(scope="module")
def pend(tmp_path_factory):
    return _spec(tmp_path_factory.mktemp("pend"))


def test_validation_runs_never_replay_a_fitted_run(pend, tmp_path):
    spec = pend
    seeds = {"fitted": 6, "validate": 4}  # few seeds: every run's config is built and checked (~50 ms each)
    fitted_seeds, val_seeds = stage_seeds(spec, "fitted", seeds), stage_seeds(spec, "validate", seeds)
    assert len(val_seeds) == 4 and not set(val_seeds) & set(fitted_seeds)
    assert min(val_seeds) > max(stage_seeds(spec, "fitted", {"fitted": spec.seeds_max}))
    # even at a fitted UTD, with the fitted stage's run length, no validation run is a fitted run
    z = {"utd": [0.25, 1.0], "max_env_steps": [16000, 8000]}
    fitted = _keys(_sweep_dict(spec, "fitted", rules="__skip__", seeds=seeds))
    val = _keys(_sweep_dict(spec, "validate", rules="__skip__", zip_=z, seeds=seeds))
    assert len(val) == 2 * 4 and not fitted & val
    # the check the grade records finds a replay when there is one
    state = {"seeds": seeds}
    replay = _sweep_dict(spec, "fitted", rules="__skip__", seeds=seeds)
    assert stages._replays(spec, state, None, replay)
    assert (
        stages._replays(
            spec, state, None, _sweep_dict(spec, "validate", rules="__skip__", zip_=z, seeds=seeds)
        )
        == []
    )
    with pytest.raises(study.StudyError, match="replays it"):
        _spec(tmp_path, **{"validate.seeds": "[3,500]"})
    with pytest.raises(study.StudyError, match="time_budget_s"):
        _spec(tmp_path, time_budget_s=0)
    # seed_base: an independent replicate of the study shares no seed with the base-0 one, and keeps its own
    # validation seeds above its fitted ones
    rep = _spec(tmp_path, seed_base=1000)
    assert stage_seeds(rep, "grid") == [1000, 1001, 1002, 1003]
    assert stage_seeds(rep, "fitted", seeds) == list(range(1000, 1006))
    assert stage_seeds(rep, "validate", seeds) == list(range(1000 + rep.seeds_max, 1004 + rep.seeds_max))
    with pytest.raises(study.StudyError, match="seed_base"):
        _spec(tmp_path, seed_base=-1)


def test_a_population_per_configuration_when_the_config_allows(pend, monkeypatch):
    spec = pend
    d = _sweep_dict(spec, "fitted", rules="__skip__", seeds={"fitted": 24})
    assert d["launcher"]["population"] == 24 and len(d["seeds"]) == 24
    with monkeypatch.context() as m:  # a backend without populations: one process per seed
        m.setattr(spec, "base", dict(spec.base, **{"backend": "gymnasium"}))
        assert (
            _sweep_dict(spec, "fitted", rules="__skip__", seeds={"fitted": 24})["launcher"]["population"] == 1
        )
    # a task whose default run has no length (mountaincar stops on time): the stage gives it per UTD
    mc = study.load_spec(os.path.join(HERE, "..", "studies", "mountaincar_cpu.yaml"))
    assert _sweep_dict(mc, "fitted", rules="__skip__", seeds={"fitted": 12})["launcher"]["population"] == 12
    assert stages._base_cfg(mc).num_envs == 64  # what prediction and evaluation spacing read
    with (
        monkeypatch.context()
    ) as m:  # a Ray or SLURM worker's memory sizes its populations (the sweep's auto)
        m.setattr(spec.launcher, "kind", "ray")
        assert (
            _sweep_dict(spec, "fitted", rules="__skip__", seeds={"fitted": 24})["launcher"]["population"]
            == "auto"
        )
    monkeypatch.setattr(spec, "population", 5)
    assert _sweep_dict(spec, "fitted", rules="__skip__", seeds={"fitted": 24})["launcher"]["population"] == 5


def test_auto_seeds_fit_the_time_left_by_the_measured_cost_model(pend, monkeypatch):
    spec = pend
    monkeypatch.setattr(spec, "time_budget_s", 1000.0)
    monkeypatch.setattr(spec, "seeds_min", 2)
    monkeypatch.setattr(spec, "seeds_max", 100)
    a, r = 1e-4, 6.0  # s per member env step at sigma = 0, and the update share
    runs = []
    for s in (0.0625, 0.5):  # one population of 4 members per UTD: 4 run directories sharing its clock
        d = 20000.0
        runs += [{"sigma": s, "env_steps": d, "members": 4, "wall_s": 4 * d * a * (1 + r * s)}] * 4
    assert costs.update_ratio(runs) == pytest.approx(r)
    monkeypatch.setattr(costs, "run_costs", lambda _runs: runs)
    stage_s = 60.0
    configs = [(0.0625, 32000), (0.125, 20000), (0.25, 16000), (0.5, 10000)]
    n, how = costs.choose_seeds(spec, configs, [([object()], stage_s)], spent_s=100.0, share=0.5)
    k = stage_s * 2 / sum(c["env_steps"] * (1 + r * c["sigma"]) for c in runs)  # 2 populations in parallel
    per_seed = k * sum(d * (1 + r * s) for s, d in configs) / 2
    assert n == int(0.5 * 900 // per_seed) and how["limited_by"] == "budget"
    assert how["predicted_stage_s"] <= 0.5 * 900 < how["predicted_stage_s"] + per_seed
    monkeypatch.setattr(spec, "time_budget_s", 120.0)
    monkeypatch.setattr(spec, "seeds_min", 8)
    assert (
        costs.choose_seeds(spec, configs, [([object()], stage_s)], 100.0, 0.5)[1]["limited_by"] == "seeds_min"
    )


def test_sigma_star_is_judged_across_seeds_with_the_aggregates():
    from pql_scaling.analysis.grade import _seed_aggregates

    rng = np.random.default_rng(0)
    star = {"sigma": 0.25, "seed_returns": list(900 + 10 * rng.standard_normal(20))}
    worse = {"sigma": 0.125, "seed_returns": list(850 + 10 * rng.standard_normal(20))}
    alike = {"sigma": 0.5, "seed_returns": list(900 + 10 * rng.standard_normal(20))}
    agg = _seed_aggregates(star, [worse, alike])
    assert agg["p_sigma_star_better"]["0.125"][1][0] > 0.9  # a sigma* seed beats a worse UTD's almost surely
    assert agg["sigma_star_holds"] and agg["iqm_at_F"]["0.25"][0] == pytest.approx(0.9, abs=0.01)
    better = {"sigma": 0.5, "seed_returns": list(950 + 10 * rng.standard_normal(20))}
    assert not _seed_aggregates(star, [worse, better])["sigma_star_holds"]


def test_the_cost_model_counts_evaluations_apart_and_waits_for_the_longest_population(pend, monkeypatch):
    spec = pend
    monkeypatch.setattr(spec, "time_budget_s", 10000.0)
    monkeypatch.setattr(spec, "seeds_min", 1)
    monkeypatch.setattr(spec, "seeds_max", 1000)
    a, e = 1e-4, 0.01  # s per member env step (no update share: r = 0), s per member evaluation
    runs = []
    for s, pid in ((0.0625, "p1"), (0.5, "p2")):  # two populations of 4, 50 evaluations each
        d, k = 20000.0, 4
        base = {"sigma": s, "env_steps": d, "members": k, "population": pid, "evals": 50, "wall_s": k * d * a}
        runs += [dict(base, eval_s=k * 50 * e)] * k
    assert costs.eval_cost(runs) == (pytest.approx(e), pytest.approx(2 * 4 * 50 * e))
    monkeypatch.setattr(costs, "run_costs", lambda _runs: runs)
    stage_s = (4 * 20000 * a + 4 * 50 * e) * 2 / 2  # both populations at once on 2 processes
    configs = [(0.125, 10000, 1000), (0.25, 10000, 1000)]  # 10 evaluations per run each
    _, how = costs.choose_seeds(spec, configs, [([object()], stage_s)], 0.0, 0.5)
    assert how["seconds_per_work"] == pytest.approx(a) and how["seconds_per_member_eval"] == pytest.approx(e)
    assert how["predicted_s_per_seed"] == pytest.approx((2 * 10000 * a + 20 * e) / 2)
    dense = [(s, d, 100) for s, d, _ in configs]  # 100 evaluations per run: more of the budget goes to them
    _, how_dense = costs.choose_seeds(spec, dense, [([object()], stage_s)], 0.0, 0.5)
    assert how_dense["predicted_s_per_seed"] == pytest.approx((2 * 10000 * a + 200 * e) / 2)
    # one long population: the stage waits for it, however idle the other process is
    skew = [(0.125, 100000, 0), (0.25, 1000, 0), (0.5, 1000, 0)]
    _, how_skew = costs.choose_seeds(spec, skew, [([object()], stage_s)], 0.0, 0.5)
    assert how_skew["predicted_s_per_seed"] == pytest.approx(100000 * a)
    # configurations that share a UTD are one run: the longest, evaluated as finely as the finest asks
    same = [(0.25, 8000, 800), (0.25, 10000, 1000)]
    _, how_same = costs.choose_seeds(spec, same, [([object()], stage_s)], 0.0, 0.5)
    assert how_same["evaluations_per_seed"] == 12 and how_same["predicted_s_per_seed"] == pytest.approx(
        10000 * a + 12 * e
    )


def test_the_noise_floor_reads_errors_against_the_intervals():
    """Synthetic rows with a known log-space spread sigma and nominal 95% intervals of +-1.96 sigma: the floor is
    the median |error| of an unbiased prediction, the standardised errors have rms 1, and a bias shows in their
    mean in interval units; intervals twice too narrow give rms 2."""
    from pql_scaling.analysis.grade import Z95, noise_floor

    rng = np.random.default_rng(0)
    sigma, n = 0.15, 4000

    def rows(bias=0.0, claimed=sigma):
        pred = np.exp(rng.uniform(7, 10, n))
        meas = pred * np.exp(-bias - sigma * rng.standard_normal(n))
        lo, hi = pred * np.exp(-Z95 * claimed), pred * np.exp(Z95 * claimed)
        return [
            {"D_pred": p, "D_meas": m, "D_pred_lo": a, "D_pred_hi": b}
            for p, m, a, b in zip(pred, meas, lo, hi)
        ]

    f = noise_floor(rows())
    assert f["median_abs_rel_error_if_unbiased"] == pytest.approx(np.expm1(0.6745 * sigma), rel=1e-3)
    errs = [abs(r["D_pred"] / r["D_meas"] - 1) for r in rows()]
    assert np.median(errs) == pytest.approx(f["median_abs_rel_error_if_unbiased"], rel=0.08)
    assert f["z_rms"] == pytest.approx(1.0, abs=0.05) and abs(f["z_mean"]) < 0.05
    assert noise_floor(rows(bias=0.075))["z_mean"] == pytest.approx(0.5, abs=0.05)
    assert noise_floor(rows(claimed=sigma / 2))["z_rms"] == pytest.approx(2.0, abs=0.1)
    assert noise_floor([{"D_pred": 1.0, "D_meas": None, "D_pred_lo": None, "D_pred_hi": None}])["n_z"] == 0


def test_a_failed_stage_keeps_its_timings_for_the_rerun(tmp_path, monkeypatch):
    """A study stopped after a stage's runs (here: its analysis fails) keeps their time in study.json, so the
    rerun's `seeds: auto` costs the next stage on the time the runs took, not on a resumed sweep's seconds."""
    from pql_scaling.experiments.sweep.state import read_json

    spec = _spec(tmp_path)

    class Fits:
        fits = {}

    def grid(spec, timings, state):
        timings["grid_runs"] = timings.get("grid_runs", 0.0) + 100.0
        return Fits()

    def fitted(spec, rules, timings, state):
        timings["fitted_runs"] = timings.get("fitted_runs", 0.0) + 600.0
        raise study.StudyError("the fitted analysis failed")

    monkeypatch.setattr(stages, "_grid", grid)
    monkeypatch.setattr(stages, "_fitted", fitted)
    with pytest.raises(study.StudyError):
        stages.run(spec)
    assert read_json(os.path.join(spec.out, "study.json"))["timings_s"] == {
        "grid_runs": 100.0,
        "fitted_runs": 600.0,
    }


def test_a_law_the_data_do_not_follow_widens_the_prediction_interval(law_runs, tmp_path, monkeypatch):
    """The seed bootstrap moves the fit with the seed noise but cannot see a curve the law misses: the
    prediction interval adds the fit's residual variance (predict.misfit), small for runs of the exact law,
    large where one fitted UTD needs 1.5x the law's data."""
    import tests.test_study_analysis as synth

    exact = pipeline.run_analysis(_cfg(law_runs))
    monkeypatch.setattr(synth, "tau", lambda s: tau(s) * (1.5 if s == 0.25 else 1.0))
    for s in (0.125, 0.25, 0.5, 1.0):
        for seed in range(12):
            write_run(str(tmp_path / ("u%g_s%d" % (s, seed))), s, seed, params=1e4, every=200, noise=30.0)
    bent = pipeline.run_analysis(_cfg(str(tmp_path)))
    m_exact, m_bent = predict.misfit(exact), predict.misfit(bent)
    print("misfit exact %.4f bent %.4f" % (m_exact, m_bent))
    assert m_exact < 0.05 and m_bent > 0.1
    p = predict.predict(bent, [2.0], n_seeds=12)
    assert p["misfit_log_sd"] == m_bent and "lack of fit" in p["interval"]
    top = p["held_out"][0]["thresholds"][-1]
    (lo, hi), (flo, fhi) = top["D_ci95"], top["D_ci95_fit_only"]
    assert np.log(hi / lo) > 2 * 1.8 * m_bent > np.log(fhi / flo)  # at least the misfit's own 95% width


def test_a_law_that_bends_outside_the_fitted_range_widens_extrapolated_intervals(tmp_path, monkeypatch):
    """The misfit says how far the law misses inside its range; a curve that bends at the edge of it makes
    the leave-one-UTD-out refits miss the edge UTDs, and predict.extrapolation turns that miss into an sd per
    unit of log UTD that widens intervals outside the range only (in-range ones keep their width). Runs of the
    exact law give a rate near 0."""
    import tests.test_study_analysis as synth

    utds = (0.0625, 0.125, 0.25, 0.5, 1.0)

    def runs(name):
        for s in utds:
            for seed in range(12):
                write_run(
                    str(tmp_path / name / ("u%g_s%d" % (s, seed))), s, seed, params=1e4, every=200, noise=30.0
                )
        return pipeline.run_analysis(_cfg(str(tmp_path / name)))

    exact = runs("exact")
    monkeypatch.setattr(synth, "tau", lambda s: tau(s) * (1.6 if s == 1.0 else 1.0))
    bent = runs("bent")
    r_exact, r_bent = predict.extrapolation(exact), predict.extrapolation(bent)
    print("extrapolation rates exact %s bent %s" % (r_exact, r_bent))
    assert max(r_exact.values()) < 0.1 and r_bent["above"] > 0.25
    p = predict.predict(bent, [0.35, 2.0], n_seeds=12)
    assert p["extrapolation_log_sd_per_log_utd"] == r_bent and "extrapolation error" in p["interval"]
    inside, outside = (h["thresholds"][-1] for h in p["held_out"])

    def log_width(row):
        lo, hi = row["D_ci95"]
        return np.log(hi / lo)

    # outside: at least the extrapolation term's own 95% width at distance log 2; inside: no such term
    assert log_width(outside) > 2 * 1.8 * r_bent["above"] * np.log(2.0) > log_width(inside)


def test_the_budget_return_approaches_the_plateau_the_fitted_runs_level_off_at(law_runs, tmp_path):
    """The return at budget F extrapolates the predicted (J, D_J) points above the top threshold. Runs that
    level off at 900 (Pendulum's at ~966) give predict.ceiling ~900 and a return at F near the true curve, inside
    its interval, where an approach to 1000 overshoots the plateau; runs that approach 1000 keep ~1000."""
    for s in (0.125, 0.25, 0.5, 1.0):
        for seed in range(12):
            write_run(
                str(tmp_path / ("u%g_s%d" % (s, seed))),
                s,
                seed,
                params=1e4,
                every=200,
                noise=30.0,
                plateau=900.0,
            )
    flat = pipeline.run_analysis(_cfg(str(tmp_path)))
    top, boot = predict.ceiling(flat, len(flat.state.boot_fits))
    lo, hi = predict.ci95(boot)
    print("ceiling %.1f [%.1f, %.1f]" % (top, lo, hi))
    assert top == pytest.approx(900.0, abs=9.0) and lo < 900.0 < hi and hi - lo < 20.0
    assert predict.ceiling(pipeline.run_analysis(_cfg(law_runs)))[0] > 985.0
    sigma = 0.35
    d = 4.0 * tau(sigma)  # past the top threshold's crossing (~2.3 tau at 900 (1 - e^-t))
    F = d * (float(flat.state.compute_fn(np.float64(sigma), 1.0)) + float(flat.fits["compute"]["delta"]))
    b = predict.budget_point(flat, F, sigma, n_seeds=12)
    truth = 900.0 * (1 - np.exp(-4.0))
    print("return at F %.1f %s, truth %.1f" % (b["return_at_F"], b["return_at_F_ci95"], truth))
    assert b["env_steps_for_F"] == pytest.approx(d)
    assert b["return_at_F"] == pytest.approx(truth, abs=15.0)
    assert b["return_at_F_ci95"][0] <= truth <= b["return_at_F_ci95"][1]
    assert b["return_ceiling"] == top
    rows = b["thresholds"]
    assert predict._return_at([r["J"] for r in rows], [r["D"] for r in rows], d) > 900.0  # the old ceiling


def test_a_budget_below_the_lowest_threshold_is_predicted_no_lower_than_the_runs_start(tmp_path):
    """Below the lowest threshold the return at F extrapolates the approach backwards. Curves that sit at 0
    for one tau before they climb (MountainCar's runs wait to find the goal) put the approach's line far
    above log(1000) at D = 0: a budget of 0.3 tau was predicted at ~-1000 (MountainCar's sigma*/2 leg:
    [-5950, 959]). The prediction and its interval are held at the return the runs start from (~0)."""
    for s in (0.125, 0.25, 0.5, 1.0):
        for seed in range(12):
            write_run(
                str(tmp_path / ("u%g_s%d" % (s, seed))), s, seed, params=1e4, every=200, noise=30.0, delay=1.0
            )
    res = pipeline.run_analysis(_cfg(str(tmp_path)))
    low = predict.start(res)
    print("start %.1f" % low)
    assert -40.0 < low < 20.0  # the min over 4 configurations of a 12-seed mean of N(0, 30)
    sigma = 0.35
    d = 0.3 * tau(sigma)  # still waiting: the true return is 0
    F = d * (float(res.state.compute_fn(np.float64(sigma), 1.0)) + float(res.fits["compute"]["delta"]))
    b = predict.budget_point(res, F, sigma, n_seeds=12)
    rows = b["thresholds"]
    unheld = predict._return_at([r["J"] for r in rows], [r["D"] for r in rows], d, b["return_ceiling"])
    print("return at F %.1f %s (without the floor %.1f)" % (b["return_at_F"], b["return_at_F_ci95"], unheld))
    assert unheld < -300.0  # the backward approach alone is absurd here
    assert b["return_floor"] == low and b["return_at_F"] == low
    assert b["return_at_F_ci95"][0] == low  # every resample is held there too
    # a budget past the thresholds is untouched by the floor
    F2 = 6.0 * F / 0.3
    assert predict.budget_point(res, F2, sigma, n_seeds=12)["return_at_F"] > 900.0


def test_validation_drops_the_most_expensive_held_out_utd_when_seeds_min_would_overrun(pend, monkeypatch):
    """seeds_min overrides the budget: HalfCheetah's held-out UTD 2 alone trained ~50 of its study's 80 minutes.
    With over_budget=drop the most expensive held-out UTD goes first (recorded with its predicted cost), the
    budget leg's runs stay, at least one held-out UTD is kept, and `run` keeps every one."""
    spec = pend
    monkeypatch.setattr(spec, "time_budget_s", 1000.0)
    monkeypatch.setattr(spec, "seeds_min", 4)
    monkeypatch.setattr(spec, "seeds_max", 32)
    a, r = 1e-4, 6.0
    runs = [
        {"sigma": s, "env_steps": 2e4, "members": 1, "wall_s": 2e4 * a * (1 + r * s)} for s in (0.0625, 0.5)
    ]
    monkeypatch.setattr(costs, "run_costs", lambda _runs: runs)
    measured = [([object()], 2e4 * a * (1 + r * 0.5))]
    held = [(0.18, 40000, 0), (2.0, 200000, 0), (4.0, 10000, 0)]  # UTD 2: by far the most work per seed
    budget = [(0.26, 30000, 0)]
    n, how, dropped = costs.choose_dropping(spec, held, budget, measured, 0.0, 0.5)
    assert [d["sigma"] for d in dropped] == [2.0] and how["dropped"] == [2.0]
    k = how["seconds_per_work"]
    assert dropped[0]["predicted_s"] == pytest.approx(4 * 2e5 * k * (1 + r * 2.0))
    assert "seeds_min=4" in dropped[0]["reason"] and "over_budget" in dropped[0]["reason"]
    assert how["predicted_stage_s"] <= how["budget_left_s"] and n >= 4
    # a tighter budget: every held-out UTD but one goes, the budget leg is never dropped
    monkeypatch.setattr(spec, "time_budget_s", 60.0)
    n, how, dropped = costs.choose_dropping(spec, held, budget, measured, 0.0, 0.5)
    assert [d["sigma"] for d in dropped] == [2.0, 4.0] and "0.26" in how["work_s_per_seed"]
    assert n == 4 and how["limited_by"] == "seeds_min"
    monkeypatch.setattr(spec.validate, "over_budget", "run")
    assert costs.choose_dropping(spec, held, budget, measured, 0.0, 0.5)[2] == []


def test_the_prediction_records_a_dropped_held_out_utd_and_the_report_names_it(
    law_runs, tmp_path, monkeypatch
):
    """stages._predict with validate.seeds=auto on a known law's fits: the measured costs make UTD 4 too
    expensive at seeds_min, so prediction.json keeps it under held_out_not_run (with its prediction), the runs
    launched are the others, and the report's first lines say so."""
    spec = _spec(tmp_path, time_budget_s=3000, seeds_min=4, seeds_max=32)
    os.makedirs(spec.out)
    monkeypatch.setattr(spec.validate, "utd", [0.0625, 4.0])
    res = pipeline.run_analysis(_cfg(law_runs))
    a, r = 1e-3, 6.0  # s per member env step, and the update share: UTD 4's run costs 25x a per step
    runs = [
        {"sigma": s, "env_steps": 2e4, "members": 4, "wall_s": 4 * 2e4 * a * (1 + r * s)}
        for s in (0.125, 1.0)
    ]
    monkeypatch.setattr(costs, "run_costs", lambda _runs: runs)
    state = {"seeds": {"grid": 1, "fitted": 12}, "seed_choice": {}}
    timings = {"grid_runs": 50.0, "fitted_runs": 4 * 2e4 * a * 7}
    p = stages._predict(spec, res, "__skip__", state, timings)
    assert [c["sigma"] for c in p["held_out"]] == [0.0625]
    (gone,) = p["held_out_not_run"]
    assert gone["sigma"] == 4.0 and gone["thresholds"] and "seeds_min=4" in gone["reason"]
    assert state["seed_choice"]["validate"]["dropped"] == [4.0] and p["n_seeds"] == state["seeds"]["validate"]
    assert os.path.exists(os.path.join(spec.out, "prediction.json"))
    g = {
        "summary": {
            "median_abs_rel_error": None,
            "max_abs_rel_error": None,
            "target_rel_error": 0.1,
            "top_thresholds": [800.0],
            "inside_interval": 0,
            "n_measured": 0,
        }
    }
    assert any("UTD 4 predicted but **not run**" in line for line in headline(p, g))
