"""R1's released learning curves (github prestonfu/qscaled): the qscaled .npy layout -> the tidy table."""

import os
import re

import numpy as np
import pandas as pd

from ..errors import AnalysisInputError
from .table import COLUMNS, frame

_QS = re.compile(
    r"utd_(?P<utd>[0-9.e+-]+)/(?P<task>[^/]+)/(?P<key>[^/]+)/"
    r"bs_(?P<bs>[0-9]+)_lr_(?P<lr>[0-9.e+-]+)\.npy$"
)


def load_qscaled(root, returns_key="episode.return", algo="sac", model_size=np.nan):
    """R1's released layout: {exp}/utd_{sigma}/{task}/{key}/bs_{B}_lr_{lr}.npy, array [T, 1+S]
    (column 0 = env step, then one column of raw returns per seed)."""
    metas, seeds, steps_l, rets, fidx = [], [], [], [], []
    for dirpath, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            m = _QS.search(os.path.join(dirpath, f).replace(os.sep, "/"))
            if not m or m["key"] != returns_key:
                continue
            path = os.path.join(dirpath, f)
            try:
                arr = np.asarray(np.load(path, allow_pickle=False), dtype=float)
            except (OSError, ValueError, TypeError) as e:
                msg = f"{path}: not a numeric .npy array ({type(e).__name__}: {e})"
                raise AnalysisInputError(msg) from None
            if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 2:
                raise AnalysisInputError(
                    f"{path}: expected a [T, 1 + seeds] array (column 0 = env step), got shape {arr.shape}"
                )
            steps, ret = arr[:, 0], arr[:, 1:]
            if not np.isfinite(steps).all() or (np.diff(steps) <= 0).any():
                raise AnalysisInputError(
                    f"{path}: column 0 (env steps) must be finite and strictly increasing"
                )
            t, s = ret.shape
            fidx.append(np.full(t * s, len(metas)))
            metas.append(
                {
                    "task": m["task"],
                    "algo": algo,
                    "sigma": float(m["utd"]),
                    "batch_size": float(m["bs"]),
                    "lr": float(m["lr"]),
                    "model_size": model_size,
                    "experts": 0,
                    "num_envs": 1,
                    "run": os.path.relpath(os.path.join(dirpath, f), root),
                    "flops": np.nan,
                    "wall_time_s": np.nan,
                    "r_max": np.nan,
                }
            )
            seeds.append(np.repeat(np.arange(s), t))
            steps_l.append(np.tile(steps, s))
            rets.append(ret.T.reshape(-1))
    if not metas:
        raise AnalysisInputError(
            f"no qscaled .npy files under {root!r} (expected "
            f"utd_<sigma>/<task>/{returns_key}/bs_<B>_lr_<lr>.npy)"
        )
    # per-file facts broadcast by index (much faster than building one frame per file)
    df = pd.DataFrame(metas).take(np.concatenate(fidx)).reset_index(drop=True)
    df["seed"] = np.concatenate(seeds)
    df["env_steps"] = np.concatenate(steps_l)
    df["grad_steps"] = df["env_steps"] * df["sigma"]
    df["return"] = np.concatenate(rets)
    return frame(df[COLUMNS])
