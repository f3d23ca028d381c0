"""The analysis as one function: tidy table -> every fit of science.md -> a results dict (fits.json).

`run_analysis(cfg)` only computes; `write_outputs` (report.py) writes tables, plots and report.md.
"""
import json
import warnings

import numpy as np
import pandas as pd

from . import fit, load
from .load import AnalysisInputError

DEFAULTS = {
    "inputs": [], "format": "auto", "max_returns": {}, "thresholds": None, "sweep_threshold": 800.0,
    "model_size": None, "delta": 4e9, "holdout_top_k": 2, "bootstrap": 100, "hparam_fits": None,
    "out": "analysis_out", "seed": 0, "compute": "r1", "no_crossing": "first", "plots": True,
}


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
    for name, col in (("batch_size", "bs_boot"), ("learning_rate", "lr_boot")):
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
    for key, options in (("format", ("auto", "runs", "qscaled", "wandb")), ("compute", ("r1", "measured")),
                         ("no_crossing", ("first", "skip"))):
        if cfg[key] not in options:
            raise AnalysisInputError(f"config key `{key}` must be one of {list(options)}, got {cfg[key]!r}")
    for key in ("out", "hparam_fits"):
        if cfg[key] is not None and not isinstance(cfg[key], str):
            raise AnalysisInputError(f"config key `{key}` must be a path, got {cfg[key]!r}")
    if not isinstance(cfg["max_returns"], dict):
        raise AnalysisInputError(f"config key `max_returns` must map task -> R_max, got {cfg['max_returns']!r}")
    if cfg["thresholds"] is not None and not isinstance(cfg["thresholds"], (list, tuple)):
        raise AnalysisInputError(f"config key `thresholds` must be a list of numbers, got {cfg['thresholds']!r}")
    if not isinstance(cfg["plots"], bool):
        raise AnalysisInputError(f"config key `plots` must be true or false, got {cfg['plots']!r}")


def _run(cfg, api=None):
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise AnalysisInputError(f"unknown config key(s) {unknown}; known: {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **{k: v for k, v in dict(cfg).items() if v is not None}}
    _check_types(cfg)
    for k in ("sweep_threshold", "delta"):
        cfg[k] = _num(cfg, k)
    for k in ("bootstrap", "holdout_top_k", "seed"):
        cfg[k] = _num(cfg, k, int)
    if cfg["model_size"] is not None:
        cfg["model_size"] = _num(cfg, "model_size")
    if cfg["thresholds"] is not None:
        cfg["thresholds"] = [_num({"thresholds": t}, "thresholds") for t in cfg["thresholds"]]
    cfg["max_returns"] = {t: _num({f"max_returns.{t}": v}, f"max_returns.{t}") for t, v in (cfg["max_returns"] or {}).items()}
    rng = np.random.default_rng(cfg["seed"])
    n_boot = int(cfg["bootstrap"])
    table, skipped = load.load(cfg["inputs"], cfg["format"], api=api)
    curves = load.curves(table)
    if not curves:
        raise AnalysisInputError("inputs hold no log point with a return: nothing to analyse")
    fit.normalise(curves, cfg["max_returns"])
    meta = _meta(curves)
    J = np.asarray(cfg["thresholds"] if cfg["thresholds"] is not None else fit.log_thresholds(), float)
    res = {"config": {k: cfg[k] for k in DEFAULTS if k not in ("inputs",)} | {"inputs": list(cfg["inputs"]) if not isinstance(cfg["inputs"], str) else [cfg["inputs"]]},
           "thresholds": J.tolist(), "skipped": [{"path": str(p), "reason": r} for p, r in skipped], "notes": []}
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
    else:
        if n_params is None:
            raise AnalysisInputError("R1's compute C = 10 N B sigma D needs the critic size N: set `model_size` "
                                     "(or use runs whose run.json has critic_params)")
        csrc = f"R1: C = 10 * N * B * sigma * D with N = {n_params:g}"
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
    res["_curves"], res["_chosen"], res["_utds"], res["_times"], res["_btimes"], res["_fitJ"] = curves, dchosen, utds, times, btimes, fitJ
    res["_batch_fn"], res["_cfun"], res["_tasks"] = batch_fn, cfun, tasks
    return res


def _model_size_fits(chosen, tasks, J, cfg, rng, batch_fn, fps, res):
    out = {"surface": {}, "intrinsic": {}}
    k = int(np.argmin(np.abs(J - float(cfg["sweep_threshold"]))))
    pt, _ = fit.crossings(chosen, [J[k]], 0, rng)
    for t in tasks:
        idx = [i for i, c in enumerate(chosen) if c["task"] == t]
        s = [chosen[i]["sigma"] for i in idx]
        n = [chosen[i]["model_size"] for i in idx]
        try:
            f = fit.fit_surface(s, n, pt[idx, 0])
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
