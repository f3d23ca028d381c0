"""Loaders: run directories, a W&B project, or the qscaled .npy layout -> one tidy table (table.py);
R5's released arrays -> curve records. One module per source:

- runs: run directories (config.yaml + metrics.jsonl, run.json, status.json) - what `pql-scale train` writes;
- wandb: a W&B project through the public API;
- qscaled: R1's released learning curves;
- r5: R5's SimbaV2 model-scaling and BRO ablation arrays (zip or folder).
`load()` reads any mix of the first three into the tidy table; `curves()` turns that into one record per
configuration, which is what every fit works on.
"""

import os

import pandas as pd

from ..errors import AnalysisInputError
from .qscaled import load_qscaled
from .r5 import BRO_PARAMS, SIMBA_PARAMS, load_bro_ablations, load_model_scaling, sniff
from .runs import load_runs, run_widths
from .table import COLUMNS, CONFIG_KEYS, RUN_EXTRAS, config_frame, curves, dotted_get, frame, is_number
from .wandb import load_wandb

__all__ = [
    "AnalysisInputError",
    "load",
    "load_qscaled",
    "load_runs",
    "load_wandb",
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


def load(inputs, fmt="auto", **kw):
    """Load and concatenate every input. Returns (table, skipped)."""
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
        if kind == "wandb":
            t, s = load_wandb(src, api=kw.get("api"))
        elif kind == "qscaled":
            t, s = load_qscaled(src), []
        elif kind == "runs":
            t, s = load_runs(src)
        else:
            raise AnalysisInputError(f"unknown format {fmt!r}; use auto, runs, qscaled or wandb")
        tables.append(t)
        skipped += s
    return pd.concat(tables, ignore_index=True), skipped
