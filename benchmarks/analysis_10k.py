"""A large project end to end: a generated tidy table of 10,000 runs x 1,000 log points (10 tasks x 5 UTDs x
5 batch sizes x 4 learning rates x 10 seeds, 10^7 rows in one Parquet file) through `format: table`: load,
isotonic smoothing, crossings, 100 bootstrap resamples, hyperparameter rules, D_J(sigma) fits, compute,
budget, aggregates, tables, plots and report. Target (issue 23): <= 60 s and <= 4 GB on 2 CPU cores.

    python benchmarks/analysis_10k.py [--runs-per-config 10] [--points 1000] [--profile]
Generating the table is not timed; the analysis runs in a child process whose wall time and peak RSS are
measured (the parent's table generation would otherwise count in the RSS). Writes
benchmarks/results/analysis_10k.json (with the machine and its load average: a shared machine skews timings).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

TASKS = [f"Task{i}-v0" for i in range(10)]
UTDS = [0.5, 1.0, 2.0, 4.0, 8.0]
BATCH = [128, 256, 512, 1024, 2048]
LRS = [1e-4, 3e-4, 1e-3, 3e-3]
R_MAX = 1000.0


def generate(path, seeds, points, rng_seed=0):
    """One Parquet file (or CSV, by the path's suffix): a row per (run, log point). Time to threshold follows
    D(sigma) = D_min (1 + (2/sigma)^0.8), slowed away from the best batch size / lr (which fall with sigma as in
    R1), plus seed noise."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(rng_seed)
    t, s, b, lr, seed = (
        a.ravel()
        for a in np.meshgrid(np.arange(len(TASKS)), UTDS, BATCH, LRS, np.arange(seeds), indexing="ij")
    )
    n = len(t)
    best_b, best_lr = 512 * s**-0.3, 3e-4 * s**-0.3
    slow = 1 + 0.3 * np.log(b / best_b) ** 2 + 0.3 * np.log(lr / best_lr) ** 2
    tau = 2e4 * (1 + t / 10) * (1 + (2.0 / s) ** 0.8) * slow * np.exp(rng.normal(0, 0.05, n))
    steps = np.arange(1, points + 1) * 1000.0
    ret = R_MAX * (1 - np.exp(-steps[None] / tau[:, None])) + rng.normal(0, 30, (n, points))
    rep = lambda a: np.repeat(a, points)
    df = pd.DataFrame(
        {
            "run_id": rep(np.arange(n)),
            "env": pd.Categorical.from_codes(rep(t), TASKS),
            "seed": rep(seed),
            "utd": rep(s),
            "batch_size": rep(b),
            "lr": rep(lr),
            "env_step": np.tile(steps, n),
            "avg_return": ret.ravel(),
        }
    )
    if path.endswith(".csv"):  # pyarrow's writer: pandas' to_csv takes minutes for 10^7 rows
        import pyarrow as pa
        import pyarrow.csv

        pyarrow.csv.write_csv(pa.Table.from_pandas(df, preserve_index=False), path)
    else:
        df.to_parquet(path, index=False)
    return n, len(df)


def config(path, out, bootstrap):
    return {
        "inputs": [path],
        "format": "table",
        "table": {
            "run": "run_id",
            "task": "env",
            "seed": "seed",
            "step": "env_step",
            "value": "avg_return",
            "params": {"utd": "utd", "batch_size": "batch_size", "lr": "lr"},
        },
        "max_returns": {t: R_MAX for t in TASKS},
        "model_size": 1.5e5,
        "bootstrap": bootstrap,
        "out": out,
    }


def analyse(path, out, bootstrap, profile):
    """The child: the analysis end to end; prints one JSON line with its stage times and peak RSS."""
    t0 = time.perf_counter()
    from pql_scaling.analysis import pipeline, report

    marks = {"import_s": time.perf_counter() - t0}
    echo = lambda line: marks.update(load_s=time.perf_counter() - t0 - marks["import_s"], input=line)
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t1 = time.perf_counter()
    res = pipeline.run_analysis(config(path, out, bootstrap), echo=echo)
    marks["analysis_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    report.write_outputs(res, out, plots=True)
    marks["write_and_plot_s"] = time.perf_counter() - t2
    marks["total_s"] = time.perf_counter() - t0
    if profile:
        import pstats

        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
    import resource

    marks["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB
    de = res.fits["data_efficiency"][-1]
    marks["fits"] = {
        "configs": res.fits["counts"]["configs"],
        "D_J_fit_at_J": de["J"],
        "alpha": de["alpha"],
        "converged": de["converged"],
        "batch_size_slope": res.fits["hparams"]["batch_size"]["slope"],
        "lr_slope": res.fits["hparams"]["learning_rate"]["slope"],
        "figures": sorted(f for f in os.listdir(out) if f.endswith(".png")),
    }
    print(json.dumps(marks))


def main():
    p = argparse.ArgumentParser()
    p.add_argument(
        "--runs-per-config", type=int, default=10, help="seeds per configuration (1000 configurations)"
    )
    p.add_argument("--points", type=int, default=1000)
    p.add_argument("--bootstrap", type=int, default=100)
    p.add_argument("--profile", action="store_true", help="cProfile the analysis (to stderr)")
    p.add_argument("--csv", action="store_true", help="the table as one CSV file instead of Parquet")
    p.add_argument("--child", nargs=2, metavar=("TABLE", "OUT"), help=argparse.SUPPRESS)
    p.add_argument("--json", default=None, help="default: results/analysis_10k.json (_csv.json with --csv)")
    a = p.parse_args()
    if a.child:
        return analyse(*a.child, a.bootstrap, a.profile)
    tmp = tempfile.mkdtemp(prefix="pql_10k_")
    path = os.path.join(tmp, "runs.csv" if a.csv else "runs.parquet")
    t = time.perf_counter()
    runs, rows = generate(path, a.runs_per_config, a.points)
    print(
        f"generated {runs} runs, {rows} rows ({os.path.getsize(path) / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s"
    )
    load_before = os.getloadavg()
    cmd = [sys.executable, os.path.abspath(__file__), "--child", path, os.path.join(tmp, "out")]
    cmd += ["--bootstrap", str(a.bootstrap)] + (["--profile"] if a.profile else [])
    t = time.perf_counter()
    child = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, text=True)
    wall = time.perf_counter() - t
    marks = json.loads(child.stdout.strip().splitlines()[-1])
    load_after = os.getloadavg()
    payload = {
        "what": "format: table end to end on a generated table (load, smooth, crossings, bootstrap, fits, plots)",
        "format": "csv" if a.csv else "parquet",
        "command": "python benchmarks/analysis_10k.py"
        + (" --csv" if a.csv else "")
        + (f" --runs-per-config {a.runs_per_config}" if a.runs_per_config != 10 else ""),
        "runs": runs,
        "rows": rows,
        "points_per_run": a.points,
        "bootstrap": a.bootstrap,
        "wall_s_child_process": round(wall, 2),
        **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in marks.items()},
        "target": {"wall_s": 60, "peak_rss_gb": 4},
        "meets_target": bool(wall <= 60 and marks["peak_rss_gb"] <= 4),
        "loadavg_before_after": [list(load_before), list(load_after)],
        "load_above_1_5": bool(max(load_before[0], load_after[0]) > 1.5),
    }
    print(json.dumps(payload, indent=1))
    if a.runs_per_config == 10 and a.points == 1000 and a.bootstrap == 100 and not a.profile:
        from benchmarks.common import save

        name = "analysis_10k_csv.json" if a.csv else "analysis_10k.json"
        save(a.json or os.path.join(HERE, "results", name), payload)


if __name__ == "__main__":
    sys.exit(main())
