"""Re-derive R1's published Gym fits (Rybkin et al. 2025) from its released learning curves.

Published numbers (github prestonfu/qscaled, MIT, commit a9a99d0):
- experiments/outputs/grid_proposed_hparams/gym_sweep/shared_fitted.csv: the batch sizes and learning rates
  R1 proposed from its shared-slope rules at sigma = 0.25 ... 16 (3 significant digits). An OLS fit of
  them gives the published rules: B* slope -0.3103, lr* slope -0.2850, and the per-task values at sigma = 1.
- experiments/2_fitted/gym_explore.ipynb (saved outputs, J = 800):
  "Ours: D_J = 2.17e+05 * (1 + (σ/2.29)**(-0.70))", "Baseline: D_J = 4.04e+05 * (1 + (σ/0.95)**(-1.41))"
  (printed as c*m, b, a of the normalised fit c + (σ/b)^-a), and "σ* = 2.62e-09 × F_J^0.62".
"""

import json
import os

import numpy as np
import pytest

from pql_scaling.analysis import fit, gym, load, pipeline

DATA = os.path.join(os.path.dirname(__file__), "data", "qscaled_gym")
UTDS = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
# shared_fitted.csv columns "Batch Size" and "Learning Rate", rows sigma = 0.25 ... 16
PUB_BS = {
    "Ant-v4": [638, 515, 415, 335, 270, 218, 176],
    "HalfCheetah-v4": [632, 510, 412, 332, 268, 216, 174],
    "Humanoid-v4": [481, 388, 313, 252, 203, 164, 132],
    "Walker2d-v4": [495, 400, 322, 260, 210, 169, 136],
}
PUB_LR = {
    "Ant-v4": [2.23e-4, 1.83e-4, 1.50e-4, 1.23e-4, 1.01e-4, 8.31e-5, 6.82e-5],
    "HalfCheetah-v4": [2.78e-3, 2.28e-3, 1.87e-3, 1.54e-3, 1.26e-3, 1.03e-3, 8.49e-4],
    "Humanoid-v4": [2.83e-4, 2.32e-4, 1.91e-4, 1.56e-4, 1.28e-4, 1.05e-4, 8.65e-5],
    "Walker2d-v4": [1.22e-3, 1.00e-3, 8.24e-4, 6.76e-4, 5.55e-4, 4.56e-4, 3.74e-4],
}


def _published_rule(values):
    tasks = [t for t in sorted(values) for _ in UTDS]
    return fit.shared_slope(tasks, UTDS * len(values), [v for t in sorted(values) for v in values[t]])


@pytest.fixture(scope="module")
def gym_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("gym")
    sweep, ours, base = gym.configs(DATA, str(out), bootstrap=100, plots=False)
    rs = pipeline.run_analysis(sweep).fits
    os.makedirs(sweep["out"])
    with open(os.path.join(sweep["out"], "fits.json"), "w") as fh:
        json.dump({"hparams": rs["hparams"]}, fh)
    # the published rule as a fits.json, to isolate the budget step from the sweep's bootstrap noise
    pub = {"hparams": {"batch_size": _published_rule(PUB_BS), "learning_rate": _published_rule(PUB_LR)}}
    with open(out / "published_fits.json", "w") as fh:
        json.dump(pub, fh)
    pub_cfg = {**ours, "hparam_fits": str(out / "published_fits.json"), "bootstrap": 0}
    return {
        "sweep": rs,
        "ours": pipeline.run_analysis(ours).fits,
        "base": pipeline.run_analysis(base).fits,
        "ours_pubrule": pipeline.run_analysis(pub_cfg).fits,
        "pub": pub["hparams"],
    }


def test_published_rule_numbers():
    """Guard on the numbers we compare against (read off R1's csv)."""
    b, l = _published_rule(PUB_BS), _published_rule(PUB_LR)
    assert b["slope"] == pytest.approx(-0.3103, abs=1e-3) and l["slope"] == pytest.approx(-0.2850, abs=1e-3)


@pytest.mark.parametrize("name,pub", [("batch_size", PUB_BS), ("learning_rate", PUB_LR)])
def test_sweep_rules_match_published(gym_results, name, pub):
    ours, ref = gym_results["sweep"]["hparams"][name], gym_results["pub"][name]
    # The bootstrap resamples differ from R1's (different RNG stream): across seeds 0-5 our slopes ranged
    # B* -0.305..-0.319 and lr* -0.264..-0.279, intercepts within 0.03 log10. Tolerances cover that.
    assert ours["slope"] == pytest.approx(ref["slope"], abs=0.03)
    lo, hi = ours["slope_ci95"]
    assert lo <= ref["slope"] <= hi
    for task, k in ref["intercepts"].items():
        assert ours["intercepts"][task] == pytest.approx(k, abs=0.05), task  # within 12 %


@pytest.mark.parametrize("key,dmin,b,a", [("ours", 2.17e5, 2.29, 0.70), ("base", 4.04e5, 0.95, 1.41)])
def test_data_efficiency_J800_matches_published(gym_results, key, dmin, b, a):
    row = gym_results[key]["data_efficiency"][-1]
    assert row["J"] == pytest.approx(800.0) and row["converged"]
    assert row["c"] * row["m"] == pytest.approx(dmin, rel=0.005)  # published to 3 digits
    assert row["b"] == pytest.approx(b, abs=0.006)
    assert row["a"] == pytest.approx(a, abs=0.006)
    assert row["D_min"] == pytest.approx(dmin, rel=0.005)
    lo, hi = row["alpha_ci95"]
    assert lo <= a <= hi


def test_budget_matches_published_with_published_rule(gym_results):
    s = gym_results["ours_pubrule"]["budget"]["sigma_star"]
    assert s["exponent"] == pytest.approx(0.62, abs=0.006)
    assert s["coef"] == pytest.approx(2.62e-9, rel=0.05)


def test_budget_with_own_sweep_rule_predicts_published_sigma_star(gym_results):
    s = gym_results["ours"]["budget"]["sigma_star"]
    F = np.logspace(np.log10(2e14), np.log10(8e14), 5)  # the budget range of R1's figure
    ours, pub = s["coef"] * F ** s["exponent"], 2.62e-9 * F**0.62
    assert np.all(np.abs(ours / pub - 1) < 0.15)
    assert gym_results["ours"]["budget"]["holdout_rel_error"] < 0.5


def test_crossings_equal_r1s_sklearn_isotonic():
    """We smooth with scipy's PAVA; R1 used sklearn's IsotonicRegression(out_of_bounds='clip') on
    (step, mean return): every crossing of every Gym curve must be the same."""
    from sklearn.isotonic import IsotonicRegression

    cs = fit.normalise(load.curves(load.load_qscaled(os.path.join(DATA, "gym_ours"))), gym.FITTED_MAX_RETURNS)
    J = fit.log_thresholds()
    for c in cs:
        y = c["norm"].mean(1)
        iso = IsotonicRegression(out_of_bounds="clip").fit(c["steps"], y).predict(c["steps"])
        ref = [int(np.argmax(iso >= j)) if (iso >= j).any() else -1 for j in J]
        assert fit.crossing_index(y, J).tolist() == ref


def test_sweep_lr_rule_matches_the_rule_r1_ran_gym_ours_with(gym_results):
    """The learning rates R1 actually ran `gym_ours` with (file names bs_B_lr_LR.npy) follow a shared-slope
    rule with slope -0.2714 and, at sigma = 1, Ant 1.47e-4, HalfCheetah 1.822e-3, Humanoid 1.89e-4,
    Walker2d 8.38e-4 (an earlier fit than the csv above, whose slope is -0.285). Our sweep rule lands on it:
    over bootstrap seeds 0-9 our slope was -0.264 ... -0.281 (mean -0.273), intercepts within 2 %."""
    ran = gym_results["ours"]["hparams_configured"]["learning_rate"]
    assert ran["slope"] == pytest.approx(-0.2714, abs=2e-4) and ran["r2"] > 0.999
    ours = gym_results["sweep"]["hparams"]["learning_rate"]
    assert ours["slope"] == pytest.approx(ran["slope"], abs=0.015)
    for task, k in ran["intercepts"].items():
        assert ours["intercepts"][task] == pytest.approx(k, abs=0.02), task  # within 5 %


def test_rules_equal_r1_code_on_r1s_own_bootstrap_resamples():
    """Given the exact resamples R1's code drew (tests/data/r1_reference/README.md), our bootstrap-corrected
    best values and shared-slope OLS give R1's printed rules to its 6 printed digits."""
    import pandas as pd

    ref = np.load(os.path.join(os.path.dirname(DATA), "r1_reference", "gym_sweep_boot_J800_seed42.npz"))
    rows = []
    for f in ref["files"]:
        utd, task, _, name = str(f).split("/")
        _, b, _, lr = name[:-4].split("_")
        rows.append({"task": task, "sigma": float(utd[4:]), "batch_size": float(b), "lr": float(lr)})
    meta = pd.DataFrame(rows)
    order = meta.sort_values(["task", "sigma", "batch_size", "lr"]).index.to_numpy()
    best = fit.best_hparams(
        meta.loc[order].reset_index(drop=True), np.zeros(len(meta)), ref["crossings"][order]
    )
    rb = fit.shared_slope(best.task, best.sigma, best.bs_boot)
    rl = fit.shared_slope(best.task, best.sigma, best.lr_boot)
    assert rb["slope"] == pytest.approx(-0.312427, abs=1e-6) and rl["slope"] == pytest.approx(
        -0.263646, abs=1e-6
    )
    for t, v in {
        "Ant-v4": 419.823005,
        "HalfCheetah-v4": 409.425949,
        "Humanoid-v4": 311.518780,
        "Walker2d-v4": 323.877796,
    }.items():
        assert 10 ** rb["intercepts"][t] == pytest.approx(v, abs=1e-5)
    for t, v in {
        "Ant-v4": 0.000145,
        "HalfCheetah-v4": 0.001837,
        "Humanoid-v4": 0.000189,
        "Walker2d-v4": 0.000817,
    }.items():
        assert 10 ** rl["intercepts"][t] == pytest.approx(v, abs=5e-7)


@pytest.mark.parametrize("key,exp", [("ours", "gym_ours"), ("base", "gym_baseline_utd2")])
def test_all_threshold_fits_equal_r1_code(gym_results, key, exp):
    """Every threshold's pooled fit equals what R1's code computes on the same data (reference file:
    tests/data/r1_reference/README.md): m exactly, a, b, c within 5e-5 (both are local optimisers)."""
    ref = json.load(
        open(os.path.join(os.path.dirname(DATA), "r1_reference", "gym_fitted_powerlaw_fits.json"))
    )[exp]
    rows = gym_results[key]["data_efficiency"]
    assert len(rows) == len(ref["fits_abc"]) == 10
    for row, (a, b, c) in zip(rows, ref["fits_abc"]):
        assert row["m"] == ref["median_median"]
        assert (row["a"], row["b"], row["c"]) == pytest.approx((a, b, c), abs=5e-5), row["J"]
