"""R1 (Rybkin et al. 2025, reference analysis github prestonfu/qscaled, MIT): the bootstrap-corrected best
hyperparameters and their shared-slope rules, pooled D_J(sigma), compute, the Pareto frontier and the
budget-optimal sigma*(F) (docs/science.md 2)."""

import warnings

import numpy as np

from ..errors import AnalysisInputError
from .powerlaw import fit_power_law, fit_power_law_batch, power_law

RANK_WARNING = getattr(np, "exceptions", np).RankWarning  # numpy < 1.25 keeps it at the top level


def best_hparams(table, point, boot, no_crossing="first"):
    """R1's bootstrap-corrected best batch size and learning rate (docs/science.md 2.8).

    table: DataFrame with task, sigma, batch_size, lr (one row per configuration), point [n] and
    boot [n, R] = D_J at the sweep threshold. For each (task, B, sigma) the best lr, for each
    (task, lr, sigma) the best B (smallest D_J); per resample likewise. Returns a DataFrame per
    (task, sigma) with the point best (B, lr) of the joint grid, and `lr_boot` / `bs_boot` = mean over
    the other hyperparameter's values and over resamples of the per-resample best (what R1 fits).
    A resample where no value reaches the threshold has no best: R1's code (argmin over all-inf) takes
    the smallest value then, which no_crossing="first" reproduces (needed to re-derive R1's published
    rules); no_crossing="skip" leaves such resamples out. `*_nobest` counts them either way.
    """
    import pandas as pd

    t = table.reset_index(drop=True).copy()
    t["_d"] = point
    bootinf = np.where(np.isnan(boot), np.inf, boot)
    rows = []
    for (task, sigma), g in t.groupby(["task", "sigma"], sort=True):
        out = {"task": task, "sigma": sigma}
        for name, val, other in (("lr", "lr", "batch_size"), ("bs", "batch_size", "lr")):
            per_resample, nobest, point_best = [], 0, []
            for _, h in g.groupby(other):
                vals = h[val].to_numpy()
                b = bootinf[h.index.to_numpy()]  # [n_vals, R]
                best = vals[b.argmin(0)].astype(float)
                none = ~np.isfinite(b.min(0))
                if no_crossing == "skip":
                    best[none] = np.nan
                nobest += int(none.sum())
                per_resample.append(best)
                if np.isfinite(h["_d"]).any():
                    point_best.append(vals[np.nanargmin(h["_d"].to_numpy())])
            pr = np.stack(per_resample)  # [n_other, R]
            out[f"{name}_boot"] = float(np.nanmean(pr)) if np.isfinite(pr).any() else np.nan
            out[f"{name}_boot_std"] = float(np.nanstd(pr)) if np.isfinite(pr).any() else np.nan
            out[f"{name}_boot_resamples"] = np.nanmean(pr, 0)  # per-resample mean over the other
            out[f"{name}_nobest"] = nobest
            out[f"{name}_point_mean"] = float(np.mean(point_best)) if point_best else np.nan
        if np.isfinite(g["_d"]).any():
            j = g["_d"].idxmin()
            out.update(
                best_bs=float(g.loc[j, "batch_size"]),
                best_lr=float(g.loc[j, "lr"]),
                best_D=float(g.loc[j, "_d"]),
            )
        else:
            out.update(best_bs=np.nan, best_lr=np.nan, best_D=np.nan)
        rows.append(out)
    return pd.DataFrame(rows)


def shared_slope(tasks, sigma, value):
    """OLS of log10(value) on log10(sigma) with one slope shared by all tasks and one intercept per task
    (docs/science.md 2.8). Returns {"slope", "intercepts": {task: log10 value at sigma=1}, "r2", "n"}."""
    tasks = np.asarray(tasks)
    x, y = np.log10(np.asarray(sigma, float)), np.log10(np.asarray(value, float))
    ok = np.isfinite(x) & np.isfinite(y)
    tasks, x, y = tasks[ok], x[ok], y[ok]
    names = sorted(set(tasks.tolist()))
    if len(np.unique(x)) < 2:
        raise AnalysisInputError(
            f"a hyperparameter rule needs best values at >= 2 UTD values; got sigma = {sorted(set(10**x))}"
        )
    A = np.column_stack([x] + [(tasks == n).astype(float) for n in names])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    pred = A @ coef
    ss = np.sum((y - y.mean()) ** 2)
    return {
        "slope": float(coef[0]),
        "intercepts": {n: float(c) for n, c in zip(names, coef[1:])},
        "r2": float(1 - np.sum((y - pred) ** 2) / ss) if ss > 0 else 1.0,
        "n": int(len(y)),
    }


def pooled_times(times):
    """R1's pooling across tasks (its Appendix D): divide each task's crossing times by that task's median
    (over all UTDs and thresholds), average over tasks; m = median of the per-task medians.
    times: [n_task, n_utd, K] -> (mean normalised [n_utd, K], m).
    NaN-aware (nanmedian / nanmean): a crossing a task never reached drops out of the averages instead of
    turning them into NaN as R1's np.median / np.mean would; with complete data the two are identical."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(times.reshape(times.shape[0], -1), 1)
        return np.nanmean(times / med[:, None, None], 0), float(np.nanmedian(med))


def to_physical(f, m):
    """Normalised fit (a, b, c) times the scale m -> D_J = D_min + (beta/sigma)^alpha."""
    a, b, c, m = (np.float64(v) for v in (f["a"], f["b"], f["c"], m))
    with np.errstate(all="ignore"):
        beta = b * np.power(m, 1.0 / a) if a != 0 else np.nan
    return {"D_min": float(m * c), "alpha": float(a), "beta": float(beta)}


def data_efficiency(utds, times, top_k=8):
    """Per-threshold pooled fit. utds [n_utd], times [n_task, n_utd, K].
    Returns a list (one per threshold) of dicts with D_min, alpha, beta, the normalised a, b, c, m,
    converged, or an `error` saying why that threshold could not be fitted."""
    norm, m = pooled_times(times)
    out = []
    for k in range(times.shape[2]):
        try:
            f = fit_power_law(utds, norm[:, k], top_k=top_k)
        except AnalysisInputError as e:
            out.append({"error": str(e), "converged": False})
            continue
        out.append(
            {
                **to_physical(f, m),
                "a": f["a"],
                "b": f["b"],
                "c": f["c"],
                "m": m,
                "loss": f["loss"],
                "converged": f["converged"],
                "message": f["message"],
            }
        )
    return out


def data_efficiency_boot(utds, btimes):
    """Pooled fits of every bootstrap resample at once. btimes [R, n_task, n_utd, K] -> list over K of
    dicts of arrays [R] (D_min, alpha, beta, a, b, c, m, converged)."""
    R, K = btimes.shape[0], btimes.shape[-1]
    pooled = [pooled_times(btimes[r]) for r in range(R)]
    norm = np.stack([p[0] for p in pooled])  # [R, n_utd, K]
    m = np.array([p[1] for p in pooled])
    out = []
    for k in range(K):
        Y = norm[:, :, k]
        ok = np.isfinite(Y)
        Y = np.where(ok.sum(1, keepdims=True) == Y.shape[1], Y, np.nan)  # fit only complete resamples
        f = fit_power_law_batch(utds, Y)
        with np.errstate(all="ignore"):
            f.update(D_min=m * f["c"], alpha=f["a"], beta=f["b"] * m ** (1.0 / f["a"]), m=m)
        out.append(f)
    return out


def d_of_sigma(fit, sigma):
    return fit["m"] * power_law(sigma, fit["a"], fit["b"], fit["c"])


def compute_r1(sigma, data, batch_size, n_params):
    """R1's compute count: C = 10 * N * B * sigma * D (sigma * D = gradient steps)."""
    return (
        10.0 * n_params * np.asarray(batch_size, float) * np.asarray(sigma, float) * np.asarray(data, float)
    )


def pareto_mask(compute, data):
    """Non-dominated points of (C, D): no other point has both less-or-equal C and D (one strictly)."""
    c, d = np.asarray(compute, float), np.asarray(data, float)
    dom = (
        (c[None] <= c[:, None]) & (d[None] <= d[:, None]) & ((c[None] < c[:, None]) | (d[None] < d[:, None]))
    )
    return ~dom.any(1) & np.isfinite(c) & np.isfinite(d)


def budget_optimum(fit, sigma_range, batch_fn, n_params, delta, flops_per_sample=None, n=100):
    """Minimise F = C + delta * D along the fitted D_J(sigma) over the UTD range that was run
    (R1 uses 100 log-spaced UTDs). C = 10 N B sigma D (R1) or flops_per_sample * B * sigma * D
    (FLOPs our runs measured per sample of a batch). Returns dict(sigma, F, C, D)."""
    s = np.logspace(np.log10(sigma_range[0]), np.log10(sigma_range[1]), n)
    d = d_of_sigma(fit, s)
    b = batch_fn(s)
    c = compute_r1(s, d, b, n_params) if flops_per_sample is None else flops_per_sample * b * s * d
    f = c + delta * d
    f = np.where(d > 0, f, np.inf)
    i = int(np.argmin(f))
    return {"sigma": float(s[i]), "F": float(f[i]), "C": float(c[i]), "D": float(d[i])}


def budget_fit(F, sigma_star, holdout_top_k=2):
    """log10 sigma* = s log10 F + k by least squares on all but the `holdout_top_k` largest budgets
    (R1 holds out its top-k thresholds; the budget grows with J, so on its data these are the same points);
    held-out error = mean |sigma_pred - sigma*| / sigma* on those. Returns dict."""
    F, ss = np.asarray(F, float), np.asarray(sigma_star, float)
    ok = np.isfinite(F) & np.isfinite(ss) & (F > 0) & (ss > 0)
    F, ss = F[ok], ss[ok]
    order = np.argsort(F)
    F, ss = F[order], ss[order]
    k = int(holdout_top_k)
    if len(F) - k < 2:
        raise AnalysisInputError(f"budget fit needs >= 2 budgets left after holding out {k}; have {len(F)}")
    train = slice(0, len(F) - k)
    # a poorly conditioned fit is a result (flagged below), not a warning on the user's console
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RANK_WARNING)
        s, c = np.polyfit(np.log10(F[train]), np.log10(ss[train]), 1)
    if not (np.isfinite(s) and np.isfinite(c) and abs(c) < 300):  # 10**c would overflow a float
        raise AnalysisInputError(
            f"budget fit is degenerate (slope {s:.3g}, log10 coefficient {c:.3g}): the "
            f"budget optima span F = {F[train].min():.4g} ... {F[train].max():.4g}, too "
            "narrow to fit a power law; "
            "add thresholds or UTDs whose optima differ in budget"
        )
    pred = 10 ** (s * np.log10(F) + c)
    held = np.abs(pred[len(F) - k :] - ss[len(F) - k :]) / ss[len(F) - k :] if k else np.array([])
    return {
        "exponent": float(s),
        "coef": float(10**c),
        "log10_coef": float(c),
        "holdout_rel_error": float(held.mean()) if k else None,
        "holdout_rel_errors": held.tolist(),
        "F": F.tolist(),
        "sigma_star": ss.tolist(),
        "n_train": len(F) - k,
        "poorly_conditioned": any(issubclass(w.category, RANK_WARNING) for w in caught),
    }
