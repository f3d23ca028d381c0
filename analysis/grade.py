"""The grade of a study's prediction against its validation runs: relative errors, interval coverage and
calibration, in-sample rows apart, and the budget leg (the return at F, and sigma* against its neighbours with
the seeds' aggregates). Pure functions over prediction.json's and `predict.measure`'s dicts."""

import numpy as np


def _in_sample(sigma, fitted):
    return any(abs(sigma - f) <= 1e-6 * abs(f) for f in fitted or ())


Z95 = 1.959964  # the standard normal's 97.5% point: a nominal 95% interval is +-Z95 sigma in log D
MEDIAN_ABS_Z = 0.674490  # the median of |N(0, 1)|


def _log_sigma(lo, hi):
    """The log-space standard deviation a nominal 95% interval [lo, hi] stands for (None without one)."""
    return float(np.log(hi / lo) / (2 * Z95)) if lo and hi and lo > 0 and hi > lo else None


def noise_floor(rows):
    """What the intervals themselves say to expect, so an error can be read against them: the median |error|
    an unbiased prediction would have (the median of |N(0, sigma)| in log D per row: with 95% intervals 2x
    wide, ~13%, so a 10% median error needs intervals <= 1.7x), and the standardised errors z = log(pred / meas) /
    sigma: their mean is the bias in interval units, their rms 1 when the intervals are calibrated (> 1: too
    narrow, < 1: too wide)."""
    sig = [_log_sigma(r["D_pred_lo"], r["D_pred_hi"]) for r in rows]
    z = [
        float(np.log(r["D_pred"] / r["D_meas"]) / s)
        for r, s in zip(rows, sig)
        if s and r["D_meas"] and r["D_pred"] and r["D_pred"] > 0
    ]
    floor = [float(np.expm1(MEDIAN_ABS_Z * s)) for s in sig if s]
    return {
        "median_abs_rel_error_if_unbiased": float(np.median(floor)) if floor else None,
        "z_mean": float(np.mean(z)) if z else None,
        "z_rms": float(np.sqrt(np.mean(np.square(z)))) if z else None,
        "n_z": len(z),
    }


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
        **noise_floor(top),
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
            **noise_floor(held),
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
                    **_seed_aggregates(out["budget_return"], checks),
                }
    return out


def _seed_aggregates(star, checks):
    """Across seeds at F (Agarwal et al. 2021, analysis/aggregate.py): each UTD's IQM of the seeds' normalised
    returns with a bootstrap interval, and the probability that a sigma* seed beats a neighbour's seed."""
    from . import aggregate

    seeds = {x["sigma"]: x.get("seed_returns") for x in [star] + checks if x.get("seed_returns")}
    if star["sigma"] not in seeds:
        return {}
    iqm = {
        "%.4g" % s: aggregate.interval_estimates(
            [np.asarray(v) / 1000.0], rng=0, measures={"IQM": aggregate.iqm}
        )["IQM"]
        for s, v in seeds.items()
    }
    p = {
        "%.4g" % s: aggregate.probability_of_improvement(
            [np.asarray(seeds[star["sigma"]])], [np.asarray(v)], rng=0
        )
        for s, v in seeds.items()
        if s != star["sigma"]
    }
    # sigma* holds up when no neighbour beats it with confidence (P(sigma* > it)'s interval not all below 1/2)
    return {
        "iqm_at_F": iqm,
        "p_sigma_star_better": p,
        "sigma_star_holds": all(ci[1] >= 0.5 for _, ci in p.values()),
    }


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
        "seed_returns": got and got.get("seed_returns"),
        "rel_error": None if not got or not got["return"] else (pred - got["return"]) / got["return"],
        "inside": None if not got or lo is None else bool(lo <= got["return"] <= hi),
    }
