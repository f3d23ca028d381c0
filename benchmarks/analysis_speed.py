"""Time the full R1 Gym analysis: hyperparameter rules from gym_sweep, then data-efficiency, Pareto and
budget fits of gym_ours and gym_baseline_utd2 (with the sweep's batch-size rule), 100 bootstrap
resamples each, all plots, tables and reports. The clock includes importing the analysis package
(numpy/scipy/pandas/matplotlib), as a fresh `pql-scale analyze` would pay it.

    python benchmarks/analysis_speed.py [--bootstrap 100] [--out DIR]
Writes benchmarks/results/analysis_speed.json.
"""

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from pql_scaling.analysis import gym, pipeline, report  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", type=int, default=100)
    p.add_argument("--out", default=None)
    p.add_argument("--data", default=os.path.join(os.path.dirname(HERE), "tests", "data", "qscaled_gym"))
    a = p.parse_args()
    out = a.out or tempfile.mkdtemp(prefix="pql_scale_bench_")
    t_import = time.perf_counter() - T0
    steps, results = {}, {}
    for name, cfg in zip(
        ("gym_sweep", "gym_ours", "gym_baseline_utd2"), gym.configs(a.data, out, a.bootstrap)
    ):
        t = time.perf_counter()
        result = pipeline.run_analysis(cfg)
        t_fit = time.perf_counter() - t
        report.write_outputs(result, cfg["out"], plots=True)
        res = result.fits
        steps[name] = {
            "fit_s": round(t_fit, 3),
            "write_and_plot_s": round(time.perf_counter() - t - t_fit, 3),
        }
        b = res.get("budget", {}).get("sigma_star", {})
        de = res["data_efficiency"][-1]
        results[name] = {
            "batch_size_slope": res["hparams"]["batch_size"]["slope"],
            "learning_rate_slope": res["hparams"]["learning_rate"]["slope"],
            "J800": {k: de.get(k) for k in ("D_min", "alpha", "beta", "a", "b", "c")},
            "sigma_star": {k: b.get(k) for k in ("coef", "exponent")},
            "holdout_rel_error": res.get("budget", {}).get("holdout_rel_error"),
        }
    total = time.perf_counter() - T0
    rec = {
        "seconds_total": round(total, 3),
        "seconds_import": round(t_import, 3),
        # CPU time of this process (wall minus waiting for other processes' load): other jobs share the
        # 2 cores of the dev machine, so both are recorded together with the load average
        "cpu_seconds": round(time.process_time(), 3),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "steps": steps,
        "bootstrap": a.bootstrap,
        "budget_s": 20.0,
        "within_budget": total <= 20.0,
        "reference_qscaled_s": 38.0,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
        "results": results,
        "out": out,
    }
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "analysis_speed.json"), "w") as fh:
        json.dump(rec, fh, indent=1)
    print(
        json.dumps(
            {
                k: rec[k]
                for k in (
                    "seconds_total",
                    "seconds_import",
                    "cpu_seconds",
                    "load_average_1_5_15",
                    "steps",
                    "within_budget",
                )
            },
            indent=1,
        )
    )
    return 0 if rec["within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
