"""The analysis's compute and budget stages (docs/science.md 1, 2.6-2.7): the compute count, wall clock,
the data-compute Pareto frontier and the budget-optimal UTD sigma*(F), each adding its part of `fits`."""

import numpy as np

from . import fit, load, wallclock
from .errors import AnalysisInputError


def _compute_stage(cfg, st, rl, fits):
    """The batch size and the compute count. Returns (N, FLOPs per sample or None (R1's 10 N), the compute
    formula (None: no N, compute outputs skipped), the batch size's source)."""
    dchosen = st.chosen
    dsizes = sorted({c["model_size"] for c in dchosen if np.isfinite(c["model_size"])})
    n_params = (
        cfg["model_size"] if cfg["model_size"] is not None else (dsizes[0] if len(dsizes) == 1 else None)
    )
    brule = (rl.sweep_rules or rl.rules).get("batch_size") if (rl.sweep_rules or cfg["hparam_fits"]) else None
    if brule is not None:
        st.batch_fn = lambda s: fit.rule_value(brule, s)
        bsrc = "hparam_fits batch-size rule, averaged over tasks (R1)"
    else:  # each run's own batch size, mean over tasks, interpolated in log-log between UTDs
        bs = load.config_frame(dchosen).groupby("sigma")["batch_size"].mean()
        st.batch_fn = lambda s: (
            10 ** np.interp(np.log10(s), np.log10(bs.index.to_numpy()), np.log10(bs.to_numpy()))
        )
        bsrc = "runs' own batch sizes"
    fps = None
    if cfg["compute"] == "measured":
        ratios = np.concatenate([wallclock.flops_per_sample(c) for c in dchosen])
        if not len(ratios):
            raise AnalysisInputError(
                "compute: measured needs runs that log `flops` and `critic_updates`; use compute: r1"
            )
        fps = float(np.median(ratios))
        csrc = f"measured FLOPs: {fps:.3g} FLOPs per sample per update (median over runs)"
    elif n_params is None:  # a sweep (stage 1) needs no N: the rules and D_J fits stand, compute is skipped
        csrc = None
        fits["notes"].append(
            "no critic size N (`model_size`, or run.json's critic_params): compute C_J, the "
            "Pareto frontier and the budget fit are skipped (R1's hyperparameter rules need "
            "no N)"
        )
    else:
        csrc = f"R1: C = 10 * N * B * sigma * D with N = {n_params:g}"
    return n_params, fps, csrc, bsrc


def _wall_clock_stage(cfg, full_table, st, pt, J, delta_measured, fits):
    """budget: wall_clock (analysis/wallclock.py), and delta: measured = the median of the runs' delta (a R, or
    with a per-update cost u, a f / (u + f / R) at f FLOPs per update)."""
    wall = wallclock.budget_outputs(
        full_table, st.chosen, pt, J, st.fit_j, st.point_fits, st.utds, st.batch_fn, fits["notes"]
    )
    if delta_measured:
        measured = [r for r in (wall or {}).get("rates", []) if r.get("delta") is not None]
        ds = [r["delta"] for r in measured if r["delta"] > 0 and r["transition_time_share"] >= 1e-3]
        if measured and not ds:
            raise AnalysisInputError(
                "delta: measured: the runs' rates give a ~ 0 s per transition (transitions take < 0.1% of the "
                "logged time beside the updates, e.g. the members of a large population on a CPU), so delta = "
                "a R ~ 0 and no budget has an interior optimum; set analysis delta to FLOPs per transition"
            )
        if not ds:
            raise AnalysisInputError(
                "delta: measured needs runs whose logs give both rates (see the wall_clock notes)"
            )
        cfg["delta"] = float(np.median(ds))
        fits["notes"].append(
            f"delta = {cfg['delta']:.3g} FLOPs per transition, measured from the runs' rates (analysis/wallclock.py)"
        )
    fits["wall_clock"] = wall


def _pareto_stage(st, J, n_params, fps, fits):
    batch_fn = st.batch_fn
    if fps is None:
        st.compute_fn = lambda s, d: fit.compute_r1(s, d, batch_fn(s), n_params)
    else:
        st.compute_fn = lambda s, d: fps * batch_fn(s) * s * d
    pareto = []
    norm, m = fit.pooled_times(st.times)
    for k in st.fit_j:
        d = norm[:, k] * m
        c = st.compute_fn(st.utds, d)
        mask = fit.pareto_mask(c, d)
        pareto += [
            {"J": float(J[k]), "sigma": float(s), "C": float(cc), "D": float(dd), "frontier": bool(mm)}
            for s, cc, dd, mm in zip(st.utds, c, d, mask)
            if np.isfinite(dd)
        ]
    fits["pareto"] = pareto


def _budget_stage(cfg, st, J, n_params, fps, n_boot, fits):
    """sigma*(F): the budget optimum of each threshold's D_J fit, a power law in F with a bootstrap interval
    of its exponent and the largest budgets held out."""
    point, boot_fits, utds, batch_fn = st.point_fits, st.boot_fits, st.utds, st.batch_fn
    st.budget_optimum_fn = lambda f: fit.budget_optimum(
        f, (utds.min(), utds.max()), batch_fn, n_params or 0, cfg["delta"], fps
    )
    bfun = st.budget_optimum_fn
    ok = [n for n in range(len(st.fit_j)) if point[n].get("converged")]
    opts = [dict(bfun(point[n]), J=float(J[st.fit_j[n]])) for n in ok]
    k = cfg["holdout_top_k"]
    try:
        bf = fit.budget_fit([o["F"] for o in opts], [o["sigma"] for o in opts], k)
        exps = []
        for r in range(n_boot):
            o = [bfun(boot_fits[r][n]) for n in ok if boot_fits[r][n].get("converged")]
            try:
                exps.append(fit.budget_fit([x["F"] for x in o], [x["sigma"] for x in o], k)["exponent"])
            except AnalysisInputError:
                pass
        bf["exponent_ci95"] = fit.percentile_interval(exps, (2.5, 97.5))
        fits["budget"] = {
            "sigma_star": {
                "coef": bf["coef"],
                "exponent": bf["exponent"],
                "exponent_ci95": bf["exponent_ci95"],
            },
            "holdout_rel_error": bf["holdout_rel_error"],
            "holdout_rel_errors": bf["holdout_rel_errors"],
            "holdout_top_k": k,
            "points": opts,
            "n_train": bf["n_train"],
        }
        if bf["poorly_conditioned"]:
            fits["notes"].append(
                "budget fit poorly conditioned (numpy's polyfit): its optima span F = %.3g ... %.3g; add "
                "thresholds or UTDs whose optima differ in budget" % (min(bf["F"]), max(bf["F"]))
            )
    except AnalysisInputError as e:
        fits["budget"] = {"error": str(e)}
        fits["notes"].append(f"budget fit skipped: {e}")
