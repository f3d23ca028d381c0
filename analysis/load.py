"""Loaders: run directories, a W&B project, or the qscaled .npy layout -> one tidy table.

The tidy table has one row per (run, seed, log point) with the columns in COLUMNS. `curves()` turns it
into one record per configuration (task, algo, sigma, B, lr, model size, experts) holding a
[T, S] matrix of returns over a shared env-step grid, which is what every fit works on.
"""
import io
import json
import os
import re
import warnings

import numpy as np
import pandas as pd

COLUMNS = ["task", "algo", "sigma", "batch_size", "lr", "model_size", "experts", "num_envs", "seed",
           "run", "env_steps", "grad_steps", "flops", "wall_time_s", "return", "r_max"]
# run-directory extras (NaN for other inputs): the runtime mode, the deterministic-policy evaluation return,
# and the trio's busy fractions (1 - wait fraction) of the actor and the V-learner, for analysis/wallclock.py
RUN_EXTRAS = ["mode", "eval_return", "actor_busy", "learner_busy"]
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
            path = os.path.join(dirpath, f)
            try:
                arr = np.asarray(np.load(path, allow_pickle=False), dtype=float)
            except (OSError, ValueError, TypeError) as e:
                raise AnalysisInputError(f"{path}: not a numeric .npy array ({type(e).__name__}: {e})") from None
            if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 2:
                raise AnalysisInputError(f"{path}: expected a [T, 1 + seeds] array (column 0 = env step), got shape "
                                         f"{arr.shape}")
            steps, ret = arr[:, 0], arr[:, 1:]
            if not np.isfinite(steps).all() or (np.diff(steps) <= 0).any():
                raise AnalysisInputError(f"{path}: column 0 (env steps) must be finite and strictly increasing")
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


def _number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and bool(np.isfinite(x))


def _fnum(x):
    """A config value as a float; NaN when it is missing or not a number (YAML 1.1 leaves `1e-3` a string)."""
    if isinstance(x, bool) or x is None:
        return np.nan
    try:
        return float(x)
    except (TypeError, ValueError, OverflowError):
        return np.nan


def _one_timeline(rows, path):
    """A log whose env_steps go backwards (a run resumed from a checkpoint before a crash's last log points, by a
    version that did not supersede them) holds two timelines over the same steps: keep the later one, the one
    the run continued, and say how many points were dropped. Returns (rows, notes)."""
    kept, dropped, first = [], 0, None
    for r in rows:
        while kept and kept[-1]["env_steps"] >= r["env_steps"]:
            if first is None:
                first = (kept[-1]["env_steps"], r["env_steps"])
            kept.pop()
            dropped += 1
        kept.append(r)
    if not dropped:
        return rows, []
    return kept, [f"{path}: env_steps not monotone (went {first[0]:g} -> {first[1]:g}): repaired by keeping the "
                  f"later timeline, {dropped} superseded log point(s) dropped"]


def _get(d, dotted, default=None):
    for k in dotted.split("."):
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def _algo_arch(info, cfg):
    """The algorithm, tagged with the critic architecture when it is not the dense MLP ("pql+bro"), so that
    runs of different architectures are never pooled as one model-size family by accident."""
    algo = info.get("algo", _get(cfg, "algo.name"))
    arch = info.get("critic_arch", _get(cfg, "net.critic_arch", "mlp"))
    return algo if arch in (None, "mlp") else f"{algo}+{arch}"


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
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
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
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                skipped.append((dirpath, f"run.json unreadable ({e}); using config.yaml only"))
            if not isinstance(info, dict):
                skipped.append((dirpath, f"run.json holds a {type(info).__name__}, not a JSON object; using config.yaml only"))
                info = {}
        status = {}
        if "status.json" in files:
            try:
                with open(os.path.join(dirpath, "status.json")) as fh:
                    status = json.load(fh)
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
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
        good = [r for r in rows if isinstance(r, dict) and _number(r.get("env_steps"))]
        if len(good) < len(rows):
            skipped.append((dirpath, f"{len(rows) - len(good)} log point(s) without a finite numeric env_steps skipped"))
        rows = good
        rows, notes = _one_timeline(rows, os.path.join(dirpath, "metrics.jsonl"))
        skipped += [(dirpath, n) for n in notes]
        if not rows:
            skipped.append((dirpath, "metrics.jsonl has no log point with env_steps"))
            continue
        num_envs = _fnum(info.get("num_envs", cfg.get("num_envs", 1)))
        if not (num_envs >= 1 and num_envs == int(num_envs)):
            skipped.append((dirpath, f"num_envs {info.get('num_envs', cfg.get('num_envs'))!r} is not a positive "
                                     "integer (run.json / config.yaml)"))
            continue
        num_envs = int(num_envs)
        sigma = _fnum(info.get("utd"))
        if not np.isfinite(sigma):
            sigma = _fnum(_get(cfg, "algo.critic_updates_per_step")) / num_envs
        m = pd.DataFrame(rows)
        # a non-numeric value (a string, a bool, null) in a numeric column is missing, not a crash
        get = lambda k: pd.to_numeric(m[k].map(lambda x: x if _number(x) or (isinstance(x, float) and x != x) else np.nan),
                                      errors="coerce").astype(float).to_numpy() if k in m else np.full(len(m), np.nan)
        seed = _fnum(info.get("seed", cfg.get("seed", 0)))
        parts.append(pd.DataFrame({
            "task": str(info.get("task", cfg.get("task"))), "algo": _algo_arch(info, cfg),
            "sigma": sigma, "batch_size": _fnum(info.get("batch_size", _get(cfg, "algo.batch_size", np.nan))),
            "lr": _fnum(info.get("critic_lr", _get(cfg, "algo.critic_lr", np.nan))),
            "model_size": _fnum(info.get("critic_params", np.nan)),
            "experts": int(_fnum(info.get("experts", 0)) if np.isfinite(_fnum(info.get("experts", 0))) else 0),
            "num_envs": num_envs, "seed": int(seed) if np.isfinite(seed) else 0, "run": dirpath,
            "env_steps": get("env_steps"), "grad_steps": get("critic_updates"), "flops": get("flops"),
            "wall_time_s": get("wall_time_s"), "return": get("return_mean"),
            "r_max": _fnum(info.get("r_max") if info.get("r_max") is not None else cfg.get("r_max")),
            "mode": info.get("mode", cfg.get("mode")), "eval_return": get("eval_return_mean"),
            "actor_busy": 1.0 - get("actor_wait_frac"), "learner_busy": 1.0 - get("v_wait_frac")}))
        if st == "running":
            skipped.append((dirpath, f"note: run still running, using its {len(rows)} log points so far"))
    if not parts:
        raise AnalysisInputError(f"no run directories (config.yaml + metrics.jsonl) under {root!r}"
                                 + (": " + "; ".join(f"{p}: {r}" for p, r in skipped) if skipped else ""))
    df = pd.concat(parts, ignore_index=True)
    return _frame(df[COLUMNS + RUN_EXTRAS]), skipped


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


# ------------------------------------------------------------------- R5's released data (science.md 3)
_MS = re.compile(r"(?:^|/)w(?P<width>[0-9]+)/utd_(?P<utd>[0-9.e+-]+)/(?P<task>[^/]+)/avg_return/bs_(?P<bs>[0-9]+)\.npy$")
_BRO = re.compile(r"(?:^|/)ablations_rr/rr(?P<utd>[0-9.e+-]+)_(?P<size>xs|sm|s|m|l)/(?P<task>[^/]+)\.npy$")
# N is not in the files: critic parameters per SimbaV2 width and per BRO size (R5's tables)
SIMBA_PARAMS = {128: 604362, 256: 2322634, 512: 9101514, 1024: 36028618, 2048: 143360202}
BRO_PARAMS = {"xs": 0.55e6, "s": 1.05e6, "sm": 2.83e6, "m": 4.92e6, "l": 26.31e6}
BRO_EVAL_EVERY = 25000


def _members(src):
    """(name, loader) of every .npy member of a zip (in the zip's member order) or a folder (sorted walk)."""
    import zipfile

    if str(src).endswith(".zip"):
        try:
            z = zipfile.ZipFile(src)
        except (OSError, zipfile.BadZipFile) as e:
            raise AnalysisInputError(f"cannot open {src!r} as a zip: {e}") from None
        for name in z.namelist():
            if name.endswith(".npy") and "/." not in "/" + name:
                yield name, (lambda n=name: np.load(io.BytesIO(z.read(n))))
        return
    if not os.path.isdir(src):
        raise AnalysisInputError(f"input {src!r} does not exist (give the R5 zip or its unpacked folder)")
    for dirpath, dirs, files in sorted(os.walk(src)):
        dirs.sort()
        for f in sorted(files):
            if f.endswith(".npy") and not f.startswith("."):
                p = os.path.join(dirpath, f)
                yield os.path.relpath(p, src).replace(os.sep, "/"), (lambda p=p: np.load(p))


def _record(task, sigma, n, bs, steps, ret, member, **extra):
    T = len(steps)
    return {"task": task, "algo": "r5", "sigma": float(sigma), "batch_size": float(bs), "lr": np.nan,
            "model_size": float(n), "experts": 0, "steps": np.asarray(steps, float), "returns": np.asarray(ret, float),
            "n_seeds": int(ret.shape[1]), "grad_steps": float(sigma) * np.asarray(steps, float),
            "flops": np.full(T, np.nan), "wall_time_s": np.full(T, np.nan), "r_max": np.nan, "num_envs": 1,
            "member": member, **extra}


def load_model_scaling(src):
    """R5's SimbaV2 release: w{width}/utd_{sigma}/{task}/avg_return/bs_{B}.npy, float64 (T, 1+R) with
    column 0 = env step. Returns curve records (as `curves()`) in member order, returns as is."""
    out = []
    for name, get in _members(src):
        m = _MS.search(name)
        if not m:
            continue
        w = int(m["width"])
        if w not in SIMBA_PARAMS:
            raise AnalysisInputError(f"{name}: width {w} has no known critic size (known: {sorted(SIMBA_PARAMS)})")
        a = get()
        if a.ndim != 2 or a.shape[1] < 2:
            raise AnalysisInputError(f"{name}: expected a (T, 1 + runs) array, got shape {a.shape}")
        out.append(_record(m["task"], float(m["utd"]), SIMBA_PARAMS[w], int(m["bs"]), a[:, 0], a[:, 1:], len(out), width=w))
    if not out:
        raise AnalysisInputError(f"no SimbaV2 model-scaling arrays in {src!r} (expected "
                                 "w<width>/utd_<sigma>/<task>/avg_return/bs_<B>.npy)")
    return out


def load_bro_ablations(src):
    """BRO's replay-ratio x size ablations: ablations_rr/rr{sigma}_{size}/{task}.npy, (evals, seeds) with
    evaluation i at env step (i + 1) * 25000. Returns curve records in member order."""
    out = []
    for name, get in _members(src):
        m = _BRO.search(name)
        if not m:
            continue
        a = get()
        if a.ndim != 2:
            raise AnalysisInputError(f"{name}: expected an (evaluations, seeds) array, got shape {a.shape}")
        steps = (np.arange(a.shape[0]) + 1) * BRO_EVAL_EVERY
        out.append(_record(m["task"], float(m["utd"]), BRO_PARAMS[m["size"]], np.nan, steps, a, len(out), size=m["size"]))
    if not out:
        raise AnalysisInputError(f"no BRO ablation arrays in {src!r} (expected ablations_rr/rr<sigma>_<size>/<task>.npy)")
    return out


def run_widths(root):
    """{critic_params: critic_width} from the run.json files under `root` (for `recommend`'s width)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        if "run.json" in files:
            try:
                with open(os.path.join(dirpath, "run.json")) as fh:
                    info = json.load(fh)
            except (OSError, json.JSONDecodeError):
                continue
            if info.get("critic_params") is not None and info.get("critic_width") is not None:
                out[float(info["critic_params"])] = int(info["critic_width"])
    return out
