"""R5 (Fu, Rybkin et al. 2025): time to threshold per (task, sigma, N) with the best batch size, its pooled
multi-task variant with BRO's reset filter, and the (sigma, N) surface (docs/science.md 3)."""

import warnings

import numpy as np
from scipy import optimize
from threadpoolctl import threadpool_limits

from ..errors import AnalysisInputError
from .curves import crossing_steps, isotonic


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
    """R5's surface D(sigma, N) = C (1 + (A / sigma)^alpha + (B / N)^beta), fitted as R5 does (docs/science.md 3):
    sigma and N mapped log-affinely onto [0.5, 2], times divided by their mean, the five parameters
    softplus of free ones starting at 0, loss mean((ln pred - ln y)^2), L-BFGS-B (ftol = gtol = 1e-12) from
    that single start; then mapped back to original units: A = A'^s e^m, alpha = alpha' / s (same for B)."""
    s, n, d = (np.asarray(v, float) for v in (sigma, n_params, data))
    ok = np.isfinite(d) & (d > 0) & np.isfinite(s) & np.isfinite(n)
    s, n, d = s[ok], n[ok], d[ok]
    if len(np.unique(n)) < 2 or len(np.unique(s)) < 2 or len(d) < 6:
        raise AnalysisInputError(
            "the (sigma, N) surface has 5 parameters: it needs >= 2 model sizes, "
            f">= 2 UTDs and >= 6 crossings; got {len(np.unique(n))} sizes, "
            f"{len(np.unique(s))} UTDs, {len(d)} crossings"
        )
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
            g = (
                np.array(
                    [
                        np.sum(r) / C,
                        np.sum(r * al * u / A / q),
                        np.sum(r * u * np.log(A / xs) / q),
                        np.sum(r * be * v / B / q),
                        np.sum(r * v * np.log(B / xn) / q),
                    ]
                )
                * 2
                / len(r)
            )
        f = np.mean(r**2)
        if not np.isfinite(f):
            return 1e6, np.zeros(5)
        return f, g / (1 + np.exp(-t))  # chain rule through softplus

    r = optimize.minimize(
        loss, np.zeros(5), jac=True, method="L-BFGS-B", options={"ftol": 1e-12, "gtol": 1e-12}
    )
    C, A, al, B, be = _softplus(r.x)
    return {
        "C": float(C * scale),
        "A": float(A**ss * np.exp(ms)),
        "alpha": float(al / ss),
        "B": float(B**sn * np.exp(mn)),
        "beta": float(be / sn),
        "loss": float(r.fun),
        "converged": bool(r.success),
        "message": str(r.message),
    }


def surface_value(f, sigma, n_params):
    """R5's surface at (sigma, N): C (1 + (A / sigma)^alpha + (B / N)^beta)."""
    return f["C"] * (
        1
        + (f["A"] / np.asarray(sigma, float)) ** f["alpha"]
        + (f["B"] / np.asarray(n_params, float)) ** f["beta"]
    )


def surface_optimum(f, budget_fn, sigma_range, n_range, n=60):
    """Minimise F(sigma, N) = budget_fn(sigma, N, D) over a log grid of the ranges that were run."""
    s = np.logspace(*np.log10(sigma_range), n)[:, None]
    m = np.logspace(*np.log10(n_range), n)[None, :]
    d = surface_value(f, s, m)
    F = budget_fn(s, m, d)
    i, j = np.unravel_index(np.argmin(F), F.shape)
    return {"sigma": float(s[i, 0]), "model_size": float(m[0, j]), "F": float(F[i, j]), "D": float(d[i, j])}


def r5_cells(curves, thresholds, n_boot=100, seed=42, key="returns", keep=None):
    """R5's time to threshold per (task, sigma, N) with the empirically best batch size (docs/science.md 3).

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
            point = float(crossing_steps(np.nanmean(y, 1), steps, J))
            if n_boot:
                pick = rs.randint(0, y.shape[1], size=(n_boot, y.shape[1]))
                boot = crossing_steps(np.nanmean(y[:, pick], -1).T, steps, J)  # [n_boot]
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
        out.append(
            {
                "task": task,
                "sigma": float(sigma),
                "N": float(n),
                "time_to_threshold": time,
                "time_to_threshold_std": std,
                "n_boot_finite": nb,
            }
        )
    return out


def drop_after_resets(steps, y, reset_every_env_steps):
    """BRO resets its networks every `reset_every_env_steps` env steps (2.5e6 / sigma): after each reset,
    set the evaluations to NaN until the seed-mean return is back at its level at the last evaluation
    before the reset. y [T, R] -> a copy with those rows NaN (docs/science.md 3, pooled variant)."""
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
            y[after[0] : stop] = np.nan
        t += float(reset_every_env_steps)
    return y


def r5_pooled(curves, bases, reset_every_grad_steps=None, n_thresholds=20, key="returns"):
    """R5's pooled multi-task variant (BRO ablations; docs/science.md 3). curves: records of the selected
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
        by_task.setdefault(c["task"], []).append(
            (c["sigma"], c["model_size"], c["steps"][ok], isotonic(mean[ok]))
        )
    info, ratios = {}, {}
    for task, rows in by_task.items():
        q20 = np.percentile([iso[-1] for *_, iso in rows], 20)
        top = np.floor(0.95 * q20 / 10) * 10
        Js = np.linspace(float(bases[task]), top, n_thresholds)
        cross = np.array(
            [
                [steps[np.argmax(iso >= J)] if (iso >= J).any() else np.nan for J in Js]
                for _, _, steps, iso in rows
            ]
        )  # [settings, 20]
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
            cells.append(
                {
                    "task": "pooled",
                    "sigma": float(s),
                    "N": float(n),
                    "time_to_threshold": mm * float(np.nanmean(v)),
                    "time_to_threshold_std": mm * float(np.nanstd(v)),
                    "n_tasks": int(np.isfinite(v).sum()),
                }
            )
    return cells, info
