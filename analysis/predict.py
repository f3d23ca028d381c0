"""Predictions from fitted laws for configurations held out of every fit, and their grading against runs.

`predict(result, sigmas, budget)` takes `pipeline.run_analysis`'s AnalysisResult for the fitted stage (its
fits and its state: the D_J(sigma) fits of every bootstrap resample, the compute and budget functions) and
gives, for each held-out UTD, the predicted data D_J and compute C_J to each threshold with a bootstrap
interval (the fits of the seed-bootstrap resamples, docs/science.md 2.4: the interval covers the fit's uncertainty
from seed noise in the fitted runs, not the noise of the validation runs themselves); for a budget F above
every fitted one the budget-optimal sigma*(F) (from each resample's sigma*(F) fit) and the return its run
reaches with F.
`measure` and `grade` compare with the runs. Pure functions: the caller reads and writes files.
"""

import warnings

import numpy as np

from . import fit
from .errors import AnalysisInputError

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


def _return_at(js, ds, d):
    """J reached after d transitions along predicted (J, D_J) points: 1000 - J = A exp(-D / tau) fitted in
    log(1000 - J) vs D (a learning curve's exponential approach), so it extrapolates above the top
    threshold."""
    js, ds = np.asarray(js, float), np.asarray(ds, float)
    ok = np.isfinite(ds) & (ds > 0) & (js < 1000)
    if ok.sum() < 2:
        return np.nan
    p = np.polyfit(ds[ok], np.log(1000 - js[ok]), 1)
    return float(1000 - np.exp(np.polyval(p, d)))


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
    out = {
        "fitted_utd_range": [lo, hi],
        "fitted_utds": [float(u) for u in utds],
        "thresholds": [j for j, _, _ in _fits(result)],
        "held_out": [],
        "interval": "95% percentile interval over the seed-bootstrap resamples' fits"
        + (
            ", plus the seed-mean noise of a measurement with %d seeds" % n_seeds
            if seed_noise(result, n_seeds) is not None
            else ""
        ),
        "n_seeds": n_seeds,
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
    ret = _return_at([r["J"] for r in rows], [r["D"] for r in rows], d_budget)
    conv = [n for n, f in enumerate(st.point_fits) if f.get("converged")]  # the rows' fits, in order
    bret = [
        _return_at(
            [r["J"] for r in rows],
            [fit.d_of_sigma(r2[n], sigma) if r2[n].get("converged") else np.nan for n in conv],
            d_budget,
        )
        for r2 in st.boot_fits
    ]
    return {
        "kind": kind,
        "sigma": float(sigma),
        "env_steps_for_F": d_budget,
        "return_at_F": ret,
        "return_at_F_ci95": ci95(bret),
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
            }
        out.append(row)
    return out


def _in_sample(sigma, fitted):
    return any(abs(sigma - f) <= 1e-6 * abs(f) for f in fitted or ())


def _summary(rows, Js, target):
    top = [r for r in rows if r["J"] in Js]
    errs = [abs(r["rel_error"]) for r in top if r["rel_error"] is not None]
    ins = [r["inside"] for r in top if r["inside"] is not None]
    widths = [r["D_pred_hi"] / r["D_pred_lo"] for r in top if r["D_pred_lo"] and r["D_pred_hi"]]
    return {
        "top_thresholds": Js,
        "target_rel_error": target,
        "n": len(top),
        "n_measured": len(errs),
        "median_abs_rel_error": float(np.median(errs)) if errs else None,
        "max_abs_rel_error": float(np.max(errs)) if errs else None,
        "within_target": int(sum(e <= target for e in errs)),
        "inside_interval": int(sum(ins)),
        "coverage": float(np.mean(ins)) if ins else None,
        "max_interval_ratio": float(np.max(widths)) if widths else None,
        "not_reached": [f"sigma={r['sigma']:.4g} J={r['J']:.0f}" for r in top if r["D_meas"] is None],
    }


def grade(prediction, measured, top_k=2, target=0.15, fitted_utds=None):
    """Predicted vs measured per held-out configuration and threshold: relative error (pred - meas) / meas and
    whether the measured value lies inside the predicted interval. A configuration at a UTD in `fitted_utds`
    (default: the prediction's fitted ones, when it lists them) is graded apart as in-sample: it is not held
    out, whatever its seeds. The summary covers the held-out rows at the `top_k` highest thresholds against
    the `target` relative error; `calibration` the coverage of the nominal 95% intervals over every held-out
    row, every threshold."""
    fitted = fitted_utds if fitted_utds is not None else prediction.get("fitted_utds")
    by = {round(m["sigma"], 12): m for m in measured}
    rows = []
    configs = list(prediction["held_out"]) + ([prediction["budget"]] if prediction.get("budget") else [])
    for cfg in configs:  # (the budget checks are graded on their return at F only)
        m = by.get(round(cfg["sigma"], 12))
        meas = {t["J"]: t for t in (m["thresholds"] if m else [])}
        for t in cfg["thresholds"]:
            mt = meas.get(t["J"], {})
            d = mt.get("D")
            lo, hi = t["D_ci95"]
            rows.append(
                {
                    "kind": cfg["kind"],
                    "sigma": cfg["sigma"],
                    "in_sample": _in_sample(cfg["sigma"], fitted),
                    "J": t["J"],
                    "D_pred": t["D"],
                    "D_pred_lo": lo,
                    "D_pred_hi": hi,
                    "D_meas": d,
                    "D_meas_ci95": mt.get("D_ci95", [None, None]),
                    "D_meas_resolution": mt.get("resolution"),
                    "rel_error": None if d is None else (t["D"] - d) / d,
                    "inside": None if d is None or lo is None else bool(lo <= d <= hi),
                }
            )
    held = [r for r in rows if not r["in_sample"]]
    Js = sorted({r["J"] for r in rows})[-top_k:]
    every = [r["inside"] for r in held if r["inside"] is not None]
    out = {
        "rows": rows,
        "summary": _summary(held, Js, target),
        "calibration": {
            "nominal": 0.95,
            "n": len(every),
            "inside": int(sum(every)),
            "coverage": float(np.mean(every)) if every else None,
        },
    }
    ins = [r for r in rows if r["in_sample"]]
    if ins:
        out["in_sample_summary"] = _summary(ins, Js, target)
    b = prediction.get("budget")
    if b:
        out["budget_return"] = _budget_grade(b, by, fitted)
        checks = [_budget_grade(c, by, fitted) for c in prediction.get("budget_checks", [])]
        if checks:
            out["budget_checks"] = checks
            got = [x for x in [out["budget_return"]] + checks if x["measured"] is not None]
            if got:
                best = max(got, key=lambda x: x["measured"])
                star = out["budget_return"]["measured"]
                out["sigma_star_grade"] = {
                    "sigma_star": b["sigma"],
                    "best_measured_sigma": best["sigma"],
                    "sigma_star_is_best": best["sigma"] == b["sigma"],
                    # normalised return points sigma* left on the table at F (0 when it was the best)
                    "shortfall": None if star is None else float(best["measured"] - star),
                    "measured": {"%.4g" % x["sigma"]: x["measured"] for x in got},
                }
    return out


def _budget_grade(b, by, fitted):
    """Predicted vs measured return after the env steps budget F buys at b's sigma."""
    m = by.get(round(b["sigma"], 12))
    got = (m or {}).get("return_at_steps")
    lo, hi = b["return_at_F_ci95"]
    pred = b["return_at_F"]
    return {
        "F": b.get("F"),
        "sigma": b["sigma"],
        "env_steps": b["env_steps_for_F"],
        "in_sample": _in_sample(b["sigma"], fitted),
        "predicted": pred,
        "ci95": [lo, hi],
        "measured": got and got["return"],
        "reached_budget": got and got["reached"],
        "rel_error": None if not got or not got["return"] else (pred - got["return"]) / got["return"],
        "inside": None if not got or lo is None else bool(lo <= got["return"] <= hi),
    }


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
