"""Loaders: run directories, a W&B project, or the qscaled .npy layout -> one tidy table.

The tidy table has one row per (run, seed, log point) with the columns in COLUMNS. `curves()` turns it
into one record per configuration (task, algo, sigma, B, lr, model size, experts) holding a
[T, S] matrix of returns over a shared env-step grid, which is what every fit works on.
"""
import json
import os
import re
import warnings

import numpy as np
import pandas as pd

COLUMNS = ["task", "algo", "sigma", "batch_size", "lr", "model_size", "experts", "num_envs", "seed",
           "run", "env_steps", "grad_steps", "flops", "wall_time_s", "return", "r_max"]
CONFIG_KEYS = ["task", "algo", "sigma", "batch_size", "lr", "model_size", "experts"]


class AnalysisInputError(ValueError):
    """Bad or missing input; the message says what is missing and how to fix it."""


def _frame(rows):
    df = pd.DataFrame(rows, columns=COLUMNS) if isinstance(rows, list) else rows
    return df.astype({"sigma": float, "batch_size": float, "lr": float, "model_size": float,
                      "env_steps": float, "grad_steps": float, "flops": float, "wall_time_s": float,
                      "return": float})


# ----------------------------------------------------------------------------------------- qscaled
_QS = re.compile(r"utd_(?P<utd>[0-9.e+-]+)/(?P<task>[^/]+)/(?P<key>[^/]+)/bs_(?P<bs>[0-9]+)_lr_(?P<lr>[0-9.e+-]+)\.npy$")


def load_qscaled(root, returns_key="episode.return", algo="sac", model_size=np.nan):
    """R1's released layout: {exp}/utd_{sigma}/{task}/{key}/bs_{B}_lr_{lr}.npy, array [T, 1+S]
    (column 0 = env step, then one column of raw returns per seed)."""
    metas, seeds, steps_l, rets, fidx = [], [], [], [], []
    for dirpath, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            m = _QS.search(os.path.join(dirpath, f).replace(os.sep, "/"))
            if not m or m["key"] != returns_key:
                continue
            arr = np.load(os.path.join(dirpath, f))
            if arr.ndim != 2 or arr.shape[1] < 2:
                raise AnalysisInputError(f"{os.path.join(dirpath, f)}: expected a [T, 1+S] array (env step, then one "
                                         f"column of returns per seed), got shape {arr.shape}")
            steps, ret = arr[:, 0], arr[:, 1:]
            t, s = ret.shape
            fidx.append(np.full(t * s, len(metas)))
            metas.append({"task": m["task"], "algo": algo, "sigma": float(m["utd"]), "batch_size": float(m["bs"]),
                          "lr": float(m["lr"]), "model_size": model_size, "experts": 0, "num_envs": 1,
                          "run": os.path.relpath(os.path.join(dirpath, f), root), "flops": np.nan,
                          "wall_time_s": np.nan, "r_max": np.nan})
            seeds.append(np.repeat(np.arange(s), t))
            steps_l.append(np.tile(steps, s))
            rets.append(ret.T.reshape(-1))
    if not metas:
        raise AnalysisInputError(f"no qscaled .npy files under {root!r} (expected "
                                 f"utd_<sigma>/<task>/{returns_key}/bs_<B>_lr_<lr>.npy)")
    # per-file facts broadcast by index (much faster than building one frame per file)
    df = pd.DataFrame(metas).take(np.concatenate(fidx)).reset_index(drop=True)
    df["seed"] = np.concatenate(seeds)
    df["env_steps"] = np.concatenate(steps_l)
    df["grad_steps"] = df["env_steps"] * df["sigma"]
    df["return"] = np.concatenate(rets)
    return _frame(df[COLUMNS])


# ----------------------------------------------------------------------------------- run directories
def _read_metrics(path):
    """Parse metrics.jsonl; a truncated last line (run killed mid-write) is skipped and reported."""
    rows, notes = [], []
    with open(path) as fh:
        lines = fh.read().split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                notes.append(f"line {i + 1} is {type(row).__name__}, not a JSON object (skipped)")
                continue
            rows.append(row)
        except json.JSONDecodeError:
            last = all(not x.strip() for x in lines[i + 1:])
            notes.append(f"line {i + 1} is {'truncated (last line, skipped)' if last else 'not JSON (skipped)'}")
    return rows, notes


def _get(d, dotted, default=None):
    for k in dotted.split("."):
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def load_runs(root, include_running=True):
    """Recursively load run directories (config.yaml + metrics.jsonl). Returns (table, skipped) where
    skipped lists (path, reason) for every directory or line that was left out."""
    import yaml

    parts, skipped = [], []
    for dirpath, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        if "config.yaml" not in files and "metrics.jsonl" not in files:
            continue
        if "config.yaml" not in files or "metrics.jsonl" not in files:
            missing = "config.yaml" if "config.yaml" not in files else "metrics.jsonl"
            skipped.append((dirpath, f"no {missing}: not a complete run directory"))
            continue
        try:
            with open(os.path.join(dirpath, "config.yaml")) as fh:
                cfg = yaml.safe_load(fh) or {}
        except yaml.YAMLError as e:
            skipped.append((dirpath, f"config.yaml unreadable: {e}"))
            continue
        if not isinstance(cfg, dict):
            skipped.append((dirpath, f"config.yaml holds a {type(cfg).__name__}, not a mapping of config keys"))
            continue
        info = {}
        if "run.json" in files:
            try:
                with open(os.path.join(dirpath, "run.json")) as fh:
                    info = json.load(fh)
            except (OSError, json.JSONDecodeError) as e:
                skipped.append((dirpath, f"run.json unreadable ({e}); using config.yaml only"))
            if not isinstance(info, dict):
                skipped.append((dirpath, f"run.json holds a {type(info).__name__}, not a JSON object; using config.yaml only"))
                info = {}
        status = {}
        if "status.json" in files:
            try:
                with open(os.path.join(dirpath, "status.json")) as fh:
                    status = json.load(fh)
            except (OSError, json.JSONDecodeError):
                status = {"status": "running"}  # being rewritten right now
        if not isinstance(status, dict):
            skipped.append((dirpath, f"status.json holds a {type(status).__name__}, not a JSON object"))
            continue
        st = status.get("status", "unknown")
        if st == "failed":
            skipped.append((dirpath, f"status failed: {status.get('reason')}"))
            continue
        if st == "running" and not include_running:
            skipped.append((dirpath, "still running (include_running=False)"))
            continue
        rows, notes = _read_metrics(os.path.join(dirpath, "metrics.jsonl"))
        skipped += [(dirpath, n) for n in notes]
        rows = [r for r in rows if r.get("env_steps") is not None]
        if not rows:
            skipped.append((dirpath, "metrics.jsonl has no log point with env_steps"))
            continue
        try:
            num_envs = int(info.get("num_envs", cfg.get("num_envs", 1)) or 1)
        except (TypeError, ValueError):
            skipped.append((dirpath, f"num_envs {info.get('num_envs', cfg.get('num_envs'))!r} is not an integer"))
            continue
        sigma = info.get("utd")
        if sigma is None:
            cups = _get(cfg, "algo.critic_updates_per_step")
            sigma = float(cups) / num_envs if cups is not None else np.nan
        m = pd.DataFrame(rows)
        get = lambda k: m[k].astype(float).to_numpy() if k in m else np.full(len(m), np.nan)
        try:
            for k in ("env_steps", "critic_updates", "flops", "wall_time_s", "return_mean"):
                get(k)
            float(sigma), float(info.get("critic_params", np.nan)), num_envs
        except (TypeError, ValueError) as e:
            skipped.append((dirpath, f"a value that is not a number ({e}) in metrics.jsonl / run.json / config.yaml"))
            continue
        parts.append(pd.DataFrame({
            "task": info.get("task", cfg.get("task")), "algo": info.get("algo", _get(cfg, "algo.name")),
            "sigma": float(sigma), "batch_size": float(info.get("batch_size", _get(cfg, "algo.batch_size", np.nan))),
            "lr": float(info.get("critic_lr", _get(cfg, "algo.critic_lr", np.nan))),
            "model_size": float(info.get("critic_params", np.nan)),
            "experts": int(info.get("experts", 0) or 0), "num_envs": num_envs,
            "seed": int(info.get("seed", cfg.get("seed", 0))), "run": dirpath,
            "env_steps": get("env_steps"), "grad_steps": get("critic_updates"), "flops": get("flops"),
            "wall_time_s": get("wall_time_s"), "return": get("return_mean"),
            "r_max": float(info.get("r_max") if info.get("r_max") is not None else
                           (cfg.get("r_max") if cfg.get("r_max") is not None else np.nan))}))
        if st == "running":
            skipped.append((dirpath, f"note: run still running, using its {len(rows)} log points so far"))
    if not parts:
        raise AnalysisInputError(f"no run directories (config.yaml + metrics.jsonl) under {root!r}"
                                 + (": " + "; ".join(f"{p}: {r}" for p, r in skipped) if skipped else ""))
    df = pd.concat(parts, ignore_index=True)
    return _frame(df[COLUMNS]), skipped


# -------------------------------------------------------------------------------------------- W&B
def load_wandb(path, api=None, returns_key="return_mean", per_page=1000):
    """`wandb://entity/project` through the public API. `api` is a wandb.Api() (or anything with
    .runs(path) yielding objects with .config, .summary, .name, .id, .state, .scan_history(keys=...))."""
    if api is None:
        try:
            import wandb
            api = wandb.Api()
        except Exception as e:  # not installed, not logged in, no network: say which
            raise AnalysisInputError(f"cannot open the W&B public API for {path!r}: {type(e).__name__}: {e} "
                                     "(pip install wandb; `wandb login` or WANDB_API_KEY; or export the runs "
                                     "and analyse the local run directories)") from None
    proj0 = path[len("wandb://"):] if path.startswith("wandb://") else path
    try:
        runs = list(api.runs(proj0, per_page=per_page))
    except Exception as e:
        raise AnalysisInputError(f"cannot list runs of W&B project {proj0!r}: {type(e).__name__}: {e}") from None
    proj = path[len("wandb://"):] if path.startswith("wandb://") else path
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
            cups = _get(cfg, "algo.critic_updates_per_step", cfg.get("algo.critic_updates_per_step"))
            sigma = float(cups) / num_envs if cups is not None else np.nan
        pick = lambda *ks: next((_get(cfg, k, cfg.get(k)) for k in ks if _get(cfg, k, cfg.get(k)) is not None), np.nan)
        parts.append(pd.DataFrame({
            "task": pick("task"), "algo": pick("algo.name", "algo"), "sigma": float(sigma),
            "batch_size": float(pick("batch_size", "algo.batch_size")), "lr": float(pick("critic_lr", "algo.critic_lr")),
            "model_size": float(pick("critic_params")), "experts": int(pick("experts") if pick("experts") == pick("experts") else 0),
            "num_envs": num_envs, "seed": int(pick("seed") if pick("seed") == pick("seed") else 0), "run": run.id,
            "env_steps": get("env_steps"), "grad_steps": get("critic_updates"), "flops": get("flops"),
            "wall_time_s": get("wall_time_s"), "return": get(returns_key), "r_max": float(pick("r_max"))}))
    if not parts:
        raise AnalysisInputError(f"W&B project {proj!r} has no usable runs"
                                 + (": " + "; ".join(f"{p}: {r}" for p, r in skipped) if skipped else ""))
    return _frame(pd.concat(parts, ignore_index=True)[COLUMNS]), skipped


def load(inputs, fmt="auto", **kw):
    """Load and concatenate every input. Returns (table, skipped)."""
    if isinstance(inputs, str):
        inputs = [inputs]
    if not inputs:
        raise AnalysisInputError("no inputs given: pass run directories, a qscaled data folder or "
                                 "wandb://entity/project under `inputs`")
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


# ------------------------------------------------------------------------------------------ curves
def curves(table):
    """One record per configuration: steps [T], returns [T, S] (raw), grad_steps/flops/wall [T]
    (seed means). Seeds logged on different steps are aligned on the union of steps with forward fill
    (a null return means no episode ended yet), then cut to the range every seed has reached."""
    out = []
    keys = CONFIG_KEYS
    t = table.copy()
    for k in ("model_size", "batch_size", "lr"):
        t[k] = t[k].fillna(-1.0)  # groupby drops NaN keys
    arrays = {c: t[c].to_numpy() for c in ("seed", "env_steps", "return", "grad_steps", "flops", "wall_time_s", "r_max", "num_envs")}
    for key, ix in t.groupby(keys, sort=True, dropna=False).indices.items():
        g = {c: v[ix] for c, v in arrays.items()}
        seed = g["seed"]
        st = g["env_steps"]
        order = np.lexsort((st, seed))
        us, cnt = np.unique(seed, return_counts=True)
        same = (cnt == cnt[0]).all()
        if same:  # fast path (qscaled layout): every seed logged on the same steps
            grid = st[order].reshape(len(us), -1)
            same = bool((grid == grid[:1]).all())
        if same:
            steps = grid[0]
            ret = g["return"][order].reshape(len(us), -1).T
            other = {c: g[c][order].reshape(len(us), -1).T for c in ("grad_steps", "flops", "wall_time_s")}
        else:
            g = pd.DataFrame(g)
            piv = {c: g.pivot_table(index="env_steps", columns="seed", values=c, aggfunc="last", dropna=False)
                   for c in ("return", "grad_steps", "flops", "wall_time_s")}
            last = g.groupby("seed")["env_steps"].max().min()
            steps = piv["return"].index.to_numpy()
            keep = steps <= last
            steps = steps[keep]
            ret = piv["return"].ffill().to_numpy()[keep]
            other = {c: piv[c].ffill().to_numpy()[keep] for c in ("grad_steps", "flops", "wall_time_s")}
        # rows before every seed has finished an episode carry NaN returns: drop that prefix
        ok = np.isfinite(ret).all(1)
        if not ok.any():
            continue
        start = int(np.argmax(ok))
        steps, ret = steps[start:], ret[start:]
        other = {c: v[start:] for c, v in other.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rec = dict(zip(keys, key))
            for k in ("model_size", "batch_size", "lr"):
                rec[k] = np.nan if rec[k] == -1.0 else rec[k]
            rec.update(steps=steps, returns=ret, n_seeds=ret.shape[1],
                       grad_steps=np.nanmean(other["grad_steps"], 1), flops=np.nanmean(other["flops"], 1),
                       wall_time_s=np.nanmean(other["wall_time_s"], 1),
                       r_max=float(np.nanmax(g["r_max"])) if np.isfinite(np.asarray(g["r_max"], float)).any() else np.nan,
                       num_envs=int(np.asarray(g["num_envs"])[0]))
        out.append(rec)
    return out
