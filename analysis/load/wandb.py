"""A W&B project (`wandb://entity/project`, through the public API) -> the tidy table."""

import numpy as np
import pandas as pd

from ..errors import AnalysisInputError
from .table import COLUMNS, dotted_get, frame


def load_wandb(path, api=None, returns_key="return_mean", per_page=1000):
    """`wandb://entity/project` through the public API. `api` is a wandb.Api() (or anything with
    .runs(path) yielding objects with .config, .summary, .name, .id, .state, .scan_history(keys=...))."""
    if api is None:
        try:
            import wandb

            api = wandb.Api()
        except Exception as e:  # not installed, not logged in, no network: say which
            raise AnalysisInputError(
                f"cannot open the W&B public API for {path!r}: {type(e).__name__}: {e} "
                "(pip install wandb; `wandb login` or WANDB_API_KEY; or export the runs "
                "and analyse the local run directories)"
            ) from None
    proj0 = path[len("wandb://") :] if path.startswith("wandb://") else path
    try:
        runs = list(api.runs(proj0, per_page=per_page))
    except Exception as e:
        msg = f"cannot list runs of W&B project {proj0!r}: {type(e).__name__}: {e}"
        raise AnalysisInputError(msg) from None
    proj = path[len("wandb://") :] if path.startswith("wandb://") else path
    parts, skipped = [], []
    for run in runs:
        cfg = dict(run.config)
        if run.state in ("failed", "crashed"):
            skipped.append((run.id, f"state {run.state}"))
            continue
        # all rows (keys=None): scan_history(keys=[...]) drops every row missing any of the keys
        hist = [r for r in run.scan_history(keys=None, page_size=per_page) if r.get("env_steps") is not None]
        if not hist:
            skipped.append((run.id, "history has no env_steps"))
            continue
        m = pd.DataFrame(hist)
        get = lambda k: m[k].astype(float).to_numpy() if k in m else np.full(len(m), np.nan)
        num_envs = int(cfg.get("num_envs", 1) or 1)
        sigma = cfg.get("utd")
        if sigma is None:  # configured sigma = critic updates per actor step / num_envs
            cups = dotted_get(cfg, "algo.critic_updates_per_step", cfg.get("algo.critic_updates_per_step"))
            sigma = float(cups) / num_envs if cups is not None else np.nan
        pick = lambda *ks: next(
            (dotted_get(cfg, k, cfg.get(k)) for k in ks if dotted_get(cfg, k, cfg.get(k)) is not None), np.nan
        )
        parts.append(
            pd.DataFrame(
                {
                    "task": pick("task"),
                    "algo": pick("algo.name", "algo"),
                    "sigma": float(sigma),
                    "batch_size": float(pick("batch_size", "algo.batch_size")),
                    "lr": float(pick("critic_lr", "algo.critic_lr")),
                    "model_size": float(pick("critic_params")),
                    "experts": int(pick("experts") if pick("experts") == pick("experts") else 0),
                    "num_envs": num_envs,
                    "seed": int(pick("seed") if pick("seed") == pick("seed") else 0),
                    "run": run.id,
                    "env_steps": get("env_steps"),
                    "grad_steps": get("critic_updates"),
                    "flops": get("flops"),
                    "wall_time_s": get("wall_time_s"),
                    "return": get(returns_key),
                    "r_max": float(pick("r_max")),
                }
            )
        )
    if not parts:
        raise AnalysisInputError(
            f"W&B project {proj!r} has no usable runs"
            + (": " + "; ".join(f"{p}: {r}" for p, r in skipped) if skipped else "")
        )
    return frame(pd.concat(parts, ignore_index=True)[COLUMNS]), skipped
