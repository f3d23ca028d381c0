"""The CPU study end to end (studies/pendulum_cpu.yaml): wall time, the held-out grade against the 15% target,
interval coverage, and the wall-clock model's error (sync runs of the study; trio runs with --trio).

    python benchmarks/study_cpu.py [--out runs/bench-study] [--trio] [key=value ... study overrides]

Saves benchmarks/results/study_pendulum_cpu.json and copies the study's report (and plots) next to it. The
load average is sampled through the run: on a shared machine the wall times say as much about the neighbours.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import save  # noqa: E402

ANALYSIS_FILES = (
    "fits.json",
    "report.md",
    "hparams.png",
    "data_efficiency.png",
    "pareto.png",
    "budget.png",
    "learning_curves.png",
)


def copy_outputs(out, dest):
    """The study's report, grade, prediction, and each analysis's fits, report and plots, beside the JSON."""
    for sub, names in (
        ("", ("report.md", "grade.png", "prediction.json", "grade.json")),
        ("grid_analysis", ANALYSIS_FILES),
        ("fitted_analysis", ANALYSIS_FILES),
    ):
        for f in names:
            src = os.path.join(out, sub, f)
            if os.path.exists(src):
                os.makedirs(os.path.join(dest, sub), exist_ok=True)
                shutil.copy(src, os.path.join(dest, sub, f))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--spec", default="studies/pendulum_cpu.yaml")
    p.add_argument("--out", default="runs/bench-study-pendulum-cpu")
    p.add_argument("--result", default="benchmarks/results/study_pendulum_cpu.json")
    p.add_argument(
        "--target-s", type=float, default=1800, help="issue 26: 30 min (Pendulum), 60 (a second task)"
    )
    p.add_argument(
        "--note", default="", help="free text saved with the result (e.g. an earlier interrupted invocation)"
    )
    p.add_argument("overrides", nargs="*")
    a = p.parse_args()
    loads, stop = [], threading.Event()

    def sample():
        while not stop.wait(15):
            loads.append(round(os.getloadavg()[0], 2))

    threading.Thread(target=sample, daemon=True).start()
    load0 = os.getloadavg()
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "pql_scaling.cli", "study", a.spec, "out=%s" % a.out] + a.overrides
    print("$ " + " ".join(cmd), flush=True)
    code = subprocess.call(cmd)
    wall = time.monotonic() - t0
    stop.set()
    rd = lambda f: json.load(open(os.path.join(a.out, f))) if os.path.exists(os.path.join(a.out, f)) else None
    grade, pred, state = rd("grade.json"), rd("prediction.json"), rd("study.json")
    fits = rd("fitted_analysis/fits.json") or {}
    wall_clock = fits.get("wall_clock", {})
    payload = {
        "command": " ".join(cmd),
        "note": a.note,
        "exit_code": code,
        "wall_s_end_to_end": round(wall, 1),
        "target_s": a.target_s,
        "stage_timings_s": (state or {}).get("timings_s"),
        "loadavg_start": load0,
        "loadavg_samples_1m": loads,
        "loadavg_end": os.getloadavg(),
        "grade_summary": (grade or {}).get("summary"),
        "grade_rows": (grade or {}).get("rows"),
        "budget_return": (grade or {}).get("budget_return"),
        "budget_checks": (grade or {}).get("budget_checks"),
        "sigma_star_grade": (grade or {}).get("sigma_star_grade"),
        "calibration": (grade or {}).get("calibration"),
        "in_sample_summary": (grade or {}).get("in_sample_summary"),
        "replays": (grade or {}).get("replays"),
        "seeds": (state or {}).get("seeds"),
        "seed_choice": (state or {}).get("seed_choice"),
        "validation_seeds": (pred or {}).get("validation_seeds"),
        "prediction_code_version": (pred or {}).get("code_version"),
        "laws_fitted_on": fits.get("returns"),
        "data_efficiency": fits.get("data_efficiency"),
        "budget_fit": fits.get("budget"),
        "hparams": fits.get("hparams"),
        "wall_clock_rates": wall_clock.get("rates"),
        "wall_clock_check": {
            m: {k: v for k, v in c.items() if k != "points"} for m, c in wall_clock.get("check", {}).items()
        },
        "wall_clock_optimum": wall_clock.get("optimum"),
    }
    save(a.result, payload)
    dest = os.path.splitext(a.result)[0]
    if os.path.abspath(dest) != os.path.abspath(a.out):  # else the study's own folder: its files are there
        copy_outputs(a.out, dest)
    print(
        json.dumps(
            {
                k: payload[k]
                for k in (
                    "exit_code",
                    "wall_s_end_to_end",
                    "grade_summary",
                    "calibration",
                    "sigma_star_grade",
                )
            },
            indent=1,
        )
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
