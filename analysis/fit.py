"""Pure fitting functions (numpy arrays in, numbers out): science.md sections 1-4.

R1 = Rybkin et al. 2025 (arXiv 2502.04327), reference analysis github prestonfu/qscaled (MIT);
R2 = Hilton et al. 2023; R5 = Fu, Rybkin et al. 2025. Nothing here reads files or draws.
"""
import warnings

import numpy as np
from scipy import optimize
from threadpoolctl import threadpool_limits

from .load import AnalysisInputError

# ------------------------------------------------------------------------------- thresholds, crossings


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
    """First index where the isotonic fit of y [..., T] reaches each threshold -> int [..., K], -1 if never."""
    iso = isotonic(y)
    ok = iso[..., None, :] >= np.asarray(thresholds, float)[:, None]
    return np.where(ok.any(-1), ok.argmax(-1), -1)


def crossings(curves, thresholds, n_boot=0, rng=None, key="norm"):
    """D_J of each configuration: first logged step where the isotonic fit of the seed-mean curve
    reaches J (NaN if never), plus `n_boot` seed-bootstrap resamples of the same.
    Returns point [n_cfg, K] and boot [n_cfg, n_boot, K]."""
    rng = np.random.default_rng(rng)
    K = len(thresholds)
    point = np.full((len(curves), K), np.nan)
    boot = np.full((len(curves), n_boot, K), np.nan)
    for i, c in enumerate(curves):
        y, steps = c[key], c["steps"]
        idx = crossing_index(y.mean(1), thresholds)
        point[i] = np.where(idx >= 0, steps[idx], np.nan)
        if n_boot:
            s = y.shape[1]
            pick = rng.integers(0, s, size=(n_boot, s))               # resample seeds with replacement
            means = y[:, pick].mean(-1).T                                # [n_boot, T]
            idx = crossing_index(means, thresholds)
            boot[i] = np.where(idx >= 0, steps[idx], np.nan)
    return point, boot


def normalise(curves, max_returns=None, min_returns=None):
    """R_norm = 1000 * (R - R_min) / (R_max - R_min); R_max from `max_returns` or the run's own r_max, R_min from
    `min_returns` (default 0, R1's 1000 R / R_max). A task with negative returns (Pendulum) needs both."""
    max_returns, min_returns = dict(max_returns or {}), dict(min_returns or {})
    missing = sorted({c["task"] for c in curves if c["task"] not in max_returns and not np.isfinite(c.get("r_max", np.nan))})
    if missing:
        raise AnalysisInputError(
            f"no R_max for task(s) {missing}: add them under `max_returns` in the config "
            f"(task: R_max, the return counted as 1000), or log r_max in the runs")
    for c in curves:
        r, r0 = float(max_returns.get(c["task"], c.get("r_max"))), float(min_returns.get(c["task"], 0.0))
        if not r > r0:
            raise AnalysisInputError(f"task {c['task']}: R_max = {r:g} must be above R_min = {r0:g} "
                                     "(`max_returns` / `min_returns`; negative returns need a minimum)")
        c["norm"] = 1000.0 * (c["returns"] - r0) / (r - r0)
    return curves


# ------------------------------------------------------------------------------ hyperparameter rules


def best_hparams(table, point, boot, no_crossing="first"):
    """R1's bootstrap-corrected best batch size and learning rate (science.md 2.8).

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
                b = bootinf[h.index.to_numpy()]                          # [n_vals, R]
                best = vals[b.argmin(0)].astype(float)
                none = ~np.isfinite(b.min(0))
                if no_crossing == "skip":
                    best[none] = np.nan
                nobest += int(none.sum())
                per_resample.append(best)
                if np.isfinite(h["_d"]).any():
                    point_best.append(vals[np.nanargmin(h["_d"].to_numpy())])
            pr = np.stack(per_resample)                                  # [n_other, R]
            out[f"{name}_boot"] = float(np.nanmean(pr)) if np.isfinite(pr).any() else np.nan
            out[f"{name}_boot_std"] = float(np.nanstd(pr)) if np.isfinite(pr).any() else np.nan
            out[f"{name}_boot_resamples"] = np.nanmean(pr, 0)          # per-resample mean over the other
            out[f"{name}_nobest"] = nobest
            out[f"{name}_point_mean"] = float(np.mean(point_best)) if point_best else np.nan
        if np.isfinite(g["_d"]).any():
            j = g["_d"].idxmin()
            out.update(best_bs=float(g.loc[j, "batch_size"]), best_lr=float(g.loc[j, "lr"]), best_D=float(g.loc[j, "_d"]))
        else:
            out.update(best_bs=np.nan, best_lr=np.nan, best_D=np.nan)
        rows.append(out)
    return pd.DataFrame(rows)


def shared_slope(tasks, sigma, value):
    """OLS of log10(value) on log10(sigma) with one slope shared by all tasks and one intercept per task
    (science.md 2.8). Returns {"slope", "intercepts": {task: log10 value at sigma=1}, "r2", "n"}."""
    tasks = np.asarray(tasks)
    x, y = np.log10(np.asarray(sigma, float)), np.log10(np.asarray(value, float))
    ok = np.isfinite(x) & np.isfinite(y)
    tasks, x, y = tasks[ok], x[ok], y[ok]
    names = sorted(set(tasks.tolist()))
    if len(np.unique(x)) < 2:
        raise AnalysisInputError("a hyperparameter rule needs best values at >= 2 UTD values; "
                                 f"got sigma = {sorted(set(10 ** x))}")
    A = np.column_stack([x] + [(tasks == n).astype(float) for n in names])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    pred = A @ coef
    ss = np.sum((y - y.mean()) ** 2)
    return {"slope": float(coef[0]), "intercepts": {n: float(c) for n, c in zip(names, coef[1:])},
            "r2": float(1 - np.sum((y - pred) ** 2) / ss) if ss > 0 else 1.0, "n": int(len(y))}


def rule_value(rule, sigma, task=None):
    """Evaluate a shared-slope rule; without a task, the mean over tasks of the per-task values
    (R1 averages the batch-size rule over tasks for the compute formula). Clipped to the range the sweep
    tried when the rule records it (`swept`), as the sweep launcher applies it."""
    sigma = np.asarray(sigma, float)
    ks = [rule["intercepts"][task]] if task is not None else list(rule["intercepts"].values())
    v = [10 ** (rule["slope"] * np.log10(sigma) + k) for k in ks]
    if rule.get("swept"):
        v = [np.clip(x, *rule["swept"]) for x in v]
    return np.mean(v, axis=0)


# --------------------------------------------------------------------------- D_J(sigma) power law


def power_law(x, a, b, c):
    """R1's normalised form: c + (x / b)^(-a)."""
    return c + (np.asarray(x, float) / b) ** (-a)


def _loss_grad(p, x, y):
    a, b, c = p
    u = (x / b) ** (-a)
    r = c + u - y
    n = len(x)
    f = np.mean(r ** 2)
    g = np.array([np.sum(2 * r * u * -np.log(x / b)), np.sum(2 * r * u * a / b), np.sum(2 * r)]) / n
    return f, g


# R1's brute-force start grid: a in [-2, 2) step 0.8, b in [0, 1) step 0.2, c in [-2, 2) step 0.8
_A0, _B0, _C0 = np.arange(-2, 2, 0.8), np.arange(0, 1, 0.2), np.arange(-2, 2, 0.8)


def fit_power_law(x, y, top_k=8):
    """Least-squares fit of y = c + (x/b)^(-a) as R1 does it: evaluate the loss on a brute-force grid of
    starts, run L-BFGS-B (scipy) from the best `top_k` of them, keep the lowest loss.
    (R1 runs L-BFGS-B from all 125 grid points; its grid's b = 0 start is moved to 1e-3 because b must
    stay > 0, and b is bounded below for the same reason.)
    Returns dict(a, b, c, loss, converged, message)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(np.unique(x)) < 4:
        raise AnalysisInputError(
            f"D_J(sigma) = D_min + (beta/sigma)^alpha has 3 parameters and needs >= 4 distinct UTD values "
            f"with a crossing; got {len(np.unique(x))} ({sorted(np.unique(x).tolist())}). Run more UTD values "
            f"or lower the thresholds.")
    A, B, C = np.meshgrid(_A0, np.maximum(_B0, 1e-3), _C0, indexing="ij")
    starts = np.column_stack([A.ravel(), B.ravel(), C.ravel()])
    with np.errstate(all="ignore"):
        pred = starts[:, 2:3] + (x[None] / starts[:, 1:2]) ** (-starts[:, 0:1])
        losses = np.nanmean((pred - y[None]) ** 2, 1)
    losses[~np.isfinite(losses)] = np.inf
    with threadpool_limits(1, "blas"):  # see pipeline.run_analysis: multi-threaded BLAS slows L-BFGS-B ~100x
        return _refine(starts[np.argsort(losses)[:top_k]], x, y)


def _refine(starts, x, y):
    best = None
    for s in starts:
        with np.errstate(all="ignore"):
            r = optimize.minimize(_loss_grad, s, args=(x, y), jac=True, method="L-BFGS-B",
                                  bounds=[(-20, 20), (1e-9, None), (None, None)])
        if np.isfinite(r.fun) and (best is None or r.fun < best.fun):
            best = r
    if best is None:
        return {"a": np.nan, "b": np.nan, "c": np.nan, "loss": np.nan, "converged": False,
                "message": "no start gave a finite loss"}
    a, b, c = best.x
    return {"a": float(a), "b": float(b), "c": float(c), "loss": float(best.fun),
            "converged": bool(best.success), "message": str(best.message)}


def _brute_starts(x, Y):
    """Best start of R1's brute-force grid for each row of Y [P, n] -> [P, 3] (a, b, c)."""
    A, B, C = np.meshgrid(_A0, np.maximum(_B0, 1e-3), _C0, indexing="ij")
    g = np.column_stack([A.ravel(), B.ravel(), C.ravel()])                      # [G, 3]
    with np.errstate(all="ignore"):
        pred = g[:, 2:3] + (x[None] / g[:, 1:2]) ** (-g[:, 0:1])               # [G, n]
        loss = np.nanmean((pred[None] - Y[:, None]) ** 2, -1)                   # [P, G]
    loss[~np.isfinite(loss)] = np.inf
    return g[np.argmin(loss, 1)]


def _solve_each(H, g):
    """Batched H x = g; one singular system (a resample whose power term underflowed to zero) gives NaN for
    that problem instead of failing the whole batch, as np.linalg.solve would."""
    with np.errstate(all="ignore"):
        try:
            return np.linalg.solve(H, g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            out = np.full(g.shape, np.nan)
            for i in range(len(g)):
                try:
                    out[i] = np.linalg.solve(H[i], g[i])
                except np.linalg.LinAlgError:
                    pass
            return out


def fit_power_law_batch(x, Y, iters=200):
    """Many fits of y = c + (x/b)^(-a) at once (the bootstrap resamples), same loss and same brute-force
    starts as `fit_power_law`, refined by Levenberg-Marquardt vectorised over problems (in a, log b, c).
    Hand-written because scipy has no batched least squares and ~10^3 separate L-BFGS-B calls cost
    seconds; tests check it lands on the same optimum as the scipy path.
    x [n], Y [P, n] (NaN rows allowed) -> dict of arrays a, b, c, loss, converged [P]."""
    x = np.asarray(x, float)
    Y = np.asarray(Y, float)
    P = len(Y)
    good = np.isfinite(Y).all(1)
    out = {k: np.full(P, np.nan) for k in ("a", "b", "c", "loss")}
    out["converged"] = np.zeros(P, bool)
    if not good.any():
        return out
    Yg = Y[good]
    p = _brute_starts(x, Yg)
    p[:, 1] = np.log(p[:, 1])
    lx = np.log(x)[None]
    lam = np.full(len(Yg), 1e-3)

    def resid(p):
        with np.errstate(all="ignore"):
            u = np.exp(-p[:, 0:1] * (lx - p[:, 1:2]))
            return p[:, 2:3] + u - Yg, u

    r, u = resid(p)
    f = np.sum(r ** 2, 1)
    done = np.zeros(len(Yg), bool)
    for _ in range(iters):
        Jm = np.stack([-u * (lx - p[:, 1:2]), p[:, 0:1] * u, np.ones_like(u)], -1)   # [P, n, 3]
        g = np.einsum("pni,pn->pi", Jm, r)
        H = np.einsum("pni,pnj->pij", Jm, Jm)
        Hd = H + lam[:, None, None] * (np.eye(3)[None] * (np.diagonal(H, 0, 1, 2)[:, :, None] + 1e-12))
        step = -_solve_each(Hd, g)
        stuck = ~np.isfinite(step).all(1)  # a singular or overflowing system: no step; more damping next time
        step[stuck | done] = 0.0
        pn = p + step
        rn, un = resid(pn)
        fn = np.sum(rn ** 2, 1)
        better = np.isfinite(fn) & (fn <= f) & ~stuck
        rel = np.abs(f - fn) <= 1e-12 * (f + 1e-30)
        p = np.where(better[:, None], pn, p)
        r = np.where(better[:, None], rn, r)
        u = np.where(better[:, None], un, u)
        done |= better & (rel | (np.abs(step).max(1) < 1e-10))
        f = np.where(better, fn, f)
        lam = np.where(better, lam / 3, lam * 4)
        done |= lam > 1e12  # no downhill step left: at the minimum to machine precision
        if done.all():
            break
    out["a"][good], out["b"][good], out["c"][good] = p[:, 0], np.exp(p[:, 1]), p[:, 2]
    out["loss"][good] = f / len(x)
    out["converged"][good] = done & np.isfinite(f)
    return out


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
        out.append({**to_physical(f, m), "a": f["a"], "b": f["b"], "c": f["c"], "m": m,
                    "loss": f["loss"], "converged": f["converged"], "message": f["message"]})
    return out


def data_efficiency_boot(utds, btimes):
    """Pooled fits of every bootstrap resample at once. btimes [R, n_task, n_utd, K] -> list over K of
    dicts of arrays [R] (D_min, alpha, beta, a, b, c, m, converged)."""
    R, K = btimes.shape[0], btimes.shape[-1]
    pooled = [pooled_times(btimes[r]) for r in range(R)]
    norm = np.stack([p[0] for p in pooled])                                     # [R, n_utd, K]
    m = np.array([p[1] for p in pooled])
    out = []
    for k in range(K):
        Y = norm[:, :, k]
        ok = np.isfinite(Y)
        Y = np.where(ok.sum(1, keepdims=True) == Y.shape[1], Y, np.nan)     # fit only complete resamples
        f = fit_power_law_batch(utds, Y)
        with np.errstate(all="ignore"):
            f.update(D_min=m * f["c"], alpha=f["a"], beta=f["b"] * m ** (1.0 / f["a"]), m=m)
        out.append(f)
    return out


def d_of_sigma(fit, sigma):
    return fit["m"] * power_law(sigma, fit["a"], fit["b"], fit["c"])


# ------------------------------------------------------------------------------ compute and budget


def compute_r1(sigma, data, batch_size, n_params):
    """R1's compute count: C = 10 * N * B * sigma * D (sigma * D = gradient steps)."""
    return 10.0 * n_params * np.asarray(batch_size, float) * np.asarray(sigma, float) * np.asarray(data, float)


def pareto_mask(compute, data):
    """Non-dominated points of (C, D): no other point has both less-or-equal C and D (one strictly)."""
    c, d = np.asarray(compute, float), np.asarray(data, float)
    dom = (c[None] <= c[:, None]) & (d[None] <= d[:, None]) & ((c[None] < c[:, None]) | (d[None] < d[:, None]))
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
    s, c = np.polyfit(np.log10(F[train]), np.log10(ss[train]), 1)
    if not (np.isfinite(s) and np.isfinite(c) and abs(c) < 300):  # 10**c would overflow a float
        raise AnalysisInputError(f"budget fit is degenerate (slope {s:.3g}, log10 coefficient {c:.3g}): the budget optima "
                                 f"span F = {F[train].min():.4g} ... {F[train].max():.4g}, too narrow to fit a power law; "
                                 "add thresholds or UTDs whose optima differ in budget")
    pred = 10 ** (s * np.log10(F) + c)
    held = np.abs(pred[len(F) - k:] - ss[len(F) - k:]) / ss[len(F) - k:] if k else np.array([])
    return {"exponent": float(s), "coef": float(10 ** c), "log10_coef": float(c),
            "holdout_rel_error": float(held.mean()) if k else None,
            "holdout_rel_errors": held.tolist(), "F": F.tolist(), "sigma_star": ss.tolist(),
            "n_train": len(F) - k}


# ------------------------------------------------------------------------- R5: (sigma, N) surface


def log_affine(x):
    """R5's input map: ln x affinely onto [ln 0.5, ln 2], x' = exp((ln x - m) / s). Returns (s, m)."""
    lx = np.log(np.asarray(x, float))
    s = (lx.max() - lx.min()) / np.log(4.0)
    return float(s), float(lx.min() - s * np.log(0.5))


def _softplus(t):
    return np.logaddexp(0.0, t)


def fit_surface(sigma, n_params, data):
    with threadpool_limits(1, "blas"):
        return _fit_surface(sigma, n_params, data)


def _fit_surface(sigma, n_params, data):
    """R5's surface D(sigma, N) = C (1 + (A / sigma)^alpha + (B / N)^beta), fitted as R5 does (science.md 3):
    sigma and N mapped log-affinely onto [0.5, 2], times divided by their mean, the five parameters
    softplus of free ones starting at 0, loss mean((ln pred - ln y)^2), L-BFGS-B (ftol = gtol = 1e-12) from
    that single start; then mapped back to original units: A = A'^s e^m, alpha = alpha' / s (same for B)."""
    s, n, d = (np.asarray(v, float) for v in (sigma, n_params, data))
    ok = np.isfinite(d) & (d > 0) & np.isfinite(s) & np.isfinite(n)
    s, n, d = s[ok], n[ok], d[ok]
    if len(np.unique(n)) < 2 or len(np.unique(s)) < 2 or len(d) < 6:
        raise AnalysisInputError("the (sigma, N) surface has 5 parameters: it needs >= 2 model sizes, "
                                 f">= 2 UTDs and >= 6 crossings; got {len(np.unique(n))} sizes, "
                                 f"{len(np.unique(s))} UTDs, {len(d)} crossings")
    ss, ms = log_affine(s)
    sn, mn = log_affine(n)
    xs, xn = np.exp((np.log(s) - ms) / ss), np.exp((np.log(n) - mn) / sn)
    scale = d.mean()
    ly = np.log(d / scale)

    def loss(t):
        C, A, al, B, be = _softplus(t)
        with np.errstate(all="ignore"):
            u, v = (A / xs) ** al, (B / xn) ** be
            q = 1 + u + v
            r = np.log(C) + np.log(q) - ly
            g = np.array([np.sum(r) / C, np.sum(r * al * u / A / q), np.sum(r * u * np.log(A / xs) / q),
                          np.sum(r * be * v / B / q), np.sum(r * v * np.log(B / xn) / q)]) * 2 / len(r)
        f = np.mean(r ** 2)
        if not np.isfinite(f):
            return 1e6, np.zeros(5)
        return f, g / (1 + np.exp(-t))  # chain rule through softplus

    r = optimize.minimize(loss, np.zeros(5), jac=True, method="L-BFGS-B", options={"ftol": 1e-12, "gtol": 1e-12})
    C, A, al, B, be = _softplus(r.x)
    return {"C": float(C * scale), "A": float(A ** ss * np.exp(ms)), "alpha": float(al / ss),
            "B": float(B ** sn * np.exp(mn)), "beta": float(be / sn), "loss": float(r.fun),
            "converged": bool(r.success), "message": str(r.message)}


def surface_value(f, sigma, n_params):
    """R5's surface at (sigma, N): C (1 + (A / sigma)^alpha + (B / N)^beta)."""
    return f["C"] * (1 + (f["A"] / np.asarray(sigma, float)) ** f["alpha"] + (f["B"] / np.asarray(n_params, float)) ** f["beta"])


def surface_optimum(f, budget_fn, sigma_range, n_range, n=60):
    """Minimise F(sigma, N) = budget_fn(sigma, N, D) over a log grid of the ranges that were run."""
    s = np.logspace(*np.log10(sigma_range), n)[:, None]
    m = np.logspace(*np.log10(n_range), n)[None, :]
    d = surface_value(f, s, m)
    F = budget_fn(s, m, d)
    i, j = np.unravel_index(np.argmin(F), F.shape)
    return {"sigma": float(s[i, 0]), "model_size": float(m[0, j]), "F": float(F[i, j]), "D": float(d[i, j])}


def _crossing_steps(y, steps, J):
    """First step whose isotonic fit of each row of y [..., T] is >= J (NaN if never)."""
    idx = crossing_index(y, [J])[..., 0]
    return np.where(idx >= 0, np.asarray(steps, float)[np.clip(idx, 0, None)], np.nan)


def r5_cells(curves, thresholds, n_boot=100, seed=42, key="returns", keep=None):
    """R5's time to threshold per (task, sigma, N) with the empirically best batch size (science.md 3).

    curves: records with task, sigma, model_size, batch_size, steps [T], `key` [T, R] (NaN allowed), in
    the order R5 consumed them (the zip's member order). thresholds: {task: J}. Per configuration: nan-mean
    over runs, increasing isotonic fit, first step >= J; `n_boot` resamples of the run columns from ONE
    legacy MT19937 stream (np.random.RandomState(seed)), consumed configuration by configuration.
    A cell's time = min over B; resample b = min over the B whose observed crossing exists; std =
    population std of the finite resample values. `keep` [bool per curve]: configurations left out of the
    cells still consume the stream (R5 computed every configuration, then left cells out of its table).
    Returns a list of dicts (task, sigma, N, time_to_threshold, time_to_threshold_std, n_boot_finite)."""
    rs = np.random.RandomState(seed)
    cells = {}
    keep = [True] * len(curves) if keep is None else list(keep)
    for c, use in zip(curves, keep):
        if c["task"] not in thresholds:
            continue
        J, y, steps = float(thresholds[c["task"]]), np.asarray(c[key], float), c["steps"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            point = float(_crossing_steps(np.nanmean(y, 1), steps, J))
            if n_boot:
                pick = rs.randint(0, y.shape[1], size=(n_boot, y.shape[1]))
                boot = _crossing_steps(np.nanmean(y[:, pick], -1).T, steps, J)    # [n_boot]
            else:
                boot = np.zeros(0)
        if not use:
            continue
        cells.setdefault((c["task"], c["sigma"], c["model_size"]), []).append((point, boot))
    out = []
    for (task, sigma, n), v in cells.items():
        pts = np.array([p for p, _ in v])
        reached = np.isfinite(pts)
        time = float(pts[reached].min()) if reached.any() else np.nan
        std, nb = np.nan, 0
        if n_boot and reached.any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                b = np.nanmin(np.stack([bt for (p, bt), r in zip(v, reached) if r]), 0)
            b = b[np.isfinite(b)]
            nb = len(b)
            std = float(np.std(b)) if nb else np.nan
        out.append({"task": task, "sigma": float(sigma), "N": float(n), "time_to_threshold": time,
                    "time_to_threshold_std": std, "n_boot_finite": nb})
    return out


def drop_after_resets(steps, y, reset_every_env_steps):
    """BRO resets its networks every `reset_every_env_steps` env steps (2.5e6 / sigma): after each reset,
    set the evaluations to NaN until the seed-mean return is back at its level at the last evaluation
    before the reset. y [T, R] -> a copy with those rows NaN (science.md 3, pooled variant)."""
    y = np.array(y, float)
    steps = np.asarray(steps, float)
    mean = np.nanmean(y, 1)
    if not reset_every_env_steps or not np.isfinite(reset_every_env_steps):
        return y
    t = float(reset_every_env_steps)
    while t < steps[-1]:
        before = np.nonzero(steps <= t)[0]
        if len(before):
            level = mean[before[-1]]
            after = np.nonzero(steps > t)[0]
            back = after[mean[after] >= level]
            stop = back[0] if len(back) else len(steps)
            y[after[0]:stop] = np.nan
        t += float(reset_every_env_steps)
    return y


def r5_pooled(curves, bases, reset_every_grad_steps=None, n_thresholds=20, key="returns"):
    """R5's pooled multi-task variant (BRO ablations; science.md 3). curves: records of the selected
    settings; bases: {task: lowest threshold}. Per task: optional reset filter, isotonic fit of the seed
    mean; 20 thresholds linspace(base, top), top = floor(0.95 * q20 / 10) * 10 with q20 = 20th percentile
    of the final isotonic returns; task normaliser = nan-median of all 20 crossings of all its settings.
    Cell (sigma, N): time = median-of-medians * nan-mean over tasks of (top crossing / task median),
    std = median-of-medians * across-task std of the same ratios.
    Returns (cells [dict], per-task {task: {"thresholds", "median"}})."""
    by_task = {}
    for c in curves:
        if c["task"] not in bases:
            continue
        y = np.asarray(c[key], float)
        if reset_every_grad_steps:
            y = drop_after_resets(c["steps"], y, float(reset_every_grad_steps) / c["sigma"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(y, 1)
        ok = np.isfinite(mean)
        by_task.setdefault(c["task"], []).append((c["sigma"], c["model_size"], c["steps"][ok], isotonic(mean[ok])))
    info, ratios = {}, {}
    for task, rows in by_task.items():
        q20 = np.percentile([iso[-1] for *_, iso in rows], 20)
        top = np.floor(0.95 * q20 / 10) * 10
        Js = np.linspace(float(bases[task]), top, n_thresholds)
        cross = np.array([[steps[np.argmax(iso >= J)] if (iso >= J).any() else np.nan for J in Js]
                          for _, _, steps, iso in rows])                                   # [settings, 20]
        med = float(np.nanmedian(cross))
        info[task] = {"thresholds": Js.tolist(), "median": med, "top": float(top)}
        for (s, n, *_), cr in zip(rows, cross):
            ratios.setdefault((s, n), {})[task] = cr[-1] / med
    mm = float(np.median([v["median"] for v in info.values()])) if info else np.nan
    cells = []
    for (s, n), r in sorted(ratios.items()):
        v = np.array([r.get(t, np.nan) for t in sorted(info)], float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            cells.append({"task": "pooled", "sigma": float(s), "N": float(n), "time_to_threshold": mm * float(np.nanmean(v)),
                          "time_to_threshold_std": mm * float(np.nanstd(v)), "n_tasks": int(np.isfinite(v).sum())})
    return cells, info


# ------------------------------------------------------------------------ R2: intrinsic performance


def intrinsic_performance(curves_by_size):
    """R2's intrinsic performance. curves_by_size: {N: (compute [T] increasing, return [T])}.
    Frontier R*(C) = max_N R_N(C) (each curve made monotone with a running max, then stepped);
    I(R) = min{C : R*(C) >= R}. Returns {N: (E index mask, I [T])} as I of every logged return."""
    grid = np.unique(np.concatenate([np.asarray(c, float) for c, _ in curves_by_size.values()]))
    frontier = np.full(len(grid), -np.inf)
    for c, r in curves_by_size.values():
        best = np.maximum.accumulate(np.asarray(r, float))
        idx = np.searchsorted(np.asarray(c, float), grid, side="right") - 1
        val = np.where(idx >= 0, best[np.clip(idx, 0, None)], -np.inf)
        frontier = np.maximum(frontier, val)
    frontier = np.maximum.accumulate(frontier)
    out = {}
    for n, (c, r) in curves_by_size.items():
        j = np.searchsorted(frontier, np.asarray(r, float), side="left")  # first C with R* >= R
        out[n] = np.where(j < len(grid), grid[np.clip(j, 0, len(grid) - 1)], np.nan)
    return out


def fit_intrinsic(n_params, env_steps, intrinsic):
    with threadpool_limits(1, "blas"):
        return _fit_intrinsic(n_params, env_steps, intrinsic)


def _fit_intrinsic(n_params, env_steps, intrinsic):
    """R2: I^(-beta) = (N_c/N)^alpha_N + (E_c/E)^alpha_E with beta = aN aE / (aN + aE), squared error
    in log space. Returns the parameters and the compute-optimal exponent N_opt ~ C^(aE/(aN+aE))."""
    n, e, i = (np.asarray(v, float) for v in (n_params, env_steps, intrinsic))
    ok = np.isfinite(i) & (i > 0) & (e > 0)
    n, e, i = n[ok], e[ok], i[ok]
    if len(np.unique(n)) < 2 or len(i) < 5:
        raise AnalysisInputError("intrinsic-performance fit needs runs at >= 2 model sizes and >= 5 points")
    li = np.log10(i)

    def loss(p):
        lnc, an, lec, ae = p
        beta = an * ae / (an + ae)
        with np.errstate(all="ignore"):
            rhs = np.log10((10 ** lnc / n) ** an + (10 ** lec / e) ** ae)
        v = np.mean((-beta * li - rhs) ** 2)
        return v if np.isfinite(v) else 1e6

    best = None
    for an in (0.3, 1.0):
        for ae in (0.3, 1.0):
            p0 = [np.log10(n.min()), an, np.log10(e.min()), ae]
            r = optimize.minimize(loss, p0, method="L-BFGS-B", bounds=[(None, None), (0.01, 5), (None, None), (0.01, 5)])
            if best is None or r.fun < best.fun:
                best = r
    lnc, an, lec, ae = best.x
    return {"N_c": float(10 ** lnc), "alpha_N": float(an), "E_c": float(10 ** lec), "alpha_E": float(ae),
            "beta": float(an * ae / (an + ae)), "n_opt_exponent": float(ae / (an + ae)),
            "loss": float(best.fun), "converged": bool(best.success)}
