"""The analysis as one function: tidy table -> every fit of science.md -> a results dict (fits.json).

`run_analysis(cfg)` only computes; `write_outputs` (report.py) writes tables, plots and report.md.
"""
import json
import os
import warnings

import numpy as np
import pandas as pd

from . import fit, load
from .load import AnalysisInputError

DEFAULTS = {
    "inputs": [], "format": "auto", "max_returns": {}, "thresholds": None, "sweep_threshold": 800.0,
    "model_size": None, "delta": 4e9, "holdout_top_k": 2, "bootstrap": 100, "hparam_fits": None,
    "out": "analysis_out", "seed": 0, "compute": "r1", "no_crossing": "first", "plots": True,
    # R5 (science.md 3): per-task absolute thresholds ({task: J} or {task: [J, ...]}), R5's threshold rule
    "threshold_rule": None, "threshold_base": {}, "tasks": None, "exclude": {}, "reset_every_grad_steps": None,
    "pool": None, "r5_seed": 42,
    "min_returns": {}, "returns": "auto", "budget": "flops",
}
R5_FORMATS = ("model_scaling", "bro_ablations")
EXCLUDE_AXES = ("width", "size", "sigma", "batch_size")
RETURNS = ("auto", "eval", "train")  # auto: the deterministic-policy eval return when every run logs it
BUDGETS = ("flops", "wall_clock")


def _pct(a, q):
    a = np.asarray(a, float)
    a = a[np.isfinite(a)]
    return [float(np.percentile(a, q[0])), float(np.percentile(a, q[1]))] if len(a) else [None, None]


def _meta(curves):
    return pd.DataFrame([{k: c[k] for k in load.CONFIG_KEYS + ["n_seeds"]} for c in curves])


def hparam_rules(curves, sweep_threshold, n_boot, rng, no_crossing="first"):
    """Bootstrap-corrected best B and lr per (task, sigma) and the shared-slope rules (science.md 2.8)."""
    meta = _meta(curves)
    pt, bt = fit.crossings(curves, [float(sweep_threshold)], n_boot, rng)
    if not np.isfinite(pt).any():
        raise AnalysisInputError(f"no configuration reaches the sweep threshold J = {sweep_threshold}; "
                                 f"lower `sweep_threshold` (best return reached: "
                                 f"{max(float(np.nanmax(c['norm'].mean(1))) for c in curves):.0f} / 1000)")
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
        r["slope_ci95"] = _pct(slopes, (2.5, 97.5))
        r["source"] = f"sweep: bootstrap-corrected best at J={sweep_threshold}"
        # the values the sweep tried: a rule is measured only inside them, and users of the rule (sweep rules=,
        # recommend) clip to this range rather than extrapolate a two-point slope to a value nobody ran
        r["swept"] = [float(meta[key].min()), float(meta[key].max())]
        out[name] = r
    nob = int(best["bs_nobest"].sum() + best["lr_nobest"].sum())
    if nob:
        notes.append(f"{nob} (group, resample) pairs had no value reaching J={sweep_threshold}; "
                     f"no_crossing={no_crossing!r} ({'smallest value taken, as R1' if no_crossing == 'first' else 'left out'})")
    best = best.drop(columns=[c for c in best.columns if c.endswith("_resamples")])
    return out, best, notes


def _configured_rules(meta):
    """Rules from the (B, lr) the runs were configured with (one config per task and UTD)."""
    out = {}
    for name, col in (("batch_size", "batch_size"), ("learning_rate", "lr")):
        g = meta.groupby(["task", "sigma"], as_index=False)[col].mean()
        if g[col].notna().all() and g["sigma"].nunique() >= 2:
            r = fit.shared_slope(g["task"], g["sigma"], g[col])
            r["source"] = "configured values of the runs (no sweep)"
            out[name] = r
    return out


def run_analysis(cfg, api=None):
    """Every step of science.md 2-4 on the inputs of `cfg` (keys as DEFAULTS). Returns the results dict."""
    # One BLAS thread: scipy's L-BFGS-B calls BLAS on 3-vectors thousands of times, and OpenBLAS's
    # thread start/stop made each call ~100x slower on the 2-core machine (measured: 280 ms vs 3 ms a fit).
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _run(cfg, api)


def _num(cfg, key, typ=float):
    """YAML 1.1 reads `1.5e5` (no dot, no sign) as a string: coerce numbers, name the key if impossible."""
    try:
        return typ(float(cfg[key])) if typ is int else typ(cfg[key])
    except (TypeError, ValueError):
        raise AnalysisInputError(f"config key `{key}` must be a number, got {cfg[key]!r}") from None


def _check_types(cfg):
    """The shapes _run relies on, each wrong one named (YAML lets any key hold anything)."""
    if isinstance(cfg["inputs"], str):
        cfg["inputs"] = [cfg["inputs"]]
    if not isinstance(cfg["inputs"], (list, tuple)) or not all(isinstance(x, str) for x in cfg["inputs"]):
        raise AnalysisInputError(f"config key `inputs` must be a list of paths or wandb://entity/project, got {cfg['inputs']!r}")
    for key, options in (("format", ("auto", "runs", "qscaled", "wandb", "model_scaling", "bro_ablations")), ("compute", ("r1", "measured")),
                         ("no_crossing", ("first", "skip"))):
        if cfg[key] not in options:
            raise AnalysisInputError(f"config key `{key}` must be one of {list(options)}, got {cfg[key]!r}")
    for key in ("out", "hparam_fits"):
        if cfg[key] is not None and not isinstance(cfg[key], str):
            raise AnalysisInputError(f"config key `{key}` must be a path, got {cfg[key]!r}")
    if not isinstance(cfg["max_returns"], dict):
        raise AnalysisInputError(f"config key `max_returns` must map task -> R_max, got {cfg['max_returns']!r}")
    if cfg["thresholds"] is not None and not isinstance(cfg["thresholds"], (list, tuple, dict)):
        raise AnalysisInputError(f"config key `thresholds` must be a list of numbers or map task -> J (or [J, ...]), "
                                 f"got {cfg['thresholds']!r}")
    if not isinstance(cfg["plots"], bool):
        raise AnalysisInputError(f"config key `plots` must be true or false, got {cfg['plots']!r}")


def _run(cfg, api=None):
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise AnalysisInputError(f"unknown config key(s) {unknown}; known: {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **{k: v for k, v in dict(cfg).items() if v is not None}}
    _check_types(cfg)
    if _is_r5(cfg):
        return r5_analysis(cfg, api)
    delta_measured = cfg["delta"] == "measured"  # delta = a * R from the runs' rates (analysis/wallclock.py)
    if delta_measured:
        cfg["delta"] = DEFAULTS["delta"]
    for k in ("sweep_threshold", "delta"):
        cfg[k] = _num(cfg, k)
    for k, options in (("returns", RETURNS), ("budget", BUDGETS)):
        if cfg[k] not in options:
            raise AnalysisInputError(f"config key `{k}` must be one of {list(options)}, got {cfg[k]!r}")
    for k in ("bootstrap", "holdout_top_k", "seed"):
        cfg[k] = _num(cfg, k, int)
    if cfg["model_size"] is not None:
        cfg["model_size"] = _num(cfg, "model_size")
    if cfg["thresholds"] is not None:
        cfg["thresholds"] = [_num({"thresholds": t}, "thresholds") for t in cfg["thresholds"]]
    for key in ("max_returns", "min_returns"):
        cfg[key] = {t: _num({f"{key}.{t}": v}, f"{key}.{t}") for t, v in (cfg[key] or {}).items()}
    rng = np.random.default_rng(cfg["seed"])
    n_boot = int(cfg["bootstrap"])
    table, skipped = load.load(cfg["inputs"], cfg["format"], api=api)
    full_table = table  # every log point: the wall-clock rates use all intervals, not only the eval points
    table, returns_note = _pick_returns(table, cfg["returns"])
    curves = load.curves(table)
    if not curves:
        raise AnalysisInputError("inputs hold no log point with a return: nothing to analyse")
    fit.normalise(curves, cfg["max_returns"], cfg["min_returns"])
    meta = _meta(curves)
    J = np.asarray(cfg["thresholds"] if cfg["thresholds"] is not None else fit.log_thresholds(), float)
    res = {"config": {k: cfg[k] for k in DEFAULTS if k not in ("inputs",)} | {"inputs": list(cfg["inputs"]) if not isinstance(cfg["inputs"], str) else [cfg["inputs"]]},
           "thresholds": J.tolist(), "skipped": [{"path": str(p), "reason": r} for p, r in skipped], "notes": [],
           "returns": returns_note}
    res["counts"] = {"configs": len(curves), "tasks": int(meta.task.nunique()), "utds": sorted(meta.sigma.unique().tolist()),
                     "seeds_min": int(meta.n_seeds.min()), "rows": int(len(table))}

    # ---- hyperparameter rules
    algos = sorted(meta.algo.astype(str).unique())
    experts = sorted(meta.experts.unique().tolist())
    if len(algos) > 1 or len(experts) > 1:
        raise AnalysisInputError(f"inputs mix algorithms {algos} / expert counts {experts}: analyse one "
                                 "(algorithm, experts) at a time - give `inputs` that hold only those runs")
    size_key = meta.model_size.fillna(-1.0)
    swept = meta.assign(_n=size_key).groupby(["task", "sigma", "_n"]).size().max() > 1  # several (B, lr)
    best_table = None
    if swept:
        sweep_curves = curves
        if size_key.nunique() > 1:  # rules at the most common model size (R5's N-dependent rule is not fitted)
            common = size_key.mode().iloc[0]
            sweep_curves = [c for c, n in zip(curves, size_key) if n == common]
            res["notes"].append(f"hyperparameter rules use the runs at model size {common:g}")
        rules, best_table, notes = hparam_rules(sweep_curves, cfg["sweep_threshold"], n_boot, rng, cfg["no_crossing"])
        res["notes"] += notes
    else:
        rules = _configured_rules(meta)
    res["hparams"] = rules
    sweep_rules = None
    if cfg["hparam_fits"]:
        with open(cfg["hparam_fits"]) as fh:
            sweep_rules = json.load(fh).get("hparams")
        if not sweep_rules or "batch_size" not in sweep_rules:
            raise AnalysisInputError(f"{cfg['hparam_fits']} has no hparams.batch_size rule: give the fits.json "
                                     "of a hyperparameter-sweep analysis")
        if not swept:  # the sweep's rules are the ones these runs follow; keep them for `recommend`
            res["hparams_configured"] = rules
            res["hparams"] = {k: {**v, "source": f"{cfg['hparam_fits']}: " + v.get("source", "")} for k, v in sweep_rules.items()}

    # ---- one configuration per (task, sigma, N): the best at the sweep threshold when several were run
    if swept:
        d800, _ = fit.crossings(curves, [float(cfg["sweep_threshold"])], 0)
        best = {}
        for c, d, n in zip(curves, d800[:, 0], size_key):
            k = (c["task"], c["sigma"], n)
            d = np.inf if np.isnan(d) else d
            if k not in best or d < best[k][0]:
                best[k] = (d, c)
        chosen = [v[1] for v in best.values()]
        res["notes"].append("several (B, lr) per task and UTD: data-efficiency fits use the best per task and UTD at "
                            f"J={cfg['sweep_threshold']}")
    else:
        chosen = curves
    tasks = sorted({c["task"] for c in chosen})
    sizes = sorted({c["model_size"] for c in chosen if np.isfinite(c["model_size"])})
    multi_size = len(sizes) > 1
    if multi_size:  # D_J(sigma) pools tasks at one model size: use the most common one; R5 uses all
        common = pd.Series([c["model_size"] for c in chosen]).mode().iloc[0]
        dchosen = [c for c in chosen if c["model_size"] == common]
        res["notes"].append(f"runs span model sizes {sizes}: D_J(sigma), Pareto and budget fits use N = {common:g}; "
                            "the R5 surface and R2 fits use all sizes")
    else:
        dchosen = chosen
    utds = np.array(sorted({c["sigma"] for c in dchosen}))
    pt, bt = fit.crossings(dchosen, J, n_boot, rng)
    times = np.full((len(tasks), len(utds), len(J)), np.nan)
    btimes = np.full((n_boot, len(tasks), len(utds), len(J)), np.nan)
    for c, p, b in zip(dchosen, pt, bt):
        i, j = tasks.index(c["task"]), int(np.searchsorted(utds, c["sigma"]))
        times[i, j], btimes[:, i, j] = p, b
    # FLOPs our runs measured up to each crossing (cumulative `flops` at the crossing step), when logged
    cflops = np.full(times.shape, np.nan)
    for c, p in zip(dchosen, pt):
        if np.isfinite(c["flops"]).any():
            i, j = tasks.index(c["task"]), int(np.searchsorted(utds, c["sigma"]))
            ok = np.isfinite(c["flops"])
            cflops[i, j] = np.where(np.isfinite(p), np.interp(p, c["steps"][ok], c["flops"][ok]), np.nan)
    res["crossings"] = [{"task": t, "sigma": float(s), "J": float(J[k]), "D_J": None if np.isnan(times[i, j, k]) else float(times[i, j, k]),
                         "C_J_measured": None if np.isnan(cflops[i, j, k]) else float(cflops[i, j, k]),
                         "D_J_std": float(np.nanstd(btimes[:, i, j, k])) if n_boot and np.isfinite(btimes[:, i, j, k]).any() else None}
                        for i, t in enumerate(tasks) for j, s in enumerate(utds) for k in range(len(J))]
    never = [float(J[k]) for k in range(len(J)) if not np.isfinite(times[..., k]).any()]
    partial = {float(J[k]): [f"{tasks[i]}@sigma={utds[j]:g}" for i in range(len(tasks)) for j in range(len(utds))
                             if not np.isfinite(times[i, j, k])] for k in range(len(J)) if float(J[k]) not in never}
    partial = {k: v for k, v in partial.items() if v}
    if never:
        res["notes"].append(f"threshold(s) {never} reached by no run: no D_J fit for them (lower `thresholds`)")
    if partial:
        res["notes"].append("not reached by every task and UTD (averaged over what was reached): "
                            + "; ".join(f"J={k:.0f}: {', '.join(v)}" for k, v in partial.items()))
    fitJ = [k for k in range(len(J)) if float(J[k]) not in never]
    if not fitJ:
        best_ret = max(float(np.nanmax(c["norm"].mean(1))) for c in dchosen)
        raise AnalysisInputError(f"no run reaches any threshold {J.round(0).tolist()} (best normalised return "
                                 f"{best_ret:.0f} / 1000): lower `thresholds` or check `max_returns`")

    # ---- D_J(sigma): pooled across tasks (R1) with bootstrap intervals, and per task
    de = []
    point = fit.data_efficiency(utds, times[..., fitJ], top_k=4)
    bfits = fit.data_efficiency_boot(utds, btimes[..., fitJ]) if n_boot else [{} for _ in fitJ]
    boot_fits = [[{q: (v[r] if isinstance(v, np.ndarray) else v) for q, v in bf.items()} for bf in bfits] for r in range(n_boot)]
    for n, k in enumerate(fitJ):
        f = point[n]
        row = {"J": float(J[k]), **{q: f.get(q) for q in ("D_min", "alpha", "beta", "a", "b", "c", "m", "loss", "converged", "message", "error")}}
        for q in ("D_min", "alpha", "beta"):
            row[q + "_ci95"] = _pct([bf[n].get(q, np.nan) for bf in boot_fits if bf[n].get("converged")], (2.5, 97.5))
        row["boot_converged"] = int(sum(bool(bf[n].get("converged")) for bf in boot_fits))
        row["per_task"] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(times.reshape(len(tasks), -1), 1)
        pt_fit = fit.fit_power_law_batch(utds, times[:, :, k] / med[:, None])  # per task, own median scale
        for i, t in enumerate(tasks):
            if np.isfinite(times[i, :, k]).sum() < 4:
                row["per_task"][t] = {"error": f"{t} reaches J={J[k]:.0f} at fewer than 4 UTDs", "converged": False}
                continue
            g = {q: pt_fit[q][i] for q in ("a", "b", "c")}
            row["per_task"][t] = {**fit.to_physical(g, med[i]), "converged": bool(pt_fit["converged"][i])}
        if not f.get("converged", False):
            res["notes"].append(f"D_J fit at J={J[k]:.0f} did not converge: {f.get('error') or f.get('message')}")
        de.append(row)
    de = [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()} for r in de]
    res["_de_fit"] = de
    # one entry per threshold; a threshold no run reached says so instead of holding numbers
    byJ = {r["J"]: r for r in de}
    res["data_efficiency"] = [byJ.get(float(j)) or {"J": float(j), "converged": False, "D_min": None, "alpha": None, "beta": None,
                                                     "D_min_ci95": [None, None], "alpha_ci95": [None, None], "beta_ci95": [None, None],
                                                     "error": f"no run reaches J={j:.0f}"} for j in J]

    # ---- compute and budget
    dsizes = sorted({c["model_size"] for c in dchosen if np.isfinite(c["model_size"])})
    n_params = cfg["model_size"] if cfg["model_size"] is not None else (dsizes[0] if len(dsizes) == 1 else None)
    brule = (sweep_rules or rules).get("batch_size") if (sweep_rules or cfg["hparam_fits"]) else None
    if brule is not None:
        batch_fn = lambda s: fit.rule_value(brule, s)
        bsrc = "hparam_fits batch-size rule, averaged over tasks (R1)"
    else:  # each run's own batch size, mean over tasks, interpolated in log-log between UTDs
        bs = _meta(dchosen).groupby("sigma")["batch_size"].mean()
        batch_fn = lambda s: 10 ** np.interp(np.log10(s), np.log10(bs.index.to_numpy()), np.log10(bs.to_numpy()))
        bsrc = "runs' own batch sizes"
    fps = None
    if cfg["compute"] == "measured":
        ratios = [c["flops"] / (c["grad_steps"] * c["batch_size"]) for c in dchosen]
        ratios = np.concatenate([r[np.isfinite(r) & (r > 0)] for r in ratios])
        if not len(ratios):
            raise AnalysisInputError("compute: measured needs runs that log `flops` and `critic_updates`; use compute: r1")
        fps = float(np.median(ratios))
        csrc = f"measured FLOPs: {fps:.3g} FLOPs per sample per update (median over runs)"
    elif n_params is None:  # a sweep (stage 1) needs no N: the rules and D_J fits stand, compute outputs are skipped
        csrc = None
        res["notes"].append("no critic size N (`model_size`, or run.json's critic_params): compute C_J, the "
                            "Pareto frontier and the budget fit are skipped (R1's hyperparameter rules need no N)")
    else:
        csrc = f"R1: C = 10 * N * B * sigma * D with N = {n_params:g}"
    res["_point_fits"], res["_boot_fits"] = point, boot_fits
    res["_curves"], res["_chosen"], res["_utds"], res["_times"], res["_btimes"], res["_fitJ"] = curves, dchosen, utds, times, btimes, fitJ
    res["_batch_fn"], res["_tasks"], res["_cflops"] = batch_fn, tasks, cflops
    wall = _wall_clock(full_table, dchosen, pt, J, fitJ, point, utds, batch_fn, res) if cfg["budget"] == "wall_clock" or delta_measured else None
    if delta_measured:
        ds = [r["delta"] for r in (wall or {}).get("rates", []) if r.get("delta")]
        if not ds:
            raise AnalysisInputError("delta: measured needs runs whose logs give both rates (see the wall_clock notes)")
        cfg["delta"] = float(np.median(ds))
        res["notes"].append(f"delta = {cfg['delta']:.3g} FLOPs per transition, measured as a * R from the runs' rates")
    if wall is not None:
        res["wall_clock"] = wall
    if csrc is None:
        res["compute"] = {"formula": None, "batch_size": bsrc, "model_size": None, "delta": cfg["delta"]}
        res["pareto"], res["budget"] = [], {"error": "no model_size: compute outputs skipped"}
        res["best_hparams"] = best_table.to_dict("records") if best_table is not None else None
        return res
    res["compute"] = {"formula": csrc, "batch_size": bsrc, "model_size": n_params, "delta": cfg["delta"]}
    cfun = (lambda s, d: fit.compute_r1(s, d, batch_fn(s), n_params)) if fps is None else (lambda s, d: fps * batch_fn(s) * s * d)
    pareto = []
    norm, m = fit.pooled_times(times)
    for n, k in enumerate(fitJ):
        d = norm[:, k] * m
        c = cfun(utds, d)
        mask = fit.pareto_mask(c, d)
        pareto += [{"J": float(J[k]), "sigma": float(s), "C": float(cc), "D": float(dd), "frontier": bool(mm)}
                   for s, cc, dd, mm in zip(utds, c, d, mask) if np.isfinite(dd)]
    res["pareto"] = pareto
    ok = [n for n in range(len(fitJ)) if point[n].get("converged")]
    bfun = lambda f: fit.budget_optimum(f, (utds.min(), utds.max()), batch_fn, n_params or 0, cfg["delta"], fps)
    opts = [dict(bfun(point[n]), J=float(J[fitJ[n]])) for n in ok]
    try:
        bf = fit.budget_fit([o["F"] for o in opts], [o["sigma"] for o in opts], cfg["holdout_top_k"])
        exps = []
        for r in range(n_boot):
            o = [bfun(boot_fits[r][n]) for n in ok if boot_fits[r][n].get("converged")]
            try:
                exps.append(fit.budget_fit([x["F"] for x in o], [x["sigma"] for x in o], cfg["holdout_top_k"])["exponent"])
            except AnalysisInputError:
                pass
        bf["exponent_ci95"] = _pct(exps, (2.5, 97.5))
        res["budget"] = {"sigma_star": {"coef": bf["coef"], "exponent": bf["exponent"], "exponent_ci95": bf["exponent_ci95"]},
                         "holdout_rel_error": bf["holdout_rel_error"], "holdout_rel_errors": bf["holdout_rel_errors"],
                         "holdout_top_k": cfg["holdout_top_k"], "points": opts, "n_train": bf["n_train"]}
    except AnalysisInputError as e:
        res["budget"] = {"error": str(e)}
        res["notes"].append(f"budget fit skipped: {e}")

    # ---- R5 surface and R2 intrinsic performance, when runs span model sizes
    if multi_size:
        res["model_size_fits"] = _model_size_fits(chosen, tasks, J, cfg, rng, batch_fn, fps, res)
    res["best_hparams"] = best_table.to_dict("records") if best_table is not None else None
    res["_cfun"], res["_bfun"] = cfun, bfun
    return res


def _model_size_fits(chosen, tasks, J, cfg, rng, batch_fn, fps, res):
    out = {"surface": {}, "intrinsic": {}}
    k = int(np.argmin(np.abs(J - float(cfg["sweep_threshold"]))))
    pt, bt = fit.crossings(chosen, [J[k]], int(cfg["bootstrap"]), rng)
    table = []
    for t in tasks:
        idx = [i for i, c in enumerate(chosen) if c["task"] == t]
        s = [chosen[i]["sigma"] for i in idx]
        n = [chosen[i]["model_size"] for i in idx]
        for i in idx:
            b = bt[i, :, 0]
            table.append({"task": t, "sigma": chosen[i]["sigma"], "N": chosen[i]["model_size"],
                          "time_to_threshold": pt[i, 0], "J": float(J[k]),
                          "time_to_threshold_std": float(np.std(b[np.isfinite(b)])) if np.isfinite(b).any() else np.nan})
        try:
            f = fit.fit_surface(s, n, pt[idx, 0])
            for r in table[-len(idx):]:
                r["time_to_threshold_surface"] = float(fit.surface_value(f, r["sigma"], r["N"]))
            bud = (lambda ss, nn, d: 10 * nn * batch_fn(ss) * ss * d + cfg["delta"] * d) if fps is None else \
                  (lambda ss, nn, d: fps * batch_fn(ss) * ss * d + cfg["delta"] * d)
            f["optimum"] = fit.surface_optimum(f, bud, (min(s), max(s)), (min(n), max(n)))
            f["J"] = float(J[k])
            out["surface"][t] = f
        except AnalysisInputError as e:
            out["surface"][t] = {"error": str(e)}
        # R2: return vs compute per model size (seed mean, max over the configs at that size)
        by = {}
        for i in idx:
            c = chosen[i]
            comp = c["flops"] if np.isfinite(c["flops"]).all() and c["flops"][-1] > 0 else 10 * c["model_size"] * c["batch_size"] * c["sigma"] * c["steps"]
            by.setdefault(c["model_size"], []).append((comp, c["norm"].mean(1), c["steps"]))
        fam = {n: max(v, key=lambda x: x[1][-1]) for n, v in by.items()}
        try:
            I = fit.intrinsic_performance({n: (v[0], v[1]) for n, v in fam.items()})
            N = np.concatenate([np.full(len(v[2]), n) for n, v in fam.items()])
            E = np.concatenate([v[2] for v in fam.values()])
            g = fit.fit_intrinsic(N, E, np.concatenate([I[n] for n in fam]))
            out["intrinsic"][t] = g
        except AnalysisInputError as e:
            out["intrinsic"][t] = {"error": str(e)}
    res["surface_table"] = [{**{"time_to_threshold_surface": np.nan}, **r} for r in table]
    res["surface"] = out["surface"]
    widths = {}
    for src in ([cfg["inputs"]] if isinstance(cfg["inputs"], str) else cfg["inputs"]):
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
            out["n_opt"] = {"exponent": e, "coef": float(np.exp(np.mean([np.log(o["model_size"] / o["F"] ** e) for o in opt]))),
                            "note": "N_opt = coef * F^exponent; exponent from R2's fit, anchored at the R5 surface optimum"}
    return out


# ------------------------------------------------------------------------------------ R5 mode


def _is_r5(cfg):
    return (cfg.get("format") in R5_FORMATS or isinstance(cfg.get("thresholds"), dict)
            or cfg.get("pool") is not None or cfg.get("threshold_rule") is not None)


def _r5_config(cfg):
    if cfg["pool"] not in (None, "r5"):
        raise AnalysisInputError(f"pool={cfg['pool']!r}: the only pooled variant is `pool: r5`")
    if cfg["threshold_rule"] not in (None, "r5"):
        raise AnalysisInputError(f"threshold_rule={cfg['threshold_rule']!r}: the only rule is `threshold_rule: r5`")
    ex = dict(cfg["exclude"] or {})
    bad = sorted(set(ex) - set(EXCLUDE_AXES))
    if bad:
        raise AnalysisInputError(f"exclude: unknown axis {bad}; axes: {list(EXCLUDE_AXES)} (e.g. {{width: [2048]}})")
    cfg["exclude"] = {k: [v] if not isinstance(v, (list, tuple)) else list(v) for k, v in ex.items()}
    th = cfg["thresholds"]
    if th is not None and not isinstance(th, dict):
        raise AnalysisInputError("R5's analysis takes per-task absolute thresholds: `thresholds: {task: J}` "
                                 "(or {task: [J, ...]}), or `threshold_rule: r5` with `threshold_base: {task: base}`")
    if th is None and (cfg["threshold_rule"] != "r5" and cfg["pool"] != "r5"):
        raise AnalysisInputError("R5 mode needs thresholds: `thresholds: {task: J}` or `threshold_rule: r5` with "
                                 "`threshold_base: {task: base}`")
    cfg["thresholds"] = {t: [_num({f"thresholds.{t}": x}, f"thresholds.{t}") for x in (v if isinstance(v, (list, tuple)) else [v])]
                         for t, v in (th or {}).items()}
    cfg["threshold_base"] = {t: _num({f"threshold_base.{t}": v}, f"threshold_base.{t}") for t, v in (cfg["threshold_base"] or {}).items()}
    if (cfg["threshold_rule"] == "r5" or cfg["pool"] == "r5") and not cfg["threshold_base"]:
        raise AnalysisInputError("threshold_rule: r5 (and pool: r5) need `threshold_base: {task: base}` "
                                 "(R5's DMC bases: science.md 3)")
    for k in ("bootstrap", "r5_seed"):
        cfg[k] = _num(cfg, k, int)
    cfg["delta"] = _num(cfg, "delta")
    if cfg["reset_every_grad_steps"] is not None:
        cfg["reset_every_grad_steps"] = _num(cfg, "reset_every_grad_steps")
    return cfg


def _r5_curves(cfg, api=None):
    """Curve records of every input, in the order R5 consumed them; returns as is (no normalisation)."""
    out, skipped = [], []
    inputs = [cfg["inputs"]] if isinstance(cfg["inputs"], str) else list(cfg["inputs"])
    if not inputs:
        raise AnalysisInputError("no inputs given: pass the R5 zip / folder or run directories under `inputs`")
    for src in inputs:
        fmt = cfg["format"]
        if fmt == "auto" and os.path.exists(src):
            fmt = _sniff(src)
        if fmt == "model_scaling":
            out += load.load_model_scaling(src)
        elif fmt == "bro_ablations":
            out += load.load_bro_ablations(src)
        else:  # our runs (or qscaled / W&B): curves of the tidy table, widths from run.json
            table, sk = load.load([src], fmt, api=api)
            skipped += sk
            cs = load.curves(table)
            widths = load.run_widths(src) if fmt in ("auto", "runs") and os.path.isdir(src) else {}
            for c in cs:
                c["width"] = widths.get(c["model_size"])
                c["member"] = len(out)
                out.append(c)
    return out, skipped


def _sniff(src):
    import zipfile
    names = zipfile.ZipFile(src).namelist() if str(src).endswith(".zip") else \
        [os.path.join(dp, f).replace(os.sep, "/") for dp, _, fs in os.walk(src) for f in fs]
    if any(load._MS.search(n) for n in names):
        return "model_scaling"
    if any(load._BRO.search(n) for n in names):
        return "bro_ablations"
    return "auto"


def _excluded(c, ex):
    for axis, vals in ex.items():
        v = c.get({"width": "width", "size": "size", "sigma": "sigma", "batch_size": "batch_size"}[axis])
        if v is None:
            continue
        if any(str(v) == str(x) or (isinstance(v, (int, float)) and _isnum(x) and float(v) == float(x)) for x in vals):
            return True
    return False


def _isnum(x):
    try:
        float(x)
        return True
    except (TypeError, ValueError):
        return False


def r5_threshold_top(curves, base, n=20):
    """R5's threshold rule for one task: linspace(base, top, n), top = floor(0.95 * q20 / 10) * 10 with q20 =
    the 20th percentile of the final isotonic seed-mean returns of `curves`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        finals = [fit.isotonic(np.nanmean(c["returns"], 1)[np.isfinite(np.nanmean(c["returns"], 1))])[-1] for c in curves]
    top = np.floor(0.95 * np.percentile(finals, 20) / 10) * 10
    return np.linspace(float(base), top, n)


def width_fit(widths, params):
    """N as a quadratic in the width (exact for mlp / bro / softmoe at a fixed depth and tokens: every
    dense layer is width x width, width x in or width x out) -> coefficients for `recommend`."""
    w, n = np.asarray(widths, float), np.asarray(params, float)
    ok = np.isfinite(w) & np.isfinite(n)
    w, n = np.unique(w[ok]), np.array([n[ok][w[ok] == x][0] for x in np.unique(w[ok])])
    if len(w) < 2:
        return None
    coef = np.polyfit(w, n, 2) if len(w) >= 3 else np.append(np.linalg.lstsq(np.column_stack([w ** 2, w]), n, rcond=None)[0], 0.0)
    return {"coef": [float(x) for x in coef], "widths": w.tolist(), "params": n.tolist(),
            "note": "critic_params = coef[0] w^2 + coef[1] w + coef[2]"}


def width_for(wf, n_params):
    """The width whose fitted parameter count is n_params (positive root of the quadratic)."""
    a, b, c = wf["coef"]
    if abs(a) < 1e-12:
        return (n_params - c) / b
    return float((-b + np.sqrt(b * b - 4 * a * (c - n_params))) / (2 * a))


def r5_analysis(cfg, api=None):
    """R5's time to threshold per (task, sigma, N) and its sum-of-power-laws surface (science.md 3)."""
    cfg = {**DEFAULTS, **{k: v for k, v in dict(cfg).items() if v is not None}}
    cfg = _r5_config(cfg)
    curves, skipped = _r5_curves(cfg, api)
    tasks = sorted({c["task"] for c in curves})
    if cfg["tasks"] is not None:
        want = [cfg["tasks"]] if isinstance(cfg["tasks"], str) else list(cfg["tasks"])
        missing = sorted(set(want) - set(tasks))
        if missing:
            raise AnalysisInputError(f"tasks {missing} are not in the inputs (tasks there: {tasks})")
        tasks = sorted(want)
    algos = sorted({str(c["algo"]) for c in curves})
    if len(algos) > 1:
        raise AnalysisInputError(f"inputs mix algorithms / critic architectures {algos}: a surface is one family; "
                                 "give `inputs` that hold one of them")
    keep = [c["task"] in tasks and not _excluded(c, cfg["exclude"]) for c in curves]
    res = {"config": {k: cfg[k] for k in DEFAULTS if k != "inputs"} | {"inputs": [cfg["inputs"]] if isinstance(cfg["inputs"], str) else list(cfg["inputs"])},
           "mode": "r5", "skipped": [{"path": str(p), "reason": r} for p, r in skipped], "notes": [],
           "counts": {"configs": int(sum(keep)), "tasks": len(tasks), "utds": sorted({c["sigma"] for c, k in zip(curves, keep) if k}),
                      "seeds_min": int(min([c["n_seeds"] for c, k in zip(curves, keep) if k] or [0]))},
           "hparams": {}, "data_efficiency": [], "crossings": [], "pareto": [], "_de_fit": []}
    if not any(keep):
        raise AnalysisInputError("no configuration left after `tasks` / `exclude`")
    rows, thr = [], {}
    if cfg["pool"] == "r5":
        sel = [c for c, k in zip(curves, keep) if k]
        no_base = sorted({c["task"] for c in sel} - set(cfg["threshold_base"]))
        if no_base:
            raise AnalysisInputError(f"pool: r5 needs threshold_base for every task; missing {no_base}")
        cells, info = fit.r5_pooled(sel, cfg["threshold_base"], cfg["reset_every_grad_steps"])
        rows = [dict(c, J=np.nan) for c in cells]
        res["pooled_thresholds"] = info
        if cfg["reset_every_grad_steps"]:
            res["notes"].append(f"BRO reset filter: every {cfg['reset_every_grad_steps']:g} gradient steps")
    else:
        for t in tasks:
            if t in cfg["thresholds"]:
                thr[t] = cfg["thresholds"][t]
            elif t in cfg["threshold_base"]:
                thr[t] = [float(r5_threshold_top([c for c, k in zip(curves, keep) if k and c["task"] == t],
                                                 cfg["threshold_base"][t])[-1])]
            else:
                raise AnalysisInputError(f"no threshold for task {t!r}: add it under `thresholds` (absolute return) "
                                         "or `threshold_base` with `threshold_rule: r5`")
        # every configuration consumes R5's one RNG stream in input order (also the excluded ones, as R5
        # computed all and left cells out of its table), so that the stds replay R5's numbers
        for k in range(max(len(v) for v in thr.values())):
            thk = {t: v[k] for t, v in thr.items() if k < len(v)}
            use = [c for c in curves if c["task"] in thk]
            flags = [kk for c, kk in zip(curves, keep) if c["task"] in thk]
            cells = fit.r5_cells(use, thk, cfg["bootstrap"], cfg["r5_seed"], keep=flags)
            rows += [dict(c, J=thk[c["task"]]) for c in cells]
    df = pd.DataFrame(rows)
    width_of = {c["model_size"]: c.get("width") for c in curves}
    df["width"] = [width_of.get(n) for n in df["N"]]
    df["time_to_threshold_surface"] = np.nan
    res["surface"] = {}
    multiJ = df.groupby("task")["J"].nunique().max() > 1
    bs_best = [c["batch_size"] for c, k in zip(curves, keep) if k and np.isfinite(c["batch_size"])]
    batch = float(np.exp(np.mean(np.log(bs_best)))) if bs_best else np.nan
    res["compute"] = {"formula": "R5: C = 10 * N * B * sigma * D", "batch_size": f"geometric mean of the inputs' batch sizes ({batch:.4g})",
                      "delta": cfg["delta"]}
    for (t, J), g in df.groupby(["task", "J"], dropna=False, sort=True):
        name = f"{t}@J={J:g}" if multiJ else t
        try:
            f = fit.fit_surface(g["sigma"], g["N"], g["time_to_threshold"])
        except AnalysisInputError as e:
            res["surface"][name] = {"error": str(e)}
            res["notes"].append(f"surface {name}: {e}")
            continue
        df.loc[g.index, "time_to_threshold_surface"] = fit.surface_value(f, g["sigma"].to_numpy(), g["N"].to_numpy())
        if np.isfinite(batch):
            bud = lambda s, n, d: 10 * n * batch * s * d + cfg["delta"] * d
            f["optimum"] = fit.surface_optimum(f, bud, (g["sigma"].min(), g["sigma"].max()), (g["N"].min(), g["N"].max()))
        f.update(J=None if not np.isfinite(J) else float(J), cells=int(np.isfinite(g["time_to_threshold"]).sum()))
        if not f["converged"]:
            res["notes"].append(f"surface {name} did not converge: {f['message']}")
        res["surface"][name] = f
    wf = width_fit(df["width"].astype(float), df["N"]) if df["width"].notna().any() else None
    if wf:
        res["width_fit"] = wf
    cols = ["task", "sigma", "N", "time_to_threshold", "time_to_threshold_std", "time_to_threshold_surface"]
    res["surface_table"] = df[cols + [c for c in ("J", "width", "n_boot_finite", "n_tasks") if c in df]].to_dict("records")
    res["_surface_df"] = df
    res["_curves"] = [c for c, k in zip(curves, keep) if k]
    return res


def _pick_returns(table, returns):
    """The return the laws are fitted on: `eval` = the deterministic-policy eval_return_mean, `train` = the
    training episodes' return_mean (under exploration noise), `auto` = eval when every run logged it."""
    has = table.groupby("run")["eval_return"].apply(lambda v: int(np.isfinite(v.to_numpy(float)).sum())) \
        if "eval_return" in table else pd.Series(dtype=float)
    use_eval = returns == "eval" or (returns == "auto" and len(has) and (has >= 2).all())
    if not use_eval:
        why = "returns: train" if returns == "train" else "returns: auto, and not every run logged eval_return_mean"
        return table, f"training return_mean (episodes under exploration noise; {why})"
    if not len(has) or (has < 2).any():
        raise AnalysisInputError("returns: eval, but some runs logged fewer than 2 eval_return_mean points: train "
                                 "them with eval.every_steps > 0, or use returns: train")
    t = table.copy()
    t["return"] = t["eval_return"]
    return t[np.isfinite(t["return"].to_numpy(float))].reset_index(drop=True), \
        "eval_return_mean (deterministic policy on separate eval envs)"


def _wall_clock(table, chosen, pt, J, fitJ, point, utds, batch_fn, res):
    """budget: wall_clock (analysis/wallclock.py): rates per (task, mode), the model checked against the runs'
    measured wall_time_s at each crossing, and the wall-clock-optimal UTD per threshold."""
    from . import wallclock

    rates = wallclock.rates(table)
    out = {"rates": [v for v in rates.values() if "error" in v or True], "check": {}, "optimum": {}}
    modes = table.dropna(subset=["mode"]).groupby(["task", "sigma", "batch_size", "lr"])["mode"].first().to_dict()
    per_mode = {}
    for i, c in enumerate(chosen):
        mode = modes.get((c["task"], c["sigma"], c["batch_size"], c["lr"]))
        r = rates.get((c["task"], mode), {})
        if "a_s_per_transition" not in r:
            continue
        ok = np.isfinite(c["flops"]) & np.isfinite(c["wall_time_s"])
        for k in fitJ:
            d = pt[i, k]
            if not np.isfinite(d) or ok.sum() < 2:
                continue
            C = np.interp(d, c["steps"][ok], c["flops"][ok])
            T = np.interp(d, c["steps"][ok], c["wall_time_s"][ok])
            pm = per_mode.setdefault(mode, {"D": [], "C": [], "T": [], "a": [], "R": [], "t0": [], "sigma": [], "J": []})
            for key, v in (("D", d), ("C", C), ("T", T), ("a", r["a_s_per_transition"]), ("R", r["learner_flops_per_s"]),
                           ("t0", r["t0_s"]),
                           ("sigma", c["sigma"]), ("J", float(J[k]))):
                pm[key].append(float(v))
    for mode, pm in per_mode.items():
        a, R, t0 = np.array(pm["a"]), np.array(pm["R"]), np.array(pm["t0"])
        pred = wallclock.time_to(pm["D"], pm["C"], a, R, mode, t0)
        chk = wallclock.check(pm["D"], pm["C"], pm["T"], a, R, mode, t0)
        chk["points"] = [{"sigma": s, "J": j, "D": d, "T_measured": t, "T_model": float(p)}
                         for s, j, d, t, p in zip(pm["sigma"], pm["J"], pm["D"], pm["T"], pred)]
        out["check"][mode] = chk
        ratios = [c["flops"] / (c["grad_steps"] * c["batch_size"]) for c in chosen]
        ratios = np.concatenate([q[np.isfinite(q) & (q > 0)] for q in ratios])
        fps = float(np.median(ratios)) if len(ratios) else np.nan
        am, Rm = float(np.median(a)), float(np.median(R))
        opts = []
        for n, k in enumerate(fitJ):
            f = point[n]
            if not f.get("converged") or not np.isfinite(fps):
                continue
            o = wallclock.optimum(lambda s: fit.d_of_sigma(f, s), lambda s, d: fps * batch_fn(s) * s * d,
                                  (utds.min(), utds.max()), am, Rm, mode)
            opts.append(dict(o, J=float(J[k])))
        entry = {"points": opts, "a_s_per_transition": am, "learner_flops_per_s": Rm}
        try:
            bf = fit.budget_fit([o["T"] for o in opts], [o["sigma"] for o in opts], min(2, max(len(opts) - 2, 0)))
            entry["sigma_star_of_T"] = {"coef": bf["coef"], "exponent": bf["exponent"],
                                        "holdout_rel_error": bf["holdout_rel_error"]}
        except AnalysisInputError as e:
            entry["error"] = str(e)
        out["optimum"][mode] = entry
    if not per_mode:
        res["notes"].append("budget: wall_clock: no run has both rates measured; wall-clock outputs skipped")
    return out
