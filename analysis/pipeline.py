"""The analysis as named stages: inputs -> every fit of docs/science.md -> an AnalysisResult (fits.json + state).

`run_analysis(cfg)` only computes; `report.write_outputs` writes tables, plots and report.md. R1 mode runs
    load and choose the returns -> hyperparameter rules -> one configuration per (task, sigma, N) ->
    crossings -> D_J(sigma) fits -> compute (and wall clock) -> Pareto frontier -> budget fit ->
    model-size fits (modelsize.py),
each stage adding its part of `fits` and of the typed state; R5 mode is r5mode.py.
"""

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import aggregate, config, fit, hparams, load, modelsize, r5mode, rules
from .budget import _budget_stage, _compute_stage, _pareto_stage, _wall_clock_stage
from .config import DEFAULTS  # noqa: F401  (pipeline.DEFAULTS: the keys and their defaults)
from .errors import AnalysisInputError  # noqa: F401  (raised by every stage)
from .result import AnalysisResult, AnalysisState


def run_analysis(cfg, api=None, echo=None):
    """Every step of docs/science.md 2-4 on the inputs of `cfg` (keys as DEFAULTS). Returns an AnalysisResult.
    `echo(line)`, when given, hears what each input held as soon as it is loaded (before any fit)."""
    # One BLAS thread: scipy's L-BFGS-B calls BLAS on 3-vectors thousands of times, and OpenBLAS's
    # thread start/stop made each call ~100x slower on the 2-core machine (measured: 280 ms vs 3 ms a fit).
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        cfg = config.with_defaults(cfg)
        if config.is_r5(cfg):
            return r5mode.r5_analysis(cfg, api)
        return _r1_analysis(cfg, api, echo)


def _r1_analysis(cfg, api, echo=None):
    cfg, delta_measured = config.r1_config(cfg)
    rng = np.random.default_rng(cfg["seed"])
    n_boot = int(cfg["bootstrap"])
    inp = _load_stage(cfg, api, echo)
    J = np.asarray(cfg["thresholds"] if cfg["thresholds"] is not None else fit.log_thresholds(), float)
    fits = _header(cfg, J, inp)
    rl = _rules_stage(cfg, inp.curves, inp.meta, n_boot, rng, fits)
    chosen, multi_size, st = _choose_stage(cfg, inp.curves, rl, fits)
    pt = _crossings_stage(st, J, n_boot, rng, fits, cfg["crossing"] == "interpolate")
    _dj_fits_stage(st, J, n_boot, fits, cfg["dj_fit"])
    # across tasks and seeds: IQM, mean, profiles, P(improvement) of each UTD (Agarwal et al. 2021)
    fits["aggregates"] = aggregate.compare(st.chosen, "sigma", seed=cfg["seed"])
    n_params, fps, csrc, bsrc = _compute_stage(cfg, st, rl, fits)
    if cfg["budget"] == "wall_clock" or delta_measured:
        _wall_clock_stage(cfg, inp.full_table, st, pt, J, delta_measured, fits)
    best = rl.best_table.to_dict("records") if rl.best_table is not None else None
    if csrc is None:
        fits["compute"] = {"formula": None, "batch_size": bsrc, "model_size": None, "delta": cfg["delta"]}
        fits["pareto"], fits["budget"] = [], {"error": "no model_size: compute outputs skipped"}
        fits["best_hparams"] = best
        return AnalysisResult(fits, st)
    fits["compute"] = {"formula": csrc, "batch_size": bsrc, "model_size": n_params, "delta": cfg["delta"]}
    _pareto_stage(st, J, n_params, fps, fits)
    _budget_stage(cfg, st, J, n_params, fps, n_boot, fits)
    if multi_size:  # R5 surface and R2 intrinsic performance, when runs span model sizes
        fits["model_size_fits"] = modelsize.model_size_fits(
            chosen, st.tasks, J, cfg, rng, st.batch_fn, fps, fits
        )
    fits["best_hparams"] = best
    return AnalysisResult(fits, st)


# ------------------------------------------------------------------------------------------------ inputs
@dataclass
class _Inputs:
    full_table: pd.DataFrame  # every log point: the wall-clock rates use all intervals, not only eval points
    table: pd.DataFrame  # the log points with the return the laws are fitted on
    curves: list  # normalised curve records
    meta: pd.DataFrame  # their configurations
    skipped: list
    returns_note: str
    found: list  # one line per input: its runs, tasks, seeds and parameter values (load.describe_line)


def _load_stage(cfg, api, echo=None):
    found = []
    hear = lambda line: (found.append(line), echo and echo(line))
    spec = {"table": cfg["table"], "tensorboard": cfg["tensorboard"]}
    table, skipped = load.load(cfg["inputs"], cfg["format"], api=api, echo=hear, **spec)
    full_table = table
    table, returns_note = pick_returns(table, cfg["returns"])
    curves = load.curves(table)
    if not curves:
        raise AnalysisInputError("inputs hold no log point with a return: nothing to analyse")
    fit.normalise(curves, cfg["max_returns"], cfg["min_returns"])
    return _Inputs(full_table, table, curves, load.config_frame(curves), skipped, returns_note, found)


def pick_returns(table, returns):
    """The return the laws are fitted on: `eval` = the deterministic-policy eval_return_mean, `train` = the
    training episodes' return_mean (under exploration noise), `auto` = eval when every run logged it."""
    has = (
        table.groupby("run")["eval_return"].apply(lambda v: int(np.isfinite(v.to_numpy(float)).sum()))
        if "eval_return" in table
        else pd.Series(dtype=float)
    )
    use_eval = returns == "eval" or (returns == "auto" and len(has) and (has >= 2).all())
    if not use_eval:
        why = (
            "returns: train"
            if returns == "train"
            else "returns: auto, and not every run logged eval_return_mean"
        )
        return table, f"training return_mean (episodes under exploration noise; {why})"
    if not len(has) or (has < 2).any():
        raise AnalysisInputError(
            "returns: eval, but some runs logged fewer than 2 eval_return_mean points: "
            "train them with eval.every_steps > 0, or use returns: train"
        )
    t = table.copy()
    t["return"] = t["eval_return"]
    return t[np.isfinite(t["return"].to_numpy(float))].reset_index(
        drop=True
    ), "eval_return_mean (deterministic policy on separate eval envs)"


def _header(cfg, J, inp):
    meta = inp.meta
    return {
        "config": config.config_record(cfg),
        "thresholds": J.tolist(),
        "skipped": [{"path": str(p), "reason": r} for p, r in inp.skipped],
        "notes": [],
        "returns": inp.returns_note,
        "inputs_found": inp.found,
        "counts": {
            "configs": len(inp.curves),
            "tasks": int(meta.task.nunique()),
            "utds": sorted(meta.sigma.unique().tolist()),
            "seeds_min": int(meta.n_seeds.min()),
            "rows": int(len(inp.table)),
        },
    }


# ---------------------------------------------------------------------------------- hyperparameter rules
@dataclass
class _Rules:
    rules: dict  # fitted from these runs (a sweep's, or their configured values)
    sweep_rules: object  # `hparam_fits`' rules (None without)
    best_table: object  # the sweep's best values per (task, sigma) (None without a sweep)
    swept: bool  # several (B, lr) per (task, sigma, N)
    size_key: pd.Series  # each curve's model size, -1 when unknown


def _rules_stage(cfg, curves, meta, n_boot, rng, fits):
    algos = sorted(meta.algo.astype(str).unique())
    experts = sorted(meta.experts.unique().tolist())
    if len(algos) > 1 or len(experts) > 1:
        raise AnalysisInputError(
            f"inputs mix algorithms {algos} / expert counts {experts}: analyse one "
            "(algorithm, experts) at a time - give `inputs` that hold only those runs"
        )
    size_key = meta.model_size.fillna(-1.0)
    swept = meta.assign(_n=size_key).groupby(["task", "sigma", "_n"]).size().max() > 1  # several (B, lr)
    best_table = None
    if swept:
        rule_runs = curves
        if size_key.nunique() > 1:  # rules at the most common model size (R5's N-dependent rule: not fitted)
            common = size_key.mode().iloc[0]
            rule_runs = [c for c, n in zip(curves, size_key) if n == common]
            fits["notes"].append(f"hyperparameter rules use the runs at model size {common:g}")
        fitted, best_table, notes = hparams.hparam_rules(
            rule_runs, cfg["sweep_threshold"], n_boot, rng, cfg["no_crossing"]
        )
        fits["notes"] += notes
    else:
        fitted = hparams.configured_rules(meta)
    fits["hparams"] = fitted
    sweep_rules = None
    if cfg["hparam_fits"]:
        sweep_rules = rules.read_rules(cfg["hparam_fits"])
        if not sweep_rules or "batch_size" not in sweep_rules:
            raise AnalysisInputError(
                f"{cfg['hparam_fits']} has no hparams.batch_size rule: give the "
                "fits.json of a hyperparameter-sweep analysis"
            )
        if not swept:  # the sweep's rules are the ones these runs follow; keep them for `recommend`
            fits["hparams_configured"] = fitted
            fits["hparams"] = {
                k: {**v, "source": f"{cfg['hparam_fits']}: " + v.get("source", "")}
                for k, v in sweep_rules.items()
            }
    return _Rules(fitted, sweep_rules, best_table, swept, size_key)


def _choose_stage(cfg, curves, rl, fits):
    """One configuration per (task, sigma, N): the best at the sweep threshold when several were run; the
    D_J(sigma) fits use those at one model size. Returns (chosen, multi_size, the state with `chosen`)."""
    if rl.swept:
        d800, _ = fit.crossings(curves, [float(cfg["sweep_threshold"])], 0)
        best = {}
        for c, d, n in zip(curves, d800[:, 0], rl.size_key):
            k = (c["task"], c["sigma"], n)
            d = np.inf if np.isnan(d) else d
            if k not in best or d < best[k][0]:
                best[k] = (d, c)
        chosen = [v[1] for v in best.values()]
        fits["notes"].append(
            "several (B, lr) per task and UTD: data-efficiency fits use the best per task "
            f"and UTD at J={cfg['sweep_threshold']}"
        )
    else:
        chosen = curves
    tasks = sorted({c["task"] for c in chosen})
    sizes = sorted({c["model_size"] for c in chosen if np.isfinite(c["model_size"])})
    multi_size = len(sizes) > 1
    if multi_size:  # D_J(sigma) pools tasks at one model size: use the most common one; R5 uses all
        common = pd.Series([c["model_size"] for c in chosen]).mode().iloc[0]
        dchosen = [c for c in chosen if c["model_size"] == common]
        fits["notes"].append(
            f"runs span model sizes {sizes}: D_J(sigma), Pareto and budget fits use N = "
            f"{common:g}; the R5 surface and R2 fits use all sizes"
        )
    else:
        dchosen = chosen
    return chosen, multi_size, AnalysisState(curves=curves, chosen=dchosen, tasks=tasks)


# ------------------------------------------------------------------------------- crossings and D_J(sigma)
def _crossings_stage(st, J, n_boot, rng, fits, interpolate=False):
    """D_J per (task, sigma, J) with its seed bootstrap, and the FLOPs measured up to it. Returns the point
    crossings per chosen configuration [n_cfg, K]."""
    dchosen, tasks = st.chosen, st.tasks
    utds = np.array(sorted({c["sigma"] for c in dchosen}))
    pt, bt = fit.crossings(dchosen, J, n_boot, rng, interpolate=interpolate)
    times = np.full((len(tasks), len(utds), len(J)), np.nan)
    btimes = np.full((n_boot, len(tasks), len(utds), len(J)), np.nan)
    for c, p, b in zip(dchosen, pt, bt):
        i, j = tasks.index(c["task"]), int(np.searchsorted(utds, c["sigma"]))
        times[i, j], btimes[:, i, j] = p, b
    # FLOPs our runs measured up to each crossing (cumulative `flops` at the crossing step), when logged
    cflops = np.full(times.shape, np.nan)
    res = np.full(times.shape, np.nan)  # the logging interval each crossing lies in: its resolution
    for c, p in zip(dchosen, pt):
        res[tasks.index(c["task"]), int(np.searchsorted(utds, c["sigma"]))] = fit.crossing_resolution(
            c["steps"], p
        )
        if np.isfinite(c["flops"]).any():
            i, j = tasks.index(c["task"]), int(np.searchsorted(utds, c["sigma"]))
            ok = np.isfinite(c["flops"])
            cflops[i, j] = np.where(np.isfinite(p), np.interp(p, c["steps"][ok], c["flops"][ok]), np.nan)
    none_or = lambda v: None if np.isnan(v) else float(v)
    fits["crossings"] = [
        {
            "task": t,
            "sigma": float(s),
            "J": float(J[k]),
            "D_J": none_or(times[i, j, k]),
            "C_J_measured": none_or(cflops[i, j, k]),
            "D_J_resolution": none_or(res[i, j, k]),
            "D_J_std": float(np.nanstd(btimes[:, i, j, k]))
            if n_boot and np.isfinite(btimes[:, i, j, k]).any()
            else None,
        }
        for i, t in enumerate(tasks)
        for j, s in enumerate(utds)
        for k in range(len(J))
    ]
    never = [float(J[k]) for k in range(len(J)) if not np.isfinite(times[..., k]).any()]
    partial = {
        float(J[k]): [
            f"{tasks[i]}@sigma={utds[j]:g}"
            for i in range(len(tasks))
            for j in range(len(utds))
            if not np.isfinite(times[i, j, k])
        ]
        for k in range(len(J))
        if float(J[k]) not in never
    }
    partial = {k: v for k, v in partial.items() if v}
    if never:
        fits["notes"].append(
            f"threshold(s) {never} reached by no run: no D_J fit for them (lower `thresholds`)"
        )
    if partial:
        fits["notes"].append(
            "not reached by every task and UTD (averaged over what was reached): "
            + "; ".join(f"J={k:.0f}: {', '.join(v)}" for k, v in partial.items())
        )
    st.fit_j = [k for k in range(len(J)) if float(J[k]) not in never]
    if not st.fit_j:
        best_ret = max(float(np.nanmax(c["norm"].mean(1))) for c in dchosen)
        raise AnalysisInputError(
            f"no run reaches any threshold {J.round(0).tolist()} (best normalised "
            f"return {best_ret:.0f} / 1000): lower `thresholds` or check `max_returns`"
        )
    st.utds, st.times, st.btimes, st.cflops = utds, times, btimes, cflops
    return pt


def _dj_fits_stage(st, J, n_boot, fits, how="r1"):
    """D_J(sigma): pooled across tasks (R1) with bootstrap intervals, and per task. how="r1": one fit per
    threshold (R1); "joint": every threshold in one fit, alpha shared and D_J monotone in J (fit/joint.py)."""
    utds, times, fitJ = st.utds, st.times, st.fit_j
    de = []
    if how == "joint":
        point = fit.data_efficiency_joint(utds, times[..., fitJ])
        bfits = fit.data_efficiency_joint_boot(utds, st.btimes[..., fitJ], point) if n_boot else None
        fits["notes"].append(
            "D_J(sigma) fitted jointly over thresholds %s: one alpha, D_min and beta nondecreasing in J, "
            "least squares on log D (analysis key dj_fit: joint)" % [float(J[k]) for k in fitJ]
        )
    else:
        point = fit.data_efficiency(utds, times[..., fitJ], top_k=4)
        bfits = fit.data_efficiency_boot(utds, st.btimes[..., fitJ]) if n_boot else None
    bfits = bfits or [{} for _ in fitJ]
    boot_fits = [
        [{q: (v[r] if isinstance(v, np.ndarray) else v) for q, v in bf.items()} for bf in bfits]
        for r in range(n_boot)
    ]
    keys = ("D_min", "alpha", "beta", "a", "b", "c", "m", "loss", "converged", "message", "error")
    for n, k in enumerate(fitJ):
        f = point[n]
        row = {"J": float(J[k]), **{q: f.get(q) for q in keys}}
        for q in ("D_min", "alpha", "beta"):
            row[q + "_ci95"] = fit.percentile_interval(
                [bf[n].get(q, np.nan) for bf in boot_fits if bf[n].get("converged")], (2.5, 97.5)
            )
        row["boot_converged"] = int(sum(bool(bf[n].get("converged")) for bf in boot_fits))
        row["per_task"] = _per_task_fits(utds, times, st.tasks, J, k)
        if not f.get("converged", False):
            why = f.get("error") or f.get("message")
            fits["notes"].append(f"D_J fit at J={J[k]:.0f} did not converge: {why}")
        de.append(row)
    de = [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()} for r in de]
    st.point_fits, st.boot_fits, st.de_fit = point, boot_fits, de
    # one entry per threshold; a threshold no run reached says so instead of holding numbers
    byJ = {r["J"]: r for r in de}
    fits["data_efficiency"] = [
        byJ.get(float(j))
        or {
            "J": float(j),
            "converged": False,
            "D_min": None,
            "alpha": None,
            "beta": None,
            "D_min_ci95": [None, None],
            "alpha_ci95": [None, None],
            "beta_ci95": [None, None],
            "error": f"no run reaches J={j:.0f}",
        }
        for j in J
    ]


def _per_task_fits(utds, times, tasks, J, k):
    """D_J(sigma) of each task at threshold k, each on its own median scale."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(times.reshape(len(tasks), -1), 1)
    pt_fit = fit.fit_power_law_batch(utds, times[:, :, k] / med[:, None])  # per task, own median scale
    for i, t in enumerate(tasks):
        if np.isfinite(times[i, :, k]).sum() < 4:
            out[t] = {"error": f"{t} reaches J={J[k]:.0f} at fewer than 4 UTDs", "converged": False}
            continue
        g = {q: pt_fit[q][i] for q in ("a", "b", "c")}
        out[t] = {**fit.to_physical(g, med[i]), "converged": bool(pt_fit["converged"][i])}
    return out
