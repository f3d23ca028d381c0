"""R1's power law c + (x / b)^(-a) and its least-squares fits, one at a time (scipy L-BFGS-B) and many
at once (the bootstrap resamples, vectorised Levenberg-Marquardt)."""

import numpy as np
from scipy import optimize
from threadpoolctl import threadpool_limits

from ..errors import AnalysisInputError


def power_law(x, a, b, c):
    """R1's normalised form: c + (x / b)^(-a)."""
    return c + (np.asarray(x, float) / b) ** (-a)


def _loss_grad(p, x, y):
    a, b, c = p
    u = (x / b) ** (-a)
    r = c + u - y
    n = len(x)
    f = np.mean(r**2)
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
            f"with a crossing; got {len(np.unique(x))} ({sorted(np.unique(x).tolist())}). "
            f"Run more UTD values or lower the thresholds."
        )
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
            r = optimize.minimize(
                _loss_grad,
                s,
                args=(x, y),
                jac=True,
                method="L-BFGS-B",
                bounds=[(-20, 20), (1e-9, None), (None, None)],
            )
        if np.isfinite(r.fun) and (best is None or r.fun < best.fun):
            best = r
    if best is None:
        return {
            "a": np.nan,
            "b": np.nan,
            "c": np.nan,
            "loss": np.nan,
            "converged": False,
            "message": "no start gave a finite loss",
        }
    a, b, c = best.x
    return {
        "a": float(a),
        "b": float(b),
        "c": float(c),
        "loss": float(best.fun),
        "converged": bool(best.success),
        "message": str(best.message),
    }


def _brute_starts(x, Y):
    """Best start of R1's brute-force grid for each row of Y [P, n] -> [P, 3] (a, b, c)."""
    A, B, C = np.meshgrid(_A0, np.maximum(_B0, 1e-3), _C0, indexing="ij")
    g = np.column_stack([A.ravel(), B.ravel(), C.ravel()])  # [G, 3]
    with np.errstate(all="ignore"):
        pred = g[:, 2:3] + (x[None] / g[:, 1:2]) ** (-g[:, 0:1])  # [G, n]
        loss = np.nanmean((pred[None] - Y[:, None]) ** 2, -1)  # [P, G]
    loss[~np.isfinite(loss)] = np.inf
    return g[np.argmin(loss, 1)]


def solve_each(H, g):
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
    f = np.sum(r**2, 1)
    done = np.zeros(len(Yg), bool)
    for _ in range(iters):
        Jm = np.stack([-u * (lx - p[:, 1:2]), p[:, 0:1] * u, np.ones_like(u)], -1)  # [P, n, 3]
        g = np.einsum("pni,pn->pi", Jm, r)
        H = np.einsum("pni,pnj->pij", Jm, Jm)
        Hd = H + lam[:, None, None] * (np.eye(3)[None] * (np.diagonal(H, 0, 1, 2)[:, :, None] + 1e-12))
        step = -solve_each(Hd, g)
        stuck = ~np.isfinite(step).all(1)  # a singular or overflowing system: no step; more damping next time
        step[stuck | done] = 0.0
        pn = p + step
        rn, un = resid(pn)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflowing trial step is rejected just below
            fn = np.sum(rn**2, 1)
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
    with np.errstate(
        over="ignore"
    ):  # a diverged problem's log b: b = inf, not converged (a result, not a warning)
        out["a"][good], out["b"][good], out["c"][good] = p[:, 0], np.exp(p[:, 1]), p[:, 2]
    out["loss"][good] = f / len(x)
    out["converged"][good] = done & np.isfinite(f)
    return out
