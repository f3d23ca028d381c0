"""Run directories (config.yaml + metrics.jsonl, with run.json and status.json when present) -> the tidy
table. The run directory is the contract between training and analysis: its file names, fields and readers
are pql_scaling.rundir.schema's (standard library only: no training stack comes with it)."""

import json
import os

import numpy as np
import pandas as pd

import pql_scaling.rundir.schema as schema
from pql_scaling.rundir.schema import CONFIG, FACTS, METRICS, STATUS

from ..errors import AnalysisInputError
from .table import COLUMNS, RUN_EXTRAS, dotted_get, frame, is_number


def _fnum(x):
    """A config value as a float; NaN when it is missing or not a number (YAML 1.1 leaves `1e-3` a string)."""
    if isinstance(x, bool) or x is None:
        return np.nan
    try:
        return float(x)
    except (TypeError, ValueError, OverflowError):
        return np.nan


def _one_timeline(rows, path):
    """A log whose env_steps go backwards (a run resumed from a checkpoint before a crash's last log points,
    by a version that did not supersede them) holds two timelines over the same steps: keep the later one, the
    one the run continued, and say how many points were dropped. Returns (rows, notes)."""
    kept, dropped, first, steps = [], 0, None, schema.ENV_STEPS
    for r in rows:
        while kept and kept[-1][steps] >= r[steps]:
            if first is None:
                first = (kept[-1][steps], r[steps])
            kept.pop()
            dropped += 1
        kept.append(r)
    if not dropped:
        return rows, []
    return kept, [
        f"{path}: env_steps not monotone (went {first[0]:g} -> {first[1]:g}): repaired by keeping "
        f"the later timeline, {dropped} superseded log point(s) dropped"
    ]


def _algo_arch(info, cfg):
    """The algorithm, tagged with the critic architecture when it is not the dense MLP ("pql+bro"), so that
    runs of different architectures are never pooled as one model-size family by accident."""
    algo = info.get("algo", dotted_get(cfg, "algo.name"))
    arch = info.get("critic_arch", dotted_get(cfg, "net.critic_arch", "mlp"))
    return algo if arch in (None, "mlp") else f"{algo}+{arch}"


def load_runs(root, include_running=True):
    """Recursively load run directories (config.yaml + metrics.jsonl). Returns (table, skipped) where
    skipped lists (path, reason) for every directory or line that was left out."""
    parts, skipped = [], []
    for dirpath, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        if CONFIG not in files and METRICS not in files:
            continue
        if CONFIG not in files or METRICS not in files:
            missing = CONFIG if CONFIG not in files else METRICS
            skipped.append((dirpath, f"no {missing}: not a complete run directory"))
            continue
        meta = _run_meta(dirpath, files, include_running, skipped)
        if meta is None:
            continue
        cfg, info, st = meta
        rows = _log_rows(dirpath, skipped)
        part = _run_frame(dirpath, cfg, info, rows, skipped) if rows else None
        if part is None:
            continue
        parts.append(part)
        if st == schema.RUNNING:
            skipped.append((dirpath, f"note: run still running, using its {len(rows)} log points so far"))
    if not parts:
        raise AnalysisInputError(
            f"no run directories (config.yaml + metrics.jsonl) under {root!r}"
            + (": " + "; ".join(f"{p}: {r}" for p, r in skipped) if skipped else "")
        )
    df = pd.concat(parts, ignore_index=True)
    return frame(df[COLUMNS + RUN_EXTRAS]), skipped


def _run_meta(dirpath, files, include_running, skipped):
    """(config.yaml, run.json, status) of one run directory, or None when the run is left out (said in
    `skipped`)."""
    import yaml

    try:
        with open(os.path.join(dirpath, CONFIG)) as fh:
            cfg = yaml.safe_load(fh) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        skipped.append((dirpath, f"config.yaml unreadable: {e}"))
        return None
    if not isinstance(cfg, dict):
        skipped.append((dirpath, f"config.yaml holds a {type(cfg).__name__}, not a mapping of config keys"))
        return None
    info = {}
    if FACTS in files:
        try:
            info = schema.read_facts(os.path.join(dirpath, FACTS))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            skipped.append((dirpath, f"run.json unreadable ({e}); using config.yaml only"))
        if not isinstance(info, dict):
            skipped.append(
                (
                    dirpath,
                    f"run.json holds a {type(info).__name__}, not a JSON object; using config.yaml only",
                )
            )
            info = {}
    status = {}
    if STATUS in files:
        try:
            status = schema.read_status(os.path.join(dirpath, STATUS))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            status = {"status": schema.RUNNING}  # being rewritten right now
    if not isinstance(status, dict):
        skipped.append((dirpath, f"status.json holds a {type(status).__name__}, not a JSON object"))
        return None
    st = status.get("status", "unknown")
    if status.get(schema.LOST):  # read_status: a `running` whose process is gone or whose heartbeat stopped
        skipped.append((dirpath, f"note: stopped ({status.get('reason')}); using its log points so far"))
    if st == schema.FAILED:
        skipped.append((dirpath, f"status failed: {status.get('reason')}"))
        return None
    if st == schema.RUNNING and not include_running:
        skipped.append((dirpath, "still running (include_running=False)"))
        return None
    return cfg, info, st


def _log_rows(dirpath, skipped):
    """metrics.jsonl's log points with a numeric env_steps, on one timeline; [] (said in `skipped`) if
    none."""
    rows, notes = schema.read_metrics(os.path.join(dirpath, METRICS))
    skipped += [(dirpath, n) for n in notes]
    good = [r for r in rows if isinstance(r, dict) and is_number(r.get(schema.ENV_STEPS))]
    if len(good) < len(rows):
        skipped.append(
            (dirpath, f"{len(rows) - len(good)} log point(s) without a finite numeric env_steps skipped")
        )
    rows = good
    rows, notes = _one_timeline(rows, os.path.join(dirpath, METRICS))
    skipped += [(dirpath, n) for n in notes]
    if not rows:
        skipped.append((dirpath, "metrics.jsonl has no log point with env_steps"))
    return rows


def _run_frame(dirpath, cfg, info, rows, skipped):
    """The tidy rows of one run (run.json's values first, config.yaml's otherwise), or None when its num_envs
    is not a positive integer (said in `skipped`)."""
    num_envs = _fnum(info.get("num_envs", cfg.get("num_envs", 1)))
    if not (num_envs >= 1 and num_envs == int(num_envs)):
        skipped.append(
            (
                dirpath,
                f"num_envs {info.get('num_envs', cfg.get('num_envs'))!r} is not a positive "
                "integer (run.json / config.yaml)",
            )
        )
        return None
    num_envs = int(num_envs)
    sigma = _fnum(info.get("utd"))
    if not np.isfinite(sigma):
        sigma = _fnum(dotted_get(cfg, "algo.critic_updates_per_step")) / num_envs
    m = pd.DataFrame(rows)

    def get(k):  # a non-numeric value (a string, a bool, null) in a numeric column is missing, not a crash
        if k not in m:
            return np.full(len(m), np.nan)
        v = m[k].map(lambda x: x if is_number(x) or (isinstance(x, float) and x != x) else np.nan)
        return pd.to_numeric(v, errors="coerce").astype(float).to_numpy()

    seed = _fnum(info.get("seed", cfg.get("seed", 0)))
    experts = _fnum(info.get("experts", 0))
    r_max = info.get("r_max") if info.get("r_max") is not None else cfg.get("r_max")
    return pd.DataFrame(
        {
            "task": str(info.get("task", cfg.get("task"))),
            "algo": _algo_arch(info, cfg),
            "sigma": sigma,
            "batch_size": _fnum(info.get("batch_size", dotted_get(cfg, "algo.batch_size", np.nan))),
            "lr": _fnum(info.get("critic_lr", dotted_get(cfg, "algo.critic_lr", np.nan))),
            "model_size": _fnum(info.get("critic_params", np.nan)),
            "experts": int(experts if np.isfinite(experts) else 0),
            "num_envs": num_envs,
            "seed": int(seed) if np.isfinite(seed) else 0,
            "run": dirpath,
            "env_steps": get(schema.ENV_STEPS),
            "grad_steps": get(schema.CRITIC_UPDATES),
            "flops": get(schema.FLOPS),
            "wall_time_s": get(schema.WALL_TIME_S),
            "return": get(schema.RETURN_MEAN),
            "r_max": _fnum(r_max),
            "mode": info.get("mode", cfg.get("mode")),
            "eval_return": get(schema.EVAL_RETURN_MEAN),
            "actor_busy": 1.0 - get(schema.ACTOR_WAIT_FRAC),
            "learner_busy": 1.0 - get(schema.V_WAIT_FRAC),
        }
    )


def run_widths(root):
    """{critic_params: critic_width} from the run.json files under `root` (for `recommend`'s width)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        if FACTS in files:
            try:
                info = schema.read_facts(os.path.join(dirpath, FACTS))
            except (OSError, json.JSONDecodeError):
                continue
            if info.get("critic_params") is not None and info.get("critic_width") is not None:
                out[float(info["critic_params"])] = int(info["critic_width"])
    return out
