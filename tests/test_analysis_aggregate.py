"""Aggregate measures (analysis/aggregate.py, after Agarwal et al. 2021) against hand-computed values and scipy."""

import numpy as np
import pytest
from scipy import stats

from pql_scaling.analysis import aggregate as A


def test_iqm_mean_median_gap_known_values():
    x = np.arange(1.0, 9.0)  # 1..8: the middle half is 3, 4, 5, 6
    assert A.iqm(x) == 4.5 and A.iqm(np.array([0.0, 1.0, 2.0, 100.0])) == 1.5  # robust to the outlier
    assert A.optimality_gap(np.array([0.5, 1.5, 0.8])) == pytest.approx((0.5 + 0.0 + 0.2) / 3)
    # IQM of a [runs, tasks] set pools every score, as rliable's aggregate_iqm (trim_mean over all)
    scores = [np.array([0.1, 0.4, 0.5, 0.9]), np.array([0.2, 0.3, 0.6, 0.7])]
    est = A.interval_estimates(scores, reps=500, rng=0)
    assert est["IQM"][0] == pytest.approx(np.mean([0.3, 0.4, 0.5, 0.6]))
    assert est["mean"][0] == pytest.approx(0.4625) and est["median"][0] == pytest.approx(0.45)
    for p, (lo, hi) in est.values():
        assert lo <= p <= hi


def test_stratified_bootstrap_keeps_each_tasks_runs_in_their_task():
    """Task 0 scores 0, task 1 scores 1: a stratified resample always holds as many of each, so its mean is
    exactly 0.5 (an unstratified one would vary)."""
    scores = [np.zeros(5), np.ones(3)]
    boot = A.stratified_resamples(scores, 200, np.random.default_rng(0))
    assert boot.shape == (200, 8) and (boot[:, :5] == 0).all() and (boot[:, 5:] == 1).all()
    p, (lo, hi) = A.interval_estimates(scores, reps=200, rng=0)["mean"]
    assert p == lo == hi == pytest.approx(3 / 8)


def test_probability_of_improvement_known_values_and_mann_whitney():
    rng = np.random.default_rng(1)
    x = [rng.normal(0, 1, 10), rng.normal(0, 1, 7)]
    p, (lo, hi) = A.probability_of_improvement(x, x, reps=500, rng=0)
    assert p == 0.5 and lo < 0.5 < hi  # identical sets
    up = [s + 100 for s in x]
    assert A.probability_of_improvement(up, x, reps=100, rng=0)[0] == 1.0
    y = [rng.normal(0.5, 1, 6), rng.normal(0.5, 1, 9)]
    ref = np.mean([stats.mannwhitneyu(a, b).statistic / (len(a) * len(b)) for a, b in zip(x, y)])
    assert A.probability_of_improvement(x, y, reps=10, rng=0)[0] == pytest.approx(ref)
    ties = [np.array([1.0, 1.0]), np.array([0.0])]
    assert A.probability_of_improvement(ties, [np.array([1.0]), np.array([0.0, 1.0])], 10, 0)[0] == 0.5 * (
        0.5 + 0.25
    )
    with pytest.raises(ValueError, match="same tasks"):
        A.probability_of_improvement(x, x[:1])


def test_performance_profile():
    scores = [np.array([0.1, 0.5, 0.9, 1.2]), np.array([0.0, 1.0])]
    prof = A.profile(scores, [0.0, 0.5, 1.0])
    assert prof.tolist() == pytest.approx([(4 / 4 + 1 / 2) / 2, (2 / 4 + 1 / 2) / 2, (1 / 4 + 0) / 2])
    p, lo, hi = A.profile_with_ci(scores, np.linspace(0, 1.3, 14), reps=300, rng=0)
    assert (lo <= p + 1e-12).all() and (p <= hi + 1e-12).all() and (np.diff(p) <= 0).all()


def _curve(task, sigma, final, n_seeds=6, rng=None):
    steps = np.arange(1, 11) * 1000.0 * (2 if sigma < 2 else 1)  # low UTDs ran longer
    ret = np.linspace(0, final, len(steps))[:, None] + rng.normal(0, 20, (len(steps), n_seeds))
    return {"task": task, "sigma": sigma, "steps": steps, "norm": ret}


def test_compare_configurations_at_a_shared_budget():
    rng = np.random.default_rng(0)
    curves = [_curve(t, s, 300 + 100 * s, rng=rng) for t in ("a", "b", "c") for s in (1.0, 2.0, 4.0)]
    agg = A.compare(curves, "sigma", reps=500, seed=0)
    assert agg["tasks"] == ["a", "b", "c"] and agg["budget_env_steps"] == {
        "a": 10000.0,
        "b": 10000.0,
        "c": 10000.0,
    }
    rows = {r["sigma"]: r for r in agg["rows"]}
    # sigma = 1 ran to 20000 steps: it is scored at step 10000, its 5th of 10 points (400 * 4 / 9)
    assert rows[1.0]["mean"] == pytest.approx(0.4 * 4 / 9, abs=0.02) and rows[4.0]["mean"] == pytest.approx(
        0.7, abs=0.02
    )
    assert rows[1.0]["P_improve_vs_first"] == 0.5 and rows[4.0]["P_improve_vs_first"] == 1.0
    assert rows[1.0]["IQM_ci95"][0] < rows[1.0]["IQM"] < rows[1.0]["IQM_ci95"][1]
    assert A.table(agg).shape[0] == 3 and "IQM" in A.table(agg).columns
    assert (
        A.compare([c for c in curves if c["sigma"] == 1.0]) is None
    )  # one configuration: nothing to compare


def test_report_lines_for_the_study_report():
    rng = np.random.default_rng(0)
    agg = A.compare([_curve("a", s, 300 + 100 * s, rng=rng) for s in (1.0, 2.0)], reps=100)
    md = "\n".join(A.report_lines(agg, "fitted_analysis/aggregates.png", "UTDs of the fitted stage"))
    assert (
        "## UTDs of the fitted stage (Agarwal et al. 2021)" in md
        and "![](fitted_analysis/aggregates.png)" in md
    )
    assert "| sigma | runs | IQM |" in md and md.count("\n| 1 |") + md.count("\n| 2 |") == 2
    assert A.report_lines(None) == []
