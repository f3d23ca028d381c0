"""D_J(sigma) at every threshold in one fit, so the laws stay identifiable and ordered in J.

R1 fits D_J(sigma) = D_min + (beta/sigma)^alpha at each threshold on its own: 3 parameters from ~4 UTDs, so a
seed-bootstrap resample can trade D_min against beta and alpha freely (intervals of beta up to 1e31 on our
Pendulum study) and nothing keeps D_J increasing in J. Here all thresholds share one alpha (R1's fits on its
own data give alphas that differ less than their intervals; R5 fits its thresholds jointly for the same
reason) and each has its own D_min and beta, built as cumulative sums of positive increments, so D_min >= 0,
beta > 0 and D_J(sigma) is nondecreasing in J at every sigma by construction. The fit is least squares on
log D (relative errors: a 10% miss counts the same at 2e3 and 2e4 env steps), on the pooled normalised
times (R1's pooling, fit.pooled_times) as R1's fits are.

Returns R1's per-threshold dicts (a, b, c, m, D_min, alpha, beta, ...), so everything downstream
(d_of_sigma, budget optima, predictions) reads them unchanged. Hand-written over scipy's least_squares:
scipy has no monotone multi-curve power-law fit.
"""

import numpy as np
from scipy import optimize

from ..errors import AnalysisInputError
from .r1 import pooled_times


def _unpack(theta, K):
    alpha = np.exp(theta[0])
    c = np.cumsum(np.exp(theta[1 : 1 + K]))  # D_min / m per threshold, nondecreasing
    b = np.cumsum(np.exp(theta[1 + K :]))  # beta scale per threshold, nondecreasing
    return alpha, c, b


def _model(theta, x, K):
    alpha, c, b = _unpack(theta, K)
    return c[None, :] + (b[None, :] / x[:, None]) ** alpha  # [n_utd, K]


def _increments(v):
    v = np.maximum.accumulate(np.maximum(np.asarray(v, float), 1e-6))
    d = np.diff(v, prepend=0.0)
    return np.log(np.maximum(d, 1e-3 * v))


def _start(x, y, alpha):
    """A start for one alpha: D_min = half the smallest D_J over sigma, beta from the smallest sigma."""
    lo = np.nanmin(y, 0)
    c = 0.5 * lo
    i = np.argmin(x)
    top = np.where(np.isfinite(y[i]), y[i], np.nanmax(y, 0))
    b = x[i] * np.maximum(top - c, 1e-3 * lo) ** (1.0 / alpha)
    return np.concatenate([[np.log(alpha)], _increments(c), _increments(b)])


def fit_joint(x, y, starts=None):
    """One joint fit. x [n_utd], y [n_utd, K] normalised D_J (NaN: not reached). Returns dict(theta, alpha,
    c [K], b [K], loss, converged, message)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    K = y.shape[1]
    ok = np.isfinite(y) & (y > 0)
    if (ok.sum(0) < 2).any() or ok.sum() < 2 * K + 2 or len(np.unique(x[ok.any(1)])) < 3:
        raise AnalysisInputError(
            f"the joint D_J(sigma) fit has {2 * K + 1} parameters and needs every threshold reached at >= 2 "
            f"UTDs and >= 3 distinct UTDs in all; got {int(ok.sum())} crossings over {len(np.unique(x))} UTDs"
        )
    ly = np.log(np.where(ok, y, 1.0))

    def resid(theta):
        with np.errstate(all="ignore"):
            r = np.log(_model(theta, x, K)) - ly
        return np.where(ok, np.nan_to_num(r, nan=1e3, posinf=1e3, neginf=-1e3), 0.0).ravel()

    best = None
    for th in starts if starts is not None else [_start(x, y, a) for a in (0.5, 1.0, 2.0)]:
        r = optimize.least_squares(resid, th, method="lm", xtol=1e-12, ftol=1e-12, max_nfev=4000)
        if best is None or r.cost < best.cost:
            best = r
    alpha, c, b = _unpack(best.x, K)
    return {
        "theta": best.x,
        "alpha": float(alpha),
        "c": c,
        "b": b,
        "loss": float(2 * best.cost / ok.sum()),  # mean squared log error
        "converged": bool(best.success and np.isfinite(best.cost)),
        "message": str(best.message),
    }


def _rows(f, m):
    """R1's per-threshold dict form (power_law(x, a, b, c) = c + (x/b)^(-a) = c + (b/x)^a, times m)."""
    a = f["alpha"]
    return [
        {
            "a": a,
            "b": float(b),
            "c": float(c),
            "m": float(m),
            "D_min": float(m * c),
            "alpha": a,
            "beta": float(b * m ** (1.0 / a)),
            "loss": f["loss"],
            "converged": f["converged"],
            "message": f["message"],
        }
        for b, c in zip(f["b"], f["c"])
    ]


def data_efficiency_joint(utds, times):
    """The joint fit on R1's pooled times. utds [n_utd], times [n_task, n_utd, K] -> one dict per threshold
    (R1's keys), or each with an `error` when the fit cannot be made."""
    norm, m = pooled_times(times)
    try:
        return _rows(fit_joint(utds, norm), m)
    except AnalysisInputError as e:
        return [{"error": str(e), "converged": False} for _ in range(times.shape[2])]


def data_efficiency_joint_boot(utds, btimes, point=None):
    """The joint fit on every bootstrap resample btimes [R, n_task, n_utd, K] (started from the point fit's
    parameters, then the usual starts if that fails) -> list over K of dicts of arrays [R], as
    r1.data_efficiency_boot."""
    R, K = btimes.shape[0], btimes.shape[-1]
    keys = ("a", "b", "c", "m", "D_min", "alpha", "beta", "loss")
    out = [{q: np.full(R, np.nan) for q in keys} for _ in range(K)]
    for o in out:
        o["converged"] = np.zeros(R, bool)
    th0 = None
    if point and all(p.get("converged") for p in point):
        th0 = np.concatenate(
            [
                [np.log(point[0]["a"])],
                _increments([p["c"] for p in point]),
                _increments([p["b"] for p in point]),
            ]
        )
    for r in range(R):
        norm, m = pooled_times(btimes[r])
        ok = np.isfinite(norm) & (norm > 0)
        try:
            starts = None
            if th0 is not None:
                starts = [th0] + [_start(utds, np.where(ok, norm, np.nan), a) for a in (0.5, 2.0)]
            rows = _rows(fit_joint(utds, norm, starts), m)
        except AnalysisInputError:
            continue
        for k, row in enumerate(rows):
            for q in keys:
                out[k][q][r] = row[q]
            out[k]["converged"][r] = row["converged"]
    return out
