"""Thresholds, isotonic learning curves and their crossings (docs/science.md 2.3), shared by every fit."""

import numpy as np

from ..errors import AnalysisInputError


def log_thresholds(lo=300.0, hi=800.0, n=10):
    """R1's thresholds: (1000 - J) log-spaced between 1000-lo and 1000-hi (300 ... 800 by default)."""
    return 1000.0 - np.logspace(np.log10(1000.0 - lo), np.log10(1000.0 - hi), n)


def isotonic(y):
    """Increasing isotonic regression (unit weights) of each row of y [..., T] over its index: scipy's
    PAVA (scipy.optimize.isotonic_regression, ~40 us for a 4000-point curve). R1 uses sklearn's
    IsotonicRegression on (step, return); steps are strictly increasing, so the fits are the same
    (tests/test_analysis_gym.py checks the crossings against sklearn on the Gym data)."""
    from scipy.optimize import isotonic_regression

    y = np.asarray(y, float)
    flat = y.reshape(-1, y.shape[-1])
    return np.stack([isotonic_regression(r).x for r in flat]).reshape(y.shape)


def crossing_index(y, thresholds):
    """First index where the isotonic fit of y [..., T] reaches each threshold -> int [..., K], -1 if
    never."""
    iso = isotonic(y)
    ok = iso[..., None, :] >= np.asarray(thresholds, float)[:, None]
    return np.where(ok.any(-1), ok.argmax(-1), -1)


def crossing_at(iso, steps, thresholds, interpolate=False):
    """Steps at which each row of a nondecreasing curve iso [..., T] first reaches each threshold ->
    [..., K] (NaN if never). interpolate=False: the first logged step at or above J (R1's rule: its
    resolution is the logging interval). interpolate=True: linear between that point and the one before it,
    the step where the isotonic fit's segment crosses J (a curve already above J at its first point gives
    that point)."""
    iso = np.asarray(iso, float)
    steps = np.asarray(steps, float)
    J = np.asarray(thresholds, float)
    ok = iso[..., None, :] >= J[:, None]  # [..., K, T]
    hit = ok.any(-1)
    k = ok.argmax(-1)  # [..., K]
    at = steps[k]
    if interpolate:
        k0 = np.clip(k - 1, 0, None)
        y0 = np.take_along_axis(iso, k0, -1)
        y1 = np.take_along_axis(iso, k, -1)
        with np.errstate(all="ignore"):
            frac = np.where((k > 0) & (y1 > y0), (J - y0) / (y1 - y0), 1.0)
        at = steps[k0] + np.clip(frac, 0.0, 1.0) * (steps[k] - steps[k0])
    return np.where(hit, at, np.nan)


def crossing_resolution(steps, crossing):
    """The logging interval a crossing lies in (the steps between the log points around it): what a
    crossing can resolve, reported next to it. NaN where there is no crossing."""
    steps = np.asarray(steps, float)
    d = np.asarray(crossing, float)
    i = np.clip(np.searchsorted(steps, np.nan_to_num(d, nan=steps[0]), side="left"), 1, len(steps) - 1)
    gap = steps[i] - steps[i - 1] if len(steps) > 1 else np.zeros_like(d)
    return np.where(np.isfinite(d), gap, np.nan)


def crossings(curves, thresholds, n_boot=0, rng=None, key="norm", interpolate=False):
    """D_J of each configuration: where the isotonic fit of the seed-mean curve reaches J (NaN if never;
    the first logged step, or interpolated between log points: `crossing_at`), plus `n_boot`
    seed-bootstrap resamples of the same. Returns point [n_cfg, K] and boot [n_cfg, n_boot, K]."""
    rng = np.random.default_rng(rng)
    K = len(thresholds)
    point = np.full((len(curves), K), np.nan)
    boot = np.full((len(curves), n_boot, K), np.nan)
    for i, c in enumerate(curves):
        y, steps = c[key], c["steps"]
        point[i] = crossing_at(isotonic(y.mean(1)), steps, thresholds, interpolate)
        if n_boot:
            s = y.shape[1]
            pick = rng.integers(0, s, size=(n_boot, s))  # resample seeds with replacement
            means = y[:, pick].mean(-1).T  # [n_boot, T]
            boot[i] = crossing_at(isotonic(means), steps, thresholds, interpolate)
    return point, boot


def normalise(curves, max_returns=None, min_returns=None):
    """R_norm = 1000 * (R - R_min) / (R_max - R_min); R_max from `max_returns` or the run's own r_max, R_min
    from `min_returns` (default 0, R1's 1000 R / R_max). A task with negative returns (Pendulum) needs
    both."""
    max_returns, min_returns = dict(max_returns or {}), dict(min_returns or {})
    missing = sorted(
        {
            c["task"]
            for c in curves
            if c["task"] not in max_returns and not np.isfinite(c.get("r_max", np.nan))
        }
    )
    if missing:
        raise AnalysisInputError(
            f"no R_max for task(s) {missing}: add them under `max_returns` in the config "
            f"(task: R_max, the return counted as 1000), or log r_max in the runs"
        )
    for c in curves:
        r, r0 = float(max_returns.get(c["task"], c.get("r_max"))), float(min_returns.get(c["task"], 0.0))
        if not r > r0:
            raise AnalysisInputError(
                f"task {c['task']}: R_max = {r:g} must be above R_min = {r0:g} "
                "(`max_returns` / `min_returns`; negative returns need a minimum)"
            )
        c["norm"] = 1000.0 * (c["returns"] - r0) / (r - r0)
    return curves


def crossing_steps(y, steps, J):
    """First step whose isotonic fit of each row of y [..., T] is >= J (NaN if never)."""
    idx = crossing_index(y, [J])[..., 0]
    return np.where(idx >= 0, np.asarray(steps, float)[np.clip(idx, 0, None)], np.nan)
