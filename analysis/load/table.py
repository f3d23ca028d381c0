"""The tidy table every loader returns, and `curves()`, which turns it into one record per configuration.

The tidy table has one row per (run, seed, log point) with the columns in COLUMNS. `curves()` turns it
into one record per configuration (task, algo, sigma, B, lr, model size, experts) holding a
[T, S] matrix of returns over a shared env-step grid, which is what every fit works on.
"""

import warnings

import numpy as np
import pandas as pd

COLUMNS = [
    "task",
    "algo",
    "sigma",
    "batch_size",
    "lr",
    "model_size",
    "experts",
    "num_envs",
    "seed",
    "run",
    "env_steps",
    "grad_steps",
    "flops",
    "wall_time_s",
    "return",
    "r_max",
]
# run-directory extras (NaN for other inputs): the runtime mode, the deterministic-policy evaluation return,
# and the trio's busy fractions (1 - wait fraction) of the actor and the V-learner, for analysis/wallclock.py
RUN_EXTRAS = ["mode", "eval_return", "actor_busy", "learner_busy"]
CONFIG_KEYS = ["task", "algo", "sigma", "batch_size", "lr", "model_size", "experts"]


def frame(rows):
    df = pd.DataFrame(rows, columns=COLUMNS) if isinstance(rows, list) else rows
    return df.astype(
        {
            "sigma": float,
            "batch_size": float,
            "lr": float,
            "model_size": float,
            "env_steps": float,
            "grad_steps": float,
            "flops": float,
            "wall_time_s": float,
            "return": float,
        }
    )


def is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and bool(np.isfinite(x))


def dotted_get(d, dotted, default=None):
    for k in dotted.split("."):
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def curves(table):
    """One record per configuration: steps [T], returns [T, S] (raw), grad_steps/flops/wall [T]
    (seed means). Seeds logged on different steps are aligned on the union of steps with forward fill
    (a null return means no episode ended yet), then cut to the range every seed has reached."""
    out = []
    keys = CONFIG_KEYS
    # groupby drops NaN keys: -1 stands for unknown. assign, not copy(): a deep copy of a 10^7-row table
    # was the analysis's peak memory (1.3 GB more; benchmarks/analysis_10k.py)
    t = table.assign(**{k: table[k].fillna(-1.0) for k in ("model_size", "batch_size", "lr")})
    cols = ("seed", "env_steps", "return", "grad_steps", "flops", "wall_time_s", "r_max", "num_envs")
    arrays = {c: t[c].to_numpy() for c in cols}
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
            piv = {
                c: g.pivot_table(index="env_steps", columns="seed", values=c, aggfunc="last", dropna=False)
                for c in ("return", "grad_steps", "flops", "wall_time_s")
            }
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
            rec.update(
                steps=steps,
                returns=ret,
                n_seeds=ret.shape[1],
                seeds=[x.item() if hasattr(x, "item") else x for x in us],
                grad_steps=np.nanmean(other["grad_steps"], 1),
                flops=np.nanmean(other["flops"], 1),
                wall_time_s=np.nanmean(other["wall_time_s"], 1),
                r_max=(
                    float(np.nanmax(g["r_max"]))
                    if np.isfinite(np.asarray(g["r_max"], float)).any()
                    else np.nan
                ),
                num_envs=int(np.asarray(g["num_envs"])[0]),
            )
        out.append(rec)
    return out


def config_frame(curves):
    """The configuration of each curve record (CONFIG_KEYS and n_seeds), one row per record."""
    return pd.DataFrame([{k: c[k] for k in CONFIG_KEYS + ["n_seeds"]} for c in curves])
