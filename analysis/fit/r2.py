"""R2 (Hilton et al. 2023): intrinsic performance and its fit in model size and env steps (docs/science.md 4)."""

import numpy as np
from scipy import optimize
from threadpoolctl import threadpool_limits

from ..errors import AnalysisInputError


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
            rhs = np.log10((10**lnc / n) ** an + (10**lec / e) ** ae)
        v = np.mean((-beta * li - rhs) ** 2)
        return v if np.isfinite(v) else 1e6

    best = None
    for an in (0.3, 1.0):
        for ae in (0.3, 1.0):
            p0 = [np.log10(n.min()), an, np.log10(e.min()), ae]
            r = optimize.minimize(
                loss, p0, method="L-BFGS-B", bounds=[(None, None), (0.01, 5), (None, None), (0.01, 5)]
            )
            if best is None or r.fun < best.fun:
                best = r
    lnc, an, lec, ae = best.x
    return {
        "N_c": float(10**lnc),
        "alpha_N": float(an),
        "E_c": float(10**lec),
        "alpha_E": float(ae),
        "beta": float(an * ae / (an + ae)),
        "n_opt_exponent": float(ae / (an + ae)),
        "loss": float(best.fun),
        "converged": bool(best.success),
    }
