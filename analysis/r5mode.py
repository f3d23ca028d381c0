"""R5 mode (docs/science.md 3): time to threshold per (task, sigma, N) with the best batch size, on R5's released
arrays or our runs, and R5's sum-of-power-laws surface D(sigma, N) per task (or pooled over tasks)."""

import os
import warnings

import numpy as np
import pandas as pd

from . import config, fit, load
from .errors import AnalysisInputError
from .modelsize import width_fit
from .result import AnalysisResult, AnalysisState


def r5_analysis(cfg, api=None):
    """R5's time to threshold per (task, sigma, N) and its sum-of-power-laws surface (docs/science.md 3).
    `cfg`: keys as config.DEFAULTS (config.with_defaults)."""
    cfg = config.r5_config(cfg)
    curves, skipped = _r5_inputs(cfg, api)
    tasks, keep = _select(cfg, curves)
    kept = [c for c, k in zip(curves, keep) if k]
    fits = {
        "config": config.config_record(cfg),
        "mode": "r5",
        "skipped": [{"path": str(p), "reason": r} for p, r in skipped],
        "notes": [],
        "counts": {
            "configs": int(sum(keep)),
            "tasks": len(tasks),
            "utds": sorted({c["sigma"] for c in kept}),
            "seeds_min": int(min([c["n_seeds"] for c in kept] or [0])),
        },
        "hparams": {},
        "data_efficiency": [],
        "crossings": [],
        "pareto": [],
    }
    if not any(keep):
        raise AnalysisInputError("no configuration left after `tasks` / `exclude`")
    df = pd.DataFrame(_cells(cfg, curves, tasks, keep, fits))
    width_of = {c["model_size"]: c.get("width") for c in curves}
    df["width"] = [width_of.get(n) for n in df["N"]]
    df["time_to_threshold_surface"] = np.nan
    fits["surface"] = {}
    bs_best = [c["batch_size"] for c in kept if np.isfinite(c["batch_size"])]
    batch = float(np.exp(np.mean(np.log(bs_best)))) if bs_best else np.nan
    fits["compute"] = {
        "formula": "R5: C = 10 * N * B * sigma * D",
        "batch_size": f"geometric mean of the inputs' batch sizes ({batch:.4g})",
        "delta": cfg["delta"],
    }
    _surfaces(df, batch, cfg["delta"], fits)
    wf = width_fit(df["width"].astype(float), df["N"]) if df["width"].notna().any() else None
    if wf:
        fits["width_fit"] = wf
    cols = ["task", "sigma", "N", "time_to_threshold", "time_to_threshold_std", "time_to_threshold_surface"]
    extra = [c for c in ("J", "width", "n_boot_finite", "n_tasks") if c in df]
    fits["surface_table"] = df[cols + extra].to_dict("records")
    return AnalysisResult(fits, AnalysisState(curves=kept, surface_df=df))


def _select(cfg, curves):
    """The tasks analysed and, per curve, whether it is kept (its task, not excluded)."""
    tasks = sorted({c["task"] for c in curves})
    if cfg["tasks"] is not None:
        want = [cfg["tasks"]] if isinstance(cfg["tasks"], str) else list(cfg["tasks"])
        missing = sorted(set(want) - set(tasks))
        if missing:
            raise AnalysisInputError(f"tasks {missing} are not in the inputs (tasks there: {tasks})")
        tasks = sorted(want)
    algos = sorted({str(c["algo"]) for c in curves})
    if len(algos) > 1:
        raise AnalysisInputError(
            f"inputs mix algorithms / critic architectures {algos}: a surface is one "
            "family; give `inputs` that hold one of them"
        )
    return tasks, [c["task"] in tasks and not _excluded(c, cfg["exclude"]) for c in curves]


def _cells(cfg, curves, tasks, keep, fits):
    """Time-to-threshold cells (task, sigma, N, J): pooled over tasks (pool: r5) or per task and threshold."""
    if cfg["pool"] == "r5":
        sel = [c for c, k in zip(curves, keep) if k]
        no_base = sorted({c["task"] for c in sel} - set(cfg["threshold_base"]))
        if no_base:
            raise AnalysisInputError(f"pool: r5 needs threshold_base for every task; missing {no_base}")
        cells, info = fit.r5_pooled(sel, cfg["threshold_base"], cfg["reset_every_grad_steps"])
        fits["pooled_thresholds"] = info
        if cfg["reset_every_grad_steps"]:
            fits["notes"].append(f"BRO reset filter: every {cfg['reset_every_grad_steps']:g} gradient steps")
        return [dict(c, J=np.nan) for c in cells]
    thr = {}
    for t in tasks:
        if t in cfg["thresholds"]:
            thr[t] = cfg["thresholds"][t]
        elif t in cfg["threshold_base"]:
            thr[t] = [
                float(
                    r5_threshold_top(
                        [c for c, k in zip(curves, keep) if k and c["task"] == t], cfg["threshold_base"][t]
                    )[-1]
                )
            ]
        else:
            raise AnalysisInputError(
                f"no threshold for task {t!r}: add it under `thresholds` (absolute "
                "return) or `threshold_base` with `threshold_rule: r5`"
            )
    # every configuration consumes R5's one RNG stream in input order (also the excluded ones, as R5
    # computed all and left cells out of its table), so that the stds replay R5's numbers
    rows = []
    for k in range(max(len(v) for v in thr.values())):
        thk = {t: v[k] for t, v in thr.items() if k < len(v)}
        use = [c for c in curves if c["task"] in thk]
        flags = [kk for c, kk in zip(curves, keep) if c["task"] in thk]
        cells = fit.r5_cells(use, thk, cfg["bootstrap"], cfg["r5_seed"], keep=flags)
        rows += [dict(c, J=thk[c["task"]]) for c in cells]
    return rows


def _surfaces(df, batch, delta, fits):
    """R5's surface per (task, J) of the cells in `df` (its fitted times filled in), with the compute-optimal
    (sigma, N) when the batch size is known."""
    multiJ = df.groupby("task")["J"].nunique().max() > 1
    for (t, J), g in df.groupby(["task", "J"], dropna=False, sort=True):
        name = f"{t}@J={J:g}" if multiJ else t
        try:
            f = fit.fit_surface(g["sigma"], g["N"], g["time_to_threshold"])
        except AnalysisInputError as e:
            fits["surface"][name] = {"error": str(e)}
            fits["notes"].append(f"surface {name}: {e}")
            continue
        df.loc[g.index, "time_to_threshold_surface"] = fit.surface_value(
            f, g["sigma"].to_numpy(), g["N"].to_numpy()
        )
        if np.isfinite(batch):
            bud = lambda s, n, d: 10 * n * batch * s * d + delta * d
            f["optimum"] = fit.surface_optimum(
                f, bud, (g["sigma"].min(), g["sigma"].max()), (g["N"].min(), g["N"].max())
            )
        f.update(
            J=None if not np.isfinite(J) else float(J), cells=int(np.isfinite(g["time_to_threshold"]).sum())
        )
        if not f["converged"]:
            fits["notes"].append(f"surface {name} did not converge: {f['message']}")
        fits["surface"][name] = f


def _r5_inputs(cfg, api=None):
    """Curve records of every input, in the order R5 consumed them; returns as is (no normalisation)."""
    out, skipped = [], []
    inputs = [cfg["inputs"]] if isinstance(cfg["inputs"], str) else list(cfg["inputs"])
    if not inputs:
        raise AnalysisInputError(
            "no inputs given: pass the R5 zip / folder or run directories under `inputs`"
        )
    for src in inputs:
        fmt = cfg["format"]
        if fmt == "auto" and os.path.exists(src):
            fmt = load.sniff(src)
        if fmt == "model_scaling":
            out += load.load_model_scaling(src)
        elif fmt == "bro_ablations":
            out += load.load_bro_ablations(src)
        else:  # our runs (or qscaled / W&B): curves of the tidy table, widths from run.json
            table, sk = load.load([src], fmt, api=api, table=cfg["table"], tensorboard=cfg["tensorboard"])
            skipped += sk
            cs = load.curves(table)
            widths = load.run_widths(src) if fmt in ("auto", "runs") and os.path.isdir(src) else {}
            for c in cs:
                c["width"] = widths.get(c["model_size"])
                c["member"] = len(out)
                out.append(c)
    return out, skipped


def _excluded(c, ex):
    for axis, vals in ex.items():
        v = c.get({"width": "width", "size": "size", "sigma": "sigma", "batch_size": "batch_size"}[axis])
        if v is None:
            continue
        if any(
            str(v) == str(x) or (isinstance(v, (int, float)) and _isnum(x) and float(v) == float(x))
            for x in vals
        ):
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
        finals = [
            fit.isotonic(np.nanmean(c["returns"], 1)[np.isfinite(np.nanmean(c["returns"], 1))])[-1]
            for c in curves
        ]
    top = np.floor(0.95 * np.percentile(finals, 20) / 10) * 10
    return np.linspace(float(base), top, n)
