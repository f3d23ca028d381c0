"""R1's hyperparameter rules (docs/science.md 2.8) fitted from the runs: from a (B, lr) sweep, the
bootstrap-corrected best values per (task, sigma) and their shared-slope rules; without a sweep, the runs'
configured values."""

import numpy as np

from . import fit
from .errors import AnalysisInputError
from .load import config_frame


def hparam_rules(curves, sweep_threshold, n_boot, rng, no_crossing="first"):
    """Bootstrap-corrected best B and lr per (task, sigma) and the shared-slope rules (docs/science.md 2.8).
    Returns (rules {"batch_size", "learning_rate"}, the best-values table, notes)."""
    meta = config_frame(curves)
    pt, bt = fit.crossings(curves, [float(sweep_threshold)], n_boot, rng)
    if not np.isfinite(pt).any():
        best_ret = max(float(np.nanmax(c["norm"].mean(1))) for c in curves)
        raise AnalysisInputError(
            f"no configuration reaches the sweep threshold J = {sweep_threshold}; "
            f"lower `sweep_threshold` (best return reached: {best_ret:.0f} / 1000)"
        )
    best = fit.best_hparams(meta, pt[:, 0], bt[:, :, 0], no_crossing=no_crossing)
    out, notes = {}, []
    for name, col, key in (("batch_size", "bs_boot", "batch_size"), ("learning_rate", "lr_boot", "lr")):
        r = fit.shared_slope(best["task"], best["sigma"], best[col])
        # bootstrap interval of the slope: refit on each resample's best values
        res = np.stack(best[col + "_resamples"].to_list()) if n_boot else None
        slopes = []
        if res is not None:
            for j in range(res.shape[1]):
                try:
                    slopes.append(fit.shared_slope(best["task"], best["sigma"], res[:, j])["slope"])
                except AnalysisInputError:
                    pass
        r["slope_ci95"] = fit.percentile_interval(slopes, (2.5, 97.5))
        r["source"] = f"sweep: bootstrap-corrected best at J={sweep_threshold}"
        # the values the sweep tried: a rule is measured only inside them, and users of the rule (sweep
        # rules=, recommend) clip to this range rather than extrapolate a two-point slope to a value nobody
        # ran
        r["swept"] = [float(meta[key].min()), float(meta[key].max())]
        out[name] = r
    nob = int(best["bs_nobest"].sum() + best["lr_nobest"].sum())
    if nob:
        how = "smallest value taken, as R1" if no_crossing == "first" else "left out"
        notes.append(
            f"{nob} (group, resample) pairs had no value reaching J={sweep_threshold}; "
            f"no_crossing={no_crossing!r} ({how})"
        )
    best = best.drop(columns=[c for c in best.columns if c.endswith("_resamples")])
    return out, best, notes


def configured_rules(meta):
    """Rules from the (B, lr) the runs were configured with (one config per task and UTD)."""
    out = {}
    for name, col in (("batch_size", "batch_size"), ("learning_rate", "lr")):
        g = meta.groupby(["task", "sigma"], as_index=False)[col].mean()
        if g[col].notna().all() and g["sigma"].nunique() >= 2:
            r = fit.shared_slope(g["task"], g["sigma"], g[col])
            r["source"] = "configured values of the runs (no sweep)"
            out[name] = r
    return out
