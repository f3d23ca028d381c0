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


def data_to(result, sigma):
    """Predicted D_J and C_J at UTD sigma for every converged threshold fit, with bootstrap intervals."""
    out = []
    for j, f, boot in _fits(result):
        d = float(fit.d_of_sigma(f, sigma))
        bd = np.array([fit.d_of_sigma(b, sigma) for b in boot], float)
        row = {"J": j, "D": d, "D_ci95": ci95(bd)}
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


def predict(result, sigmas, budget=None, budget_factor=4.0):
    """Predictions for held-out UTDs `sigmas`, and for a budget (default: budget_factor x the largest fitted
    budget optimum) the budget-optimal UTD, its D_J / C_J and the return reached. Returns a JSON-able dict."""
    if not _fits(result):
        raise AnalysisInputError(
            "no converged D_J(sigma) fit to predict from: the fitted stage needs >= 4 "
            "UTDs that reach the thresholds"
        )
    utds = result.state.utds
    lo, hi = float(utds.min()), float(utds.max())
    out = {
        "fitted_utd_range": [lo, hi],
        "thresholds": [j for j, _, _ in _fits(result)],
        "held_out": [],
        "interval": "95% percentile interval over the seed-bootstrap resamples' fits",
    }
    for s in sigmas:
        out["held_out"].append(
            {
                "kind": "utd",
                "sigma": float(s),
                "outside_fitted_range": not lo <= s <= hi,
                "thresholds": data_to(result, float(s)),
            }
        )
    b = result.fits.get("budget", {})
    if "points" in b and "sigma_star" in b:
        out["budget"] = _budget_prediction(result, b, budget, budget_factor, lo, hi)
    return out


def _budget_prediction(result, b, budget, budget_factor, lo, hi):
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
    rows = data_to(result, ss)
    delta = float(result.fits["compute"]["delta"])
    per_d = float(st.compute_fn(np.float64(ss), 1.0)) + delta  # F grows linearly with D at fixed sigma
    d_budget = F / per_d
    ret = _return_at([r["J"] for r in rows], [r["D"] for r in rows], d_budget)
    conv = [n for n, f in enumerate(st.point_fits) if f.get("converged")]  # the rows' fits, in order
    bret = [
        _return_at(
            [r["J"] for r in rows],
            [fit.d_of_sigma(r2[n], ss) if r2[n].get("converged") else np.nan for n in conv],
            d_budget,
        )
        for r2 in st.boot_fits
    ]
    return {
        "kind": "budget",
        "F": F,
        "largest_fitted_F": Fmax,
        "sigma": float(ss),
        "sigma_ci95": ci95(boot_s),
        "outside_fitted_range": not lo <= ss <= hi,
        "env_steps_for_F": d_budget,
        "return_at_F": ret,
        "return_at_F_ci95": ci95(bret),
        "thresholds": rows,
    }


def measure(curves, thresholds, n_boot=100, rng=0, at_steps=None):
    """Measured D_J per configuration (seed-mean isotonic crossing, docs/science.md 2.3) with a seed-bootstrap
    interval, and the isotonic return reached at `at_steps` {sigma: env steps} (the budget runs)."""
    pt, bt = fit.crossings(curves, thresholds, n_boot, rng)
    out = []
    for c, p, b in zip(curves, pt, bt):
        row = {
            "task": c["task"],
            "sigma": float(c["sigma"]),
            "n_seeds": int(c["n_seeds"]),
            "thresholds": [
                {"J": float(j), "D": None if np.isnan(p[k]) else float(p[k]), "D_ci95": ci95(b[:, k])}
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


def grade(prediction, measured, top_k=2, target=0.15):
    """Predicted vs measured per held-out configuration and threshold: relative error (pred - meas) / meas and
    whether the measured value lies inside the predicted interval; a summary at the `top_k` highest thresholds
    against the `target` relative error."""
    by = {round(m["sigma"], 12): m for m in measured}
    rows = []
    configs = list(prediction["held_out"]) + ([prediction["budget"]] if prediction.get("budget") else [])
    for cfg in configs:
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
                    "J": t["J"],
                    "D_pred": t["D"],
                    "D_pred_lo": lo,
                    "D_pred_hi": hi,
                    "D_meas": d,
                    "D_meas_ci95": mt.get("D_ci95", [None, None]),
                    "rel_error": None if d is None else (t["D"] - d) / d,
                    "inside": None if d is None or lo is None else bool(lo <= d <= hi),
                }
            )
    Js = sorted({r["J"] for r in rows})[-top_k:]
    top = [r for r in rows if r["J"] in Js]
    errs = [abs(r["rel_error"]) for r in top if r["rel_error"] is not None]
    ins = [r["inside"] for r in top if r["inside"] is not None]
    summary = {
        "top_thresholds": Js,
        "target_rel_error": target,
        "n": len(top),
        "n_measured": len(errs),
        "median_abs_rel_error": float(np.median(errs)) if errs else None,
        "max_abs_rel_error": float(np.max(errs)) if errs else None,
        "within_target": int(sum(e <= target for e in errs)),
        "inside_interval": int(sum(ins)),
        "coverage": float(np.mean(ins)) if ins else None,
        "not_reached": [f"sigma={r['sigma']:.4g} J={r['J']:.0f}" for r in top if r["D_meas"] is None],
    }
    out = {"rows": rows, "summary": summary}
    b = prediction.get("budget")
    if b:
        m = by.get(round(b["sigma"], 12))
        got = (m or {}).get("return_at_steps")
        lo, hi = b["return_at_F_ci95"]
        out["budget_return"] = {
            "F": b["F"],
            "sigma": b["sigma"],
            "predicted": b["return_at_F"],
            "ci95": [lo, hi],
            "measured": got and got["return"],
            "reached_budget": got and got["reached"],
            "inside": None if not got or lo is None else bool(lo <= got["return"] <= hi),
        }
    return out


def measure_inputs(
    inputs, thresholds, max_returns, min_returns=None, returns="auto", n_boot=100, at_steps=None, seed=0
):
    """`measure` on run directories (the validation runs): load, pick the returns, normalise, cross."""
    from . import load, pipeline

    table, skipped = load.load(inputs)
    table, note = pipeline.pick_returns(table, returns)
    curves = fit.normalise(load.curves(table), max_returns, min_returns)
    return measure(curves, thresholds, n_boot, seed, at_steps), note, skipped
