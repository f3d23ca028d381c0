"""Model size in R1 mode (runs at several critic sizes N): R5's (sigma, N) surface per task, R2's intrinsic
performance and N_opt(F), and the width that gives a parameter count (for `recommend`)."""

import os

import numpy as np

from . import fit, load
from .errors import AnalysisInputError


def model_size_fits(chosen, tasks, J, cfg, rng, batch_fn, fps, fits):
    """R5's surface and R2's intrinsic-performance fit per task at the threshold nearest the sweep threshold;
    adds `surface_table` and `surface` to `fits` and returns fits.json's `model_size_fits`."""
    out = {"surface": {}, "intrinsic": {}}
    k = int(np.argmin(np.abs(J - float(cfg["sweep_threshold"]))))
    pt, bt = fit.crossings(chosen, [J[k]], int(cfg["bootstrap"]), rng)
    if fps is None:
        bud = lambda ss, nn, d: 10 * nn * batch_fn(ss) * ss * d + cfg["delta"] * d
    else:
        bud = lambda ss, nn, d: fps * batch_fn(ss) * ss * d + cfg["delta"] * d
    table = []
    for t in tasks:
        idx = [i for i, c in enumerate(chosen) if c["task"] == t]
        rows = []
        for i in idx:
            b = bt[i, :, 0]
            std = float(np.std(b[np.isfinite(b)])) if np.isfinite(b).any() else np.nan
            rows.append(
                {
                    "task": t,
                    "sigma": chosen[i]["sigma"],
                    "N": chosen[i]["model_size"],
                    "time_to_threshold": pt[i, 0],
                    "J": float(J[k]),
                    "time_to_threshold_std": std,
                }
            )
        table += rows
        out["surface"][t] = _task_surface(chosen, idx, rows, pt, bud, J[k])
        out["intrinsic"][t] = _task_intrinsic(chosen, idx)
    fits["surface_table"] = [{**{"time_to_threshold_surface": np.nan}, **r} for r in table]
    fits["surface"] = out["surface"]
    widths = {}
    for src in [cfg["inputs"]] if isinstance(cfg["inputs"], str) else cfg["inputs"]:
        if os.path.isdir(str(src)):
            widths.update(load.run_widths(src))
    ns = sorted({c["model_size"] for c in chosen})
    wf = width_fit([widths.get(x, np.nan) for x in ns], ns) if widths else None
    if wf:
        out["width_fit"] = wf
    conv = [v for v in out["intrinsic"].values() if v.get("converged")]
    if conv:
        e = float(np.mean([v["n_opt_exponent"] for v in conv]))
        out["n_opt_exponent"] = e
        # R2 gives N_opt ~ C^e up to a constant: anchor it at the surface optima (N*, F*) of the tasks
        opt = [v["optimum"] for v in out["surface"].values() if "optimum" in v]
        if opt:
            coef = float(np.exp(np.mean([np.log(o["model_size"] / o["F"] ** e) for o in opt])))
            out["n_opt"] = {
                "exponent": e,
                "coef": coef,
                "note": "N_opt = coef * F^exponent; exponent from R2's fit, anchored at the R5 "
                "surface optimum",
            }
    return out


def _task_surface(chosen, idx, rows, pt, bud, J):
    """R5's surface over one task's (sigma, N) cells with its compute-optimal point; fills the rows' fitted
    times. An {"error"} when it cannot be fitted."""
    s = [chosen[i]["sigma"] for i in idx]
    n = [chosen[i]["model_size"] for i in idx]
    try:
        f = fit.fit_surface(s, n, pt[idx, 0])
        for r in rows:
            r["time_to_threshold_surface"] = float(fit.surface_value(f, r["sigma"], r["N"]))
        f["optimum"] = fit.surface_optimum(f, bud, (min(s), max(s)), (min(n), max(n)))
        f["J"] = float(J)
        return f
    except AnalysisInputError as e:
        return {"error": str(e)}


def _task_intrinsic(chosen, idx):
    """R2: return vs compute per model size (seed mean, max over the configs at that size) -> the intrinsic
    performance fit of one task, or an {"error"}."""
    by = {}
    for i in idx:
        c = chosen[i]
        if np.isfinite(c["flops"]).all() and c["flops"][-1] > 0:
            comp = c["flops"]
        else:
            comp = 10 * c["model_size"] * c["batch_size"] * c["sigma"] * c["steps"]
        by.setdefault(c["model_size"], []).append((comp, c["norm"].mean(1), c["steps"]))
    fam = {n: max(v, key=lambda x: x[1][-1]) for n, v in by.items()}
    try:
        I = fit.intrinsic_performance({n: (v[0], v[1]) for n, v in fam.items()})
        N = np.concatenate([np.full(len(v[2]), n) for n, v in fam.items()])
        E = np.concatenate([v[2] for v in fam.values()])
        return fit.fit_intrinsic(N, E, np.concatenate([I[n] for n in fam]))
    except AnalysisInputError as e:
        return {"error": str(e)}


def width_fit(widths, params):
    """N as a quadratic in the width (exact for mlp / bro / softmoe at a fixed depth and tokens: every
    dense layer is width x width, width x in or width x out) -> coefficients for `recommend`."""
    w, n = np.asarray(widths, float), np.asarray(params, float)
    ok = np.isfinite(w) & np.isfinite(n)
    w, n = np.unique(w[ok]), np.array([n[ok][w[ok] == x][0] for x in np.unique(w[ok])])
    if len(w) < 2:
        return None
    if len(w) >= 3:
        coef = np.polyfit(w, n, 2)
    else:
        coef = np.append(np.linalg.lstsq(np.column_stack([w**2, w]), n, rcond=None)[0], 0.0)
    return {
        "coef": [float(x) for x in coef],
        "widths": w.tolist(),
        "params": n.tolist(),
        "note": "critic_params = coef[0] w^2 + coef[1] w + coef[2]",
    }


def width_for(wf, n_params):
    """The width whose fitted parameter count is n_params (positive root of the quadratic)."""
    a, b, c = wf["coef"]
    if abs(a) < 1e-12:
        return (n_params - c) / b
    return float((-b + np.sqrt(b * b - 4 * a * (c - n_params))) / (2 * a))
