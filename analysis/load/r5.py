"""R5's released data (docs/science.md 3): SimbaV2's model-scaling arrays and BRO's replay-ratio x size ablations,
from the zip or its unpacked folder -> curve records (as `curves()` gives them), in the order R5 read them."""

import io
import os
import re

import numpy as np

from ..errors import AnalysisInputError

_MS = re.compile(
    r"(?:^|/)w(?P<width>[0-9]+)/utd_(?P<utd>[0-9.e+-]+)/(?P<task>[^/]+)/avg_return/"
    r"bs_(?P<bs>[0-9]+)\.npy$"
)
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
    return {
        "task": task,
        "algo": "r5",
        "sigma": float(sigma),
        "batch_size": float(bs),
        "lr": np.nan,
        "model_size": float(n),
        "experts": 0,
        "steps": np.asarray(steps, float),
        "returns": np.asarray(ret, float),
        "n_seeds": int(ret.shape[1]),
        "grad_steps": float(sigma) * np.asarray(steps, float),
        "flops": np.full(T, np.nan),
        "wall_time_s": np.full(T, np.nan),
        "r_max": np.nan,
        "num_envs": 1,
        "member": member,
        **extra,
    }


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
            raise AnalysisInputError(
                f"{name}: width {w} has no known critic size (known: {sorted(SIMBA_PARAMS)})"
            )
        a = get()
        if a.ndim != 2 or a.shape[1] < 2:
            raise AnalysisInputError(f"{name}: expected a (T, 1 + runs) array, got shape {a.shape}")
        out.append(
            _record(
                m["task"],
                float(m["utd"]),
                SIMBA_PARAMS[w],
                int(m["bs"]),
                a[:, 0],
                a[:, 1:],
                len(out),
                width=w,
            )
        )
    if not out:
        raise AnalysisInputError(
            f"no SimbaV2 model-scaling arrays in {src!r} (expected "
            "w<width>/utd_<sigma>/<task>/avg_return/bs_<B>.npy)"
        )
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
        out.append(
            _record(
                m["task"], float(m["utd"]), BRO_PARAMS[m["size"]], np.nan, steps, a, len(out), size=m["size"]
            )
        )
    if not out:
        raise AnalysisInputError(
            f"no BRO ablation arrays in {src!r} (expected ablations_rr/rr<sigma>_<size>/<task>.npy)"
        )
    return out


def sniff(src):
    """The R5 layout of a zip or folder ("model_scaling" or "bro_ablations"), or "auto" when it holds
    neither."""
    import zipfile

    names = (
        zipfile.ZipFile(src).namelist()
        if str(src).endswith(".zip")
        else [os.path.join(dp, f).replace(os.sep, "/") for dp, _, fs in os.walk(src) for f in fs]
    )
    if any(_MS.search(n) for n in names):
        return "model_scaling"
    if any(_BRO.search(n) for n in names):
        return "bro_ablations"
    return "auto"
