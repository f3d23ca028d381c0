"""`pql-scale analyze` and `pql-scale recommend` (dispatched from pql_scaling/cli.py, or
`python -m analysis analyze|recommend ...`)."""

import argparse
import json
import sys

from .config import DEFAULTS, FIELDS, FORMATS
from .errors import AnalysisInputError
from .recommend import recommend, recommend_line


def _analyze_parser():
    p = argparse.ArgumentParser(
        prog="pql-scale analyze", description="logs -> scaling fits, tables, plots, report"
    )
    p.add_argument(
        "--config",
        help="YAML with inputs, format, max_returns, thresholds, sweep_threshold, "
        "model_size, delta, holdout_top_k, bootstrap, hparam_fits, out",
    )
    p.add_argument(
        "inputs",
        nargs="*",
        help="run directories, qscaled folders, wandb://entity/project, tables (format: table) or "
        "TensorBoard log folders (format: tensorboard)",
    )
    p.add_argument("--format", choices=list(FORMATS))
    p.add_argument("--out")
    p.add_argument("--bootstrap", type=int)
    p.add_argument("--sweep-threshold", type=float, dest="sweep_threshold")
    p.add_argument("--thresholds", type=lambda s: [float(x) for x in s.split(",")], help="comma-separated")
    p.add_argument("--model-size", type=float, dest="model_size")
    p.add_argument("--delta", type=float)
    p.add_argument("--holdout-top-k", type=int, dest="holdout_top_k")
    p.add_argument("--hparam-fits", dest="hparam_fits")
    p.add_argument("--max-return", action="append", default=[], metavar="TASK=R_MAX")
    p.add_argument("--compute", choices=list(FIELDS["compute"].metadata["choices"]))
    p.add_argument("--seed", type=int)
    p.add_argument("--no-plots", action="store_true")
    return p


class _Refused(Exception):
    """A bad --config or command-line value: already explained on stderr; exit 2."""


def _fail(msg):
    print(msg, file=sys.stderr)
    raise _Refused()


def _analyze_config(a):
    """The analysis config from --config and the command line (the command line wins)."""
    cfg = {}
    if a.config:
        import yaml

        try:
            with open(a.config) as fh:
                cfg = yaml.safe_load(fh) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            what = "is not valid YAML" if isinstance(e, yaml.YAMLError) else "could not be read"
            _fail(f"pql-scale analyze: cannot read --config {a.config}: it {what} ({str(e).splitlines()[0]})")
        if not isinstance(cfg, dict):
            _fail(
                f"pql-scale analyze: config {a.config}: must be a mapping of keys (inputs, format, ...), "
                f"got a {type(cfg).__name__}"
            )
    for k in (
        "format",
        "out",
        "bootstrap",
        "sweep_threshold",
        "thresholds",
        "model_size",
        "delta",
        "holdout_top_k",
        "hparam_fits",
        "compute",
        "seed",
    ):
        if getattr(a, k) is not None:
            cfg[k] = getattr(a, k)
    if a.inputs:
        cfg["inputs"] = a.inputs
    if isinstance(cfg.get("inputs"), str):
        cfg["inputs"] = [cfg["inputs"]]
    mr = cfg.get("max_returns") or {}
    if not isinstance(mr, dict):
        _fail(f"pql-scale analyze: max_returns must map task -> R_max (e.g. {{Ant: 6000}}), got {mr!r}")
    mr = dict(mr)
    for kv in a.max_return:
        k, _, v = kv.partition("=")
        try:
            mr[k] = float(v)
        except ValueError:
            _fail(f"pql-scale analyze: --max-return {kv!r}: expected TASK=R_MAX with a number")
    cfg["max_returns"] = mr
    return cfg


def analyze_main(argv):
    a = _analyze_parser().parse_args(argv)
    try:
        cfg = _analyze_config(a)
    except _Refused:
        return 2
    from . import pipeline, report

    try:
        result = pipeline.run_analysis(cfg, echo=print)
    except AnalysisInputError as e:
        print(f"pql-scale analyze: {e}", file=sys.stderr)
        return 2
    out = cfg.get("out") or DEFAULTS["out"]
    report.write_outputs(result, out, plots=not a.no_plots and cfg.get("plots", True))
    report.summary(result)
    for s in result.fits["skipped"]:
        print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)
    print(f"wrote {out}/fits.json and {out}/report.md")
    return 0


def recommend_main(argv):
    p = argparse.ArgumentParser(prog="pql-scale recommend", description="compute-optimal config for a budget")
    p.add_argument("--fits", required=True, help="fits.json written by `pql-scale analyze`")
    p.add_argument("--budget", required=True, type=float, help="budget F = C + delta * D in FLOPs")
    p.add_argument("--task", help="task whose rule intercepts to use (default: mean over tasks)")
    p.add_argument("--num-envs", type=int, default=4096, dest="num_envs")
    a = p.parse_args(argv)
    try:
        with open(a.fits) as fh:
            fits = json.load(fh)
        r = recommend(fits, a.budget, a.task, a.num_envs)
    except (OSError, json.JSONDecodeError, AnalysisInputError) as e:
        print(f"pql-scale recommend: {e}", file=sys.stderr)
        return 2
    print(f"budget F = {a.budget:.3g}: sigma* = {r['sigma']:.4g} (critic updates per transition)")
    Fs = [p["F"] for p in fits.get("budget", {}).get("points", [])]
    if Fs and not min(Fs) <= a.budget <= max(Fs):
        print(f"  note: extrapolating; the fit saw budgets {min(Fs):.3g} ... {max(Fs):.3g}")
    if "batch_size" in r:
        print(f"  batch size B*(sigma*) = {r['batch_size']:.0f}")
    if "lr" in r:
        print(f"  learning rate lr*(sigma*) = {r['lr']:.3g}")
    if "surface" in r:
        sf = r["surface"]
        print(
            f"  R5 surface {sf['name']}: compute-optimal (sigma, N) = "
            f"({sf['sigma']:.4g}, {sf['model_size']:.4g}) "
            f"reaches J={sf['J']} in D = {sf['D']:.4g} env steps for F* = {sf['F_needed']:.4g}"
            + ("" if sf["fits_budget"] else "  (more than this budget: no fitted threshold is reachable)")
        )
    if "model_size" in r:
        print(f"  critic size N_opt = {r['model_size']:.3g} parameters")
    if "width" in r:
        print(f"  width giving N_opt: {r['width']:.1f} (round to a multiple of net.tokens for softmoe)")
    print(recommend_line(r, a.num_envs))
    return 0
