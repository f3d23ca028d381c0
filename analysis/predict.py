"""Predictions from fitted laws for configurations held out of every fit, and their grading against runs.

`predict(result, sigmas, budget)` takes `pipeline.run_analysis`'s AnalysisResult for the fitted stage (its
fits and its state: the D_J(sigma) fits of every bootstrap resample, the compute and budget functions) and
gives, for each held-out UTD, the predicted data D_J and compute C_J to each threshold with a bootstrap
interval (the fits of the seed-bootstrap resamples, docs/science.md 2.4: the interval covers the fit's uncertainty
from seed noise in the fitted runs, not the noise of the validation runs themselves); for a budget F above
every fitted one the budget-optimal sigma*(F) (from each resample's sigma*(F) fit) and the return its run
reaches with F (the predicted (J, D_J) points' exponential approach to the return the fitted runs level off at).
`measure` measures the runs; `grade` (analysis/grade.py) compares. Pure functions: the caller reads and writes files.
"""

import warnings

import numpy as np

from . import fit
from .errors import AnalysisInputError
from .grade import grade  # noqa: F401  (predict.grade: the study grades through this module)

Q = (2.5, 97.5)


def ci95(v):
    """95% percentile interval of the finite values; [None, None] with fewer than 5."""
    return fit.percentile_interval(v, Q, min_n=5)


def _fits(result):
    """(J, point fit, converged bootstrap fits) of every threshold whose D_J(sigma) fit converged."""
    st = result.state
    J = np.asarray(result.fits["thresholds"])
    return [
        (float(J[k]), st.point_fits[n], [b[n] for b in st.boot_fits if b[n].get("converged")])
        for n, k in enumerate(st.fit_j)
        if st.point_fits[n].get("converged")
    ]


def seed_noise(result, n_seeds):
    """The log-scale spread of a seed-mean crossing measured with `n_seeds` seeds, per fitted threshold: the
    standard deviation over the seed-bootstrap resamples of log D_J at each fitted configuration (median over
    configurations), scaled by sqrt(seeds in the fitted runs / n_seeds) (the spread of a mean). None without
    bootstrap resamples or without n_seeds."""
    st = result.state
    if not n_seeds or st.btimes is None or not len(st.btimes):
        return None
    fitted = [int(c["n_seeds"]) for c in st.chosen if c.get("n_seeds")]
    scale = np.sqrt(np.median(fitted) / float(n_seeds)) if fitted else 1.0
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sd = np.nanstd(np.log(st.btimes[..., st.fit_j]), 0)  # [n_task, n_utd, K_fit]
        per_j = np.nanmedian(sd.reshape(-1, sd.shape[-1]), 0)
    return np.where(np.isfinite(per_j), per_j, 0.0) * scale


def misfit(result):
    """The law's lack of fit on the log scale: the residual standard deviation of the point fits at the fitted
    configurations' crossings, sqrt(sum r^2 / (n - p)) with r = log(fit / measured) pooled over thresholds and p
    the fits' parameters (joint: one alpha and D_min and beta per threshold, 2K + 1; per threshold: 3 each). The
    seed bootstrap moves the fit with the seed noise but never widens it for a curve the law cannot follow; a
    regression's prediction interval adds this variance. None for several tasks (the fit is on pooled times)
    or too few points."""
    rows = [c for c in result.fits.get("crossings", []) if c.get("D_J") and c["D_J"] > 0]
    if len({c.get("task") for c in rows}) != 1:
        return None
    fits = {j: f for j, f, _ in _fits(result)}
    r = [
        np.log(float(fit.d_of_sigma(fits[c["J"]], c["sigma"])) / c["D_J"])
        for c in rows
        if c["J"] in fits and c.get("sigma")
    ]
    k = len(fits)
    p = 2 * k + 1 if result.fits.get("config", {}).get("dj_fit") == "joint" else 3 * k
    r = np.asarray(r, float)
    r = r[np.isfinite(r)]
    return float(np.sqrt(np.sum(r**2) / (len(r) - p))) if len(r) > p else None


def _refit(result, keep):
    """The D_J(sigma) point fits (the study's kind: per threshold or joint) on the fitted UTDs `keep` only."""
    st = result.state
    utds, times = st.utds[keep], st.times[:, keep][..., st.fit_j]
    if result.fits.get("config", {}).get("dj_fit") == "joint":
        return fit.data_efficiency_joint(utds, times)
    return fit.data_efficiency(utds, times, top_k=4)


def extrapolation(result):
    """How fast the law's error grows outside its fitted UTD range, learned from the fitted runs themselves at
    the edge one extrapolates across (leave one UTD out, as a forecast is checked from rolling origins in the
    direction it runs): the point fit made without the highest fitted UTD predicts that UTD's measured
    crossings, and the rms over the thresholds of log(predicted / measured) / |log(left-out UTD / nearest kept
    UTD)| is the sd in log D per unit of log sigma above the range; likewise the lowest for below it. A law can
    bend differently at its two ends (Pendulum's D_J(sigma) flattens below 1/16 and keeps falling above 1/2), so
    one edge's miss says little about the other's. `misfit` says how far the law misses inside its range; a UTD
    outside it at distance |log(sigma / edge)| adds its side's rate times that distance. Returns {"above": rate,
    "below": rate}, a side without a converged refit taking the other's; None with fewer than 5 UTDs (a refit
    needs 4), several tasks, or no converged refit."""
    st = result.state
    if st.times is None or st.times.shape[0] != 1 or len(st.utds) < 5:
        return None
    order = np.argsort(st.utds)
    out = {}
    for side, out_i, near_i in (("above", order[-1], order[-2]), ("below", order[0], order[1])):
        keep = np.array([i for i in range(len(st.utds)) if i != out_i])
        dist = abs(np.log(st.utds[out_i] / st.utds[near_i]))
        rates = []
        for n, f in enumerate(_refit(result, keep)):
            measured = float(st.times[0, out_i, st.fit_j[n]])
            if not f.get("converged") or not np.isfinite(measured) or measured <= 0:
                continue
            with np.errstate(all="ignore"):
                pred = float(fit.d_of_sigma(f, st.utds[out_i]))
            if np.isfinite(pred) and pred > 0:
                rates.append(np.log(pred / measured) / dist)
        out[side] = float(np.sqrt(np.mean(np.square(rates)))) if rates else None
    if out["above"] is None and out["below"] is None:
        return None
    return {k: v if v is not None else out["below" if k == "above" else "above"] for k, v in out.items()}


def _outside(result, sigma):
    """|log(sigma / nearest fitted UTD)| for a UTD outside the fitted range, 0 inside it."""
    lo, hi = float(result.state.utds.min()), float(result.state.utds.max())
    return abs(np.log(sigma / lo)) if sigma < lo else abs(np.log(sigma / hi)) if sigma > hi else 0.0


def _interval(log_d, noise_sd, rng):
    """95% interval of a new measurement: the fits' bootstrap values (log D) plus the seed noise of the
    measurement itself (Gaussian in log D, 20 draws per resample)."""
    log_d = np.asarray(log_d, float)
    log_d = log_d[np.isfinite(log_d)]
    if not noise_sd or len(log_d) < 5:
        return ci95(np.exp(log_d))
    draws = log_d[:, None] + noise_sd * rng.standard_normal((len(log_d), 20))
    return ci95(np.exp(draws.ravel()))


def data_to(result, sigma, n_seeds=None, rng=0):
    """Predicted D_J and C_J at UTD sigma for every converged threshold fit, with bootstrap intervals. With
    n_seeds, the interval is for a measurement with that many seeds (the fit's uncertainty plus the seed-mean
    noise, `seed_noise`); without, for the fitted curve alone."""
    rng = np.random.default_rng(rng)
    noise = seed_noise(result, n_seeds)
    lack = misfit(result) if noise is not None else None
    if lack is not None:  # independent errors: the variances add
        noise = np.sqrt(noise**2 + lack**2)
    rates = extrapolation(result) if noise is not None and _outside(result, sigma) else None
    rate = rates and rates["above" if sigma > result.state.utds.max() else "below"]
    if rate is not None:
        noise = np.sqrt(noise**2 + (rate * _outside(result, sigma)) ** 2)
    out = []
    for n, (j, f, boot) in enumerate(_fits(result)):
        d = float(fit.d_of_sigma(f, sigma))
        bd = np.array([fit.d_of_sigma(b, sigma) for b in boot], float)
        with np.errstate(all="ignore"):
            lbd = np.log(np.where(bd > 0, bd, np.nan))
        row = {"J": j, "D": d, "D_ci95": _interval(lbd, None if noise is None else noise[n], rng)}
        if noise is not None:
            row["D_ci95_fit_only"] = ci95(bd)
        if result.fits["compute"].get("formula"):
            c = result.state.compute_fn
            row.update(
                C=float(c(np.float64(sigma), d)),
                C_ci95=ci95(c(np.float64(sigma), bd)) if len(bd) else [None, None],
            )
        out.append(row)
    return out


def _sigma_star_fit(points, k):
    return fit.budget_fit([o["F"] for o in points], [o["sigma"] for o in points], k)


def _return_at(js, ds, d, top=1000.0, floor=-np.inf):
    """J reached after d transitions along predicted (J, D_J) points: top - J = A exp(-D / tau) fitted in
    log(top - J) vs D (a learning curve's exponential approach to the return the runs level off at, `ceiling`;
    1000, the normalised maximum, when unknown), so it extrapolates above the top threshold. Below the lowest
    threshold the approach is no model of a curve that starts late (its log(top - J) line meets D = 0 far
    above log(top)), so the answer is held at `floor`, the return the runs start from (`start`)."""
    js, ds = np.asarray(js, float), np.asarray(ds, float)
    ok = np.isfinite(ds) & (ds > 0) & (js < top)
    if ok.sum() < 2 or not np.isfinite(top):
        return np.nan
    p = np.polyfit(ds[ok], np.log(top - js[ok]), 1)
    return float(max(top - np.exp(np.polyval(p, d)), floor))


def start(result):
    """The lowest return (normalised) any chosen configuration's seed-mean curve starts from: its first
    logged point, before learning has moved it much. No curve that learns at all falls below where it
    started, so a budget too small to reach the lowest threshold is predicted no lower (MountainCar's
    sigma*/2 leg had a return interval of [-5950, 959] without it). -inf without curves."""
    firsts = []
    for c in result.state.chosen:
        if c.get("norm") is not None:
            m = _seed_mean(c)
            m = m[np.isfinite(m)]
            if len(m):
                firsts.append(float(m[0]))
    return min(firsts) if firsts else -np.inf


def _seed_mean(curve, cols=slice(None)):
    """The seed-mean normalised curve over these seeds' columns; NaN where none of them logged."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.asarray(curve["norm"], float)[:, cols], 1)


def _approach(steps, y):
    """J_inf of J(D) = J_inf - A exp(-D / tau) fitted (least squares) to one seed-mean curve, J_inf bounded by
    the normalised maximum 1000; nan when the fit fails. A curve still climbing gives a J_inf near 1000 (or at
    it), a curve that has levelled off its plateau."""
    from scipy.optimize import curve_fit

    ok = np.isfinite(y)
    x, y = np.asarray(steps, float)[ok], np.asarray(y, float)[ok]
    if len(x) < 4:
        return np.nan
    span = x[-1] - x[0]
    top = min(y.max(), 1000.0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p, _ = curve_fit(
                lambda t, j, a, tau: j - a * np.exp(-(t - x[0]) / tau),
                x,
                y,
                p0=(top, max(top - y[0], 1.0), span / 3 + 1),
                bounds=((y.min(), 0.0, 1e-3 * span + 1e-9), (1000.0, np.inf, 100 * span + 1)),
                maxfev=2000,
            )
    except (RuntimeError, ValueError):
        return np.nan
    return float(p[0])


def ceiling(result, n_boot=None, rng=0):
    """The return (normalised 0-1000) the fitted runs level off at: per fitted configuration, J_inf of an
    exponential approach fitted to its seed-mean curve from where it first reaches the lowest fitted
    threshold, the median over configurations. The budget leg's return at F extrapolates the predicted
    (J, D_J) points above the top threshold; towards 1000 it predicts a return the task may never give
    (Pendulum's runs level off at ~966: an approach to 1000 put the budget leg's return at 995 [990, 998],
    measured 966). Returns (J_inf, [J_inf per seed-bootstrap resample] or None without n_boot); (1000, None)
    without curves or for several tasks (pooled curves have no one plateau)."""
    st = result.state
    curves = [c for c in st.chosen if c.get("norm") is not None]
    js = [j for j, _, _ in _fits(result)]
    if not curves or not js or len({c.get("task") for c in curves}) != 1:
        return 1000.0, None
    lo = min(js)

    def one(cols):
        tops = []
        for c, idx in zip(curves, cols):
            m = _seed_mean(c, idx)
            # a gap in the seed mean (no seed logged there) never counts as a crossing
            k = fit.crossing_index(np.where(np.isfinite(m), m, -1e9), [lo])[0]
            if k >= 0:
                tops.append(_approach(np.asarray(c["steps"])[k:], m[k:]))
        tops = np.asarray(tops, float)
        return float(np.nanmedian(tops)) if np.isfinite(tops).any() else 1000.0

    if st.ceiling is not None and st.ceiling[0] == (n_boot, rng):
        return st.ceiling[1]
    point = one([np.arange(np.shape(c["norm"])[1]) for c in curves])
    g = np.random.default_rng(rng)
    n = [np.shape(c["norm"])[1] for c in curves]
    out = point, [one([g.integers(0, k, k) for k in n]) for _ in range(n_boot)] if n_boot else None
    st.ceiling = (n_boot, rng), out
    return out


def safe_power(coef, F, exponent):
    """coef * F^exponent in float64 (a wild bootstrap resample's exponent overflows to inf, not
    OverflowError)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.float64(coef) * np.float64(F) ** np.float64(exponent))


def predict(result, sigmas, budget=None, budget_factor=4.0, n_seeds=None):
    """Predictions for held-out UTDs `sigmas`, and for a budget (default: budget_factor x the largest fitted
    budget optimum) the budget-optimal UTD, its D_J / C_J and the return reached. With n_seeds (the validation
    runs' seeds per configuration) the D_J intervals are prediction intervals for such a measurement
    (`data_to`). Returns a JSON-able dict."""
    if not _fits(result):
        raise AnalysisInputError(
            "no converged D_J(sigma) fit to predict from: the fitted stage needs >= 4 "
            "UTDs that reach the thresholds"
        )
    utds = result.state.utds
    lo, hi = float(utds.min()), float(utds.max())
    noisy = seed_noise(result, n_seeds) is not None  # a measurement's interval: the seed noise and the misfit
    lack = misfit(result) if noisy else None
    rate = extrapolation(result) if noisy else None
    out = {
        "fitted_utd_range": [lo, hi],
        "fitted_utds": [float(u) for u in utds],
        "thresholds": [j for j, _, _ in _fits(result)],
        "held_out": [],
        "interval": "95% percentile interval over the seed-bootstrap resamples' fits"
        + (", plus the seed-mean noise of a measurement with %d seeds" % n_seeds if noisy else "")
        + (" and the law's lack of fit (residual sd %.3g in log D)" % lack if lack is not None else "")
        + (
            "; outside the fitted UTDs, its extrapolation error (sd %.3g above the range and %.3g below it in log "
            "D per unit of log UTD, leave-one-UTD-out at that edge) times the distance"
            % (rate["above"], rate["below"])
            if rate is not None
            else ""
        ),
        "n_seeds": n_seeds,
        "misfit_log_sd": lack,
        "extrapolation_log_sd_per_log_utd": rate,
    }
    for s in sigmas:
        out["held_out"].append(
            {
                "kind": "utd",
                "sigma": float(s),
                "outside_fitted_range": not lo <= s <= hi,
                "thresholds": data_to(result, float(s), n_seeds),
            }
        )
    b = result.fits.get("budget", {})
    if "points" in b and "sigma_star" in b:
        out["budget"] = _budget_prediction(result, b, budget, budget_factor, lo, hi, n_seeds)
    return out


def _budget_prediction(result, b, budget, budget_factor, lo, hi, n_seeds=None):
    """The budget-optimal UTD for budget F (above every fitted one), its D_J / C_J and the return reached."""
    st = result.state
    Fmax = max(o["F"] for o in b["points"])
    F = float(budget) if budget is not None else budget_factor * Fmax
    if F <= Fmax:
        raise AnalysisInputError(f"budget {F:.3g} is not above every fitted budget optimum (max {Fmax:.3g})")
    ss = safe_power(b["sigma_star"]["coef"], F, b["sigma_star"]["exponent"])
    boot_s = []
    k = int(b["holdout_top_k"])
    for r in st.boot_fits:
        pts = [st.budget_optimum_fn(r[n]) for n in range(len(r)) if r[n].get("converged")]
        try:
            g = _sigma_star_fit(pts, k)
            boot_s.append(safe_power(g["coef"], F, g["exponent"]))  # inf for a wild resample: ci95 drops it
        except AnalysisInputError:
            pass
    return {
        "F": F,
        "largest_fitted_F": Fmax,
        "sigma_ci95": ci95(boot_s),
        "outside_fitted_range": not lo <= ss <= hi,
        **budget_point(result, F, ss, n_seeds),
    }


def budget_point(result, F, sigma, n_seeds=None, kind="budget"):
    """What a run at UTD sigma does with budget F: the env steps F buys there (F = C(sigma, D) + delta D grows
    linearly in D at fixed sigma), its D_J / C_J, and the return reached after those steps with a bootstrap
    interval (the fits' resamples)."""
    st = result.state
    rows = data_to(result, sigma, n_seeds)
    delta = float(result.fits["compute"]["delta"])
    d_budget = F / (float(st.compute_fn(np.float64(sigma), 1.0)) + delta)
    top, btop = ceiling(result, len(st.boot_fits))
    low = start(result)
    ret = _return_at([r["J"] for r in rows], [r["D"] for r in rows], d_budget, top, low)
    conv = [n for n, f in enumerate(st.point_fits) if f.get("converged")]  # the rows' fits, in order
    # each fit resample with a ceiling resample (independent seed resamples: both seed noises enter the interval)
    bret = [
        _return_at(
            [r["J"] for r in rows],
            [fit.d_of_sigma(r2[n], sigma) if r2[n].get("converged") else np.nan for n in conv],
            d_budget,
            btop[b] if btop else top,
            low,
        )
        for b, r2 in enumerate(st.boot_fits)
    ]
    return {
        "kind": kind,
        "sigma": float(sigma),
        "env_steps_for_F": d_budget,
        "return_at_F": ret,
        "return_at_F_ci95": ci95(bret),
        "return_ceiling": top,
        "return_ceiling_ci95": ci95(btop) if btop else [None, None],
        "return_floor": low if np.isfinite(low) else None,
        "thresholds": rows,
    }


def measure(curves, thresholds, n_boot=100, rng=0, at_steps=None, interpolate=False):
    """Measured D_J per configuration (seed-mean isotonic crossing, docs/science.md 2.3; interpolated between
    log points with `interpolate`) with a seed-bootstrap interval and its resolution (the logging interval
    it lies in), and the isotonic return reached at `at_steps` {sigma: env steps} (the budget runs)."""
    pt, bt = fit.crossings(curves, thresholds, n_boot, rng, interpolate=interpolate)
    out = []
    for c, p, b in zip(curves, pt, bt):
        res = fit.crossing_resolution(c["steps"], p)
        row = {
            "task": c["task"],
            "sigma": float(c["sigma"]),
            "n_seeds": int(c["n_seeds"]),
            "seeds": list(c.get("seeds", [])),
            "thresholds": [
                {
                    "J": float(j),
                    "D": None if np.isnan(p[k]) else float(p[k]),
                    "D_ci95": ci95(b[:, k]),
                    "resolution": None if np.isnan(res[k]) else float(res[k]),
                }
                for k, j in enumerate(thresholds)
            ],
        }
        hit = [k for k in (at_steps or {}) if abs(k - c["sigma"]) <= 1e-9 * abs(k)]
        if hit:
            iso = fit.isotonic(c["norm"].mean(1))
            d = at_steps[hit[0]]
            row["return_at_steps"] = {
                "env_steps": float(d),
                "reached": bool(c["steps"][-1] >= d),
                "return": float(np.interp(d, c["steps"], iso)),
                # each seed's own (isotonic) normalised return there: the budget leg's aggregates compare them
                "seed_returns": [float(np.interp(d, c["steps"], y)) for y in fit.isotonic(c["norm"].T)],
            }
        out.append(row)
    return out


def measure_inputs(
    inputs,
    thresholds,
    max_returns,
    min_returns=None,
    returns="auto",
    n_boot=100,
    at_steps=None,
    seed=0,
    interpolate=False,
):
    """`measure` on run directories (the validation runs): load, pick the returns, normalise, cross."""
    from . import load, pipeline

    table, skipped = load.load(inputs)
    table, note = pipeline.pick_returns(table, returns)
    curves = fit.normalise(load.curves(table), max_returns, min_returns)
    return measure(curves, thresholds, n_boot, seed, at_steps, interpolate), note, skipped
