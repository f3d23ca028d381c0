"""Loaders: run directories, a W&B project, or the qscaled .npy layout -> one tidy table (table.py);
R5's released arrays -> curve records. One module per source:

- runs: run directories (config.yaml + metrics.jsonl, run.json, status.json) - what `pql-scale train` writes;
- wandb: a W&B project through the public API;
- qscaled: R1's released learning curves;
- tabular: tidy CSV / Parquet files through the config's `table:` mapping, and (wide.py) W&B's wide CSV exports
  of a chart (`table.wide`: a column `<run name> - <metric>` per run) melted into the same tidy rows;
- events: TensorBoard event files (tag names and parameters from the config's `tensorboard:`);
- r5: R5's SimbaV2 model-scaling and BRO ablation arrays (zip or folder).
`load()` reads any mix of the first five into the tidy table (`describe` counts what each input
held); `curves()` turns that into one record per
configuration, which is what every fit works on.
"""

import os

import numpy as np
import pandas as pd

from ..errors import AnalysisInputError
from .events import load_tensorboard
from .qscaled import load_qscaled
from .r5 import BRO_PARAMS, SIMBA_PARAMS, load_bro_ablations, load_model_scaling, sniff
from .runs import load_runs, run_widths
from .table import COLUMNS, CONFIG_KEYS, RUN_EXTRAS, config_frame, curves, dotted_get, frame, is_number
from .tabular import load_table
from .wandb import load_wandb

__all__ = [
    "AnalysisInputError",
    "load",
    "load_qscaled",
    "load_runs",
    "load_wandb",
    "load_table",
    "load_tensorboard",
    "describe",
    "load_model_scaling",
    "load_bro_ablations",
    "sniff",
    "run_widths",
    "curves",
    "config_frame",
    "frame",
    "is_number",
    "dotted_get",
    "COLUMNS",
    "CONFIG_KEYS",
    "RUN_EXTRAS",
    "SIMBA_PARAMS",
    "BRO_PARAMS",
]


def load(inputs, fmt="auto", table=None, tensorboard=None, echo=None, **kw):
    """Load and concatenate every input; `table` / `tensorboard` are the checked specs of those formats
    (config.check_table / check_tensorboard); `echo(line)`, when given, hears what each input held
    (`describe`). Returns (table, skipped)."""
    if isinstance(inputs, str):
        inputs = [inputs]
    if not inputs:
        raise AnalysisInputError(
            "no inputs given: pass run directories, a qscaled data folder or "
            "wandb://entity/project under `inputs`"
        )
    tables, skipped = [], []
    for src in inputs:
        kind = fmt
        if kind == "auto":
            if str(src).startswith("wandb://"):
                kind = "wandb"
            elif not os.path.exists(src):
                raise AnalysisInputError(f"input {src!r} does not exist")
            else:
                kind = "runs"
                for dp, _, files in os.walk(src):
                    if "metrics.jsonl" in files:
                        break
                    if any(f.endswith(".npy") for f in files):
                        kind = "qscaled"
                        break
                    if any("tfevents" in f for f in files):
                        raise AnalysisInputError(
                            f"input {src!r} holds TensorBoard event files: set format: tensorboard and "
                            "name the return's tag under `tensorboard: {scalar: ...}`"
                        )
        if kind == "wandb":
            t, s = load_wandb(src, api=kw.get("api"))
        elif kind == "qscaled":
            t, s = load_qscaled(src), []
        elif kind == "runs":
            t, s = load_runs(src)
        elif kind == "table":
            t, s = load_table([src], _spec(table, kind))
        elif kind == "tensorboard":
            t, s = load_tensorboard(src, _spec(tensorboard, kind))
        else:
            raise AnalysisInputError(
                f"unknown format {fmt!r}; use auto, runs, qscaled, wandb, table or tensorboard"
            )
        if echo is not None:
            echo(describe_line(src, kind, describe(t)))
        tables.append(t)
        skipped += s
    return (pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]), skipped


def _spec(spec, kind):
    if spec is None:
        raise AnalysisInputError(f"format: {kind} needs the `{kind}:` mapping in the config")
    return spec


def describe(t):
    """What one input's tidy table holds: runs, tasks, seeds, and the values of each run parameter."""
    params = {}
    for col in ("sigma", "batch_size", "lr", "model_size"):
        v = pd.unique(t[col].to_numpy(float))
        params[col] = sorted(float(x) for x in v if np.isfinite(x))
    # a run is one (run, seed): the qscaled layout holds every seed of a configuration in one file
    run, _ = pd.factorize(t["run"])
    seed, seeds = pd.factorize(t["seed"])
    return {
        "runs": int(pd.unique(run.astype(np.int64) * (len(seeds) + 1) + seed).size),
        "tasks": sorted(map(str, pd.unique(t["task"]))),
        "seeds": int(len(seeds)),
        "params": params,
        "rows": int(len(t)),
    }


def describe_line(src, kind, d):
    """One line a user reads to see whether the mapping found what they meant."""
    name = {"sigma": "utd", "batch_size": "batch_size", "lr": "lr", "model_size": "model_size"}
    vals = lambda v: ", ".join(f"{x:g}" for x in v[:8]) + (f", ... ({len(v)} values)" if len(v) > 8 else "")
    ps = "; ".join(f"{name[k]}: {vals(v)}" for k, v in d["params"].items() if v)
    tasks = ", ".join(d["tasks"][:6]) + (", ..." if len(d["tasks"]) > 6 else "")
    return (
        f"input {src} ({kind}): {d['runs']} runs, {len(d['tasks'])} task(s) ({tasks}), {d['seeds']} seed(s), "
        f"{d['rows']} log points; {ps or 'no run parameters'}"
    )
