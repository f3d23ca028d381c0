"""`format: tensorboard`: TensorBoard event files (what rsl_rl, skrl, rl_games, FastTD3 and CleanRL write) ->
the tidy table (table.py), read with TensorBoard's own EventAccumulator.

A run is a folder whose event files hold the return's scalar tag (`tensorboard.scalar`). Its parameters
come from the hparams plugin where the run logged them (torch's SummaryWriter.add_hparams writes them to a
sub-folder of the run, which is looked at too), else from the run's path (`tensorboard.pattern`, e.g.
utd_{utd}/bs_{batch_size}/seed_{seed}), else from `tensorboard.params`.
"""

import os
import re

import numpy as np
import pandas as pd

from ..config import TABLE_PARAMS, TEXT_PARAMS
from ..errors import AnalysisInputError
from .table import COLUMNS, frame
from .tabular import RUN_DEFAULTS, number_seeds


def event_dirs(root):
    """The folders under `root` (or `root` itself) holding event files, sorted."""
    if not os.path.exists(root):
        raise AnalysisInputError(f"input {root!r} does not exist")
    return sorted(dp for dp, _, files in os.walk(root) if any("tfevents" in f for f in files))


def _accumulator(d):
    try:
        from tensorboard.backend.event_processing import event_accumulator as ea
    except ImportError as e:
        raise AnalysisInputError(
            f"format: tensorboard reads event files with TensorBoard's reader ({e}): pip install tensorboard"
        ) from None
    acc = ea.EventAccumulator(d, size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})  # 0: keep every point
    acc.Reload()
    return acc


def _series(acc, tag):
    """(event steps, wall times, values) of a scalar tag (simple values, or TF2's scalar tensors), or None.
    A step logged twice (a restarted run) keeps its last value."""
    tags = acc.Tags()
    if tag in tags.get("scalars", []):
        ev = acc.Scalars(tag)
        vals = np.array([e.value for e in ev], float)
    elif tag in tags.get("tensors", []):
        from tensorboard.util import tensor_util

        ev = acc.Tensors(tag)
        vals = np.array([float(tensor_util.make_ndarray(e.tensor_proto)) for e in ev], float)
    else:
        return None
    steps = np.array([e.step for e in ev], float)
    wall = np.array([e.wall_time for e in ev], float)
    last = len(steps) - 1 - np.unique(steps[::-1], return_index=True)[1]  # each step's last event
    return steps[last], wall[last], vals[last]


def _hparams(acc):
    """The hparams plugin's session_start_info values ({} when the folder has none)."""
    try:
        content = acc.PluginTagToContent("hparams")
    except KeyError:
        return {}
    from tensorboard.plugins.hparams import plugin_data_pb2

    out = {}
    for raw in content.values():
        data = plugin_data_pb2.HParamsPluginData.FromString(raw)
        if data.WhichOneof("data") == "session_start_info":
            for k, v in data.session_start_info.hparams.items():
                out[k] = getattr(v, v.WhichOneof("kind")) if v.WhichOneof("kind") else None
    return out


def pattern_regex(pattern):
    """`utd_{utd}/bs_{batch_size}` -> a regex matching the end of a run's path, one group per field."""
    parts = re.split(r"\{(\w+)\}", pattern.strip("/"))
    rx = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+?)" for i, p in enumerate(parts))
    return re.compile(r"(?:^|/)" + rx + "$")


def _value(name, v, where):
    if name in TEXT_PARAMS or name == "task":
        return str(v)
    if name == "seed":
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        raise AnalysisInputError(f"{where}: parameter {name} = {v!r} is not a number") from None


def _run_params(rel, hp, spec, rx):
    """The run's parameters by name: its hparams, then its path's pattern fields, then the constants."""
    found = dict(hp)
    if rx is not None:
        m = rx.search(rel)
        if m is None:
            raise AnalysisInputError(
                f"run {rel!r}: its path does not match tensorboard.pattern {spec['pattern']!r}: fix the "
                "pattern, or log the parameters with SummaryWriter.add_hparams"
            )
        found = {**m.groupdict(), **found}
    return {
        **spec["params"],
        **{k: v for k, v in found.items() if k in TABLE_PARAMS or k in ("task", "seed")},
    }


def _run_frame(d, rel, acc, hp, spec, rx, skipped):
    """(the run's parameters as a tidy-table row, its log points); points it had to drop are said in `skipped`."""
    steps, wall, vals = _series(acc, spec["scalar"])
    if spec["step"]:  # env steps logged as their own tag: joined on the event step
        env = _series(acc, spec["step"])
        if env is None:
            raise AnalysisInputError(
                f"{d}: no scalar tag {spec['step']!r} (tensorboard.step) beside the return"
            )
        ix = pd.Index(env[0]).get_indexer(steps)
        keep = ix >= 0
        if not keep.all():
            skipped.append(
                (d, f"{int((~keep).sum())} return point(s) with no {spec['step']!r} at their step")
            )
        steps, wall, vals = env[2][ix[keep]], wall[keep], vals[keep]
    p = _run_params(rel, hp, spec, rx)
    row = {**RUN_DEFAULTS, "sigma": np.nan, "batch_size": np.nan, "lr": np.nan, "model_size": np.nan}
    row.update({"r_max": np.nan, "task": spec["task"], "seed": None, "run": rel})
    for k, v in p.items():
        row["task" if k == "task" else "seed" if k == "seed" else TABLE_PARAMS[k]] = _value(k, v, d)
    if row["task"] is None:
        raise AnalysisInputError(
            f"run {rel!r}: no task: log it as an hparam, put {{task}} in tensorboard.pattern, or set tensorboard.task"
        )
    if not np.isfinite(row["sigma"]):
        raise AnalysisInputError(
            f"run {rel!r}: no UTD: log `utd` with add_hparams, put {{utd}} in tensorboard.pattern, "
            "or set tensorboard.params.utd"
        )
    order = np.argsort(steps, kind="stable")
    df = pd.DataFrame(
        {"env_steps": steps[order], "return": vals[order], "wall_time_s": wall[order] - wall.min()}
    )
    return row, df


def load_tensorboard(root, spec):
    """Every run under `root` (a folder) through the `tensorboard:` spec (config.check_tensorboard).
    Returns (tidy table, skipped)."""
    dirs = event_dirs(root)
    rx = pattern_regex(spec["pattern"]) if spec["pattern"] else None
    accs = {d: _accumulator(d) for d in dirs}
    runs = [d for d in dirs if _series(accs[d], spec["scalar"]) is not None]
    if not runs:
        raise AnalysisInputError(
            f"no event file under {root!r} holds the scalar tag {spec['scalar']!r} (tensorboard.scalar); "
            f"tags found: {sorted({t for a in accs.values() for t in a.Tags().get('scalars', [])})[:20]}"
        )
    skipped = [
        (d, f"no scalar tag {spec['scalar']!r}") for d in dirs if d not in runs and not _hparams(accs[d])
    ]
    rows, parts = [], []
    for d in runs:
        hp = _hparams(accs[d])
        for sub in dirs:  # add_hparams' own sub-folder of the run (holding no return of its own)
            if sub.startswith(d + os.sep) and sub not in runs:
                hp = {**_hparams(accs[sub]), **hp}
        rel = os.path.relpath(d, root).replace(os.sep, "/")
        rel = rel if rel != "." else os.path.basename(os.path.abspath(d))
        row, df = _run_frame(d, rel, accs[d], hp, spec, rx, skipped)
        rows.append(row)
        parts.append(df)
    meta = number_seeds(pd.DataFrame(rows), root)
    t = meta.take(np.repeat(np.arange(len(parts)), [len(p) for p in parts])).reset_index(drop=True)
    t = pd.concat([t, pd.concat(parts, ignore_index=True)], axis=1)
    t["grad_steps"] = t["env_steps"] * t["sigma"]
    t["flops"] = np.nan
    return frame(t[COLUMNS]), skipped
