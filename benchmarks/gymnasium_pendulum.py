"""Pendulum time to return -250 through backend=gymnasium (Gymnasium's Pendulum-v1 in a SyncVectorEnv) against
the native torch pendulum (task=pendulum: the same dynamics, reward and limit), in trio and sync mode.

Issue 22's target: backend=gymnasium reaches -250 within 5x the native pendulum's time. Both tasks use the same
defaults (tasks/pendulum.yaml, tasks/gymnasium/Pendulum-v1.yaml: 32 envs, 64x64 ReLU nets); the clock is each
run's training time (wall_time_s, from the first actor step), start-up is recorded apart. Settings run in turn
for each seed (A B C D A B ...) so a shared machine's load drifts into all of them alike.

    python benchmarks/gymnasium_pendulum.py --seeds 0 1 2
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import first_crossing, save  # noqa: E402

THRESHOLD = -250.0
TARGET_RATIO = 5.0
SETTINGS = {
    "native_trio": ["task=pendulum"],
    "gymnasium_trio": ["task=Pendulum-v1", "backend=gymnasium"],
    "native_sync": ["task=pendulum", "mode=sync"],
    "gymnasium_sync": ["task=Pendulum-v1", "backend=gymnasium", "mode=sync"],
}
# an optional setting: Gymnasium's other autoreset mode
SETTINGS["gymnasium_trio_next_step"] = SETTINGS["gymnasium_trio"] + ["gymnasium.autoreset=next_step"]


def run(name, seed, budget_s):
    from pql_scaling.runtime.train import train

    d = os.path.join(tempfile.mkdtemp(), "run")
    t0 = time.perf_counter()
    train(
        SETTINGS[name]
        + [
            "seed=%d" % seed,
            "max_time_s=%g" % budget_s,
            "target_return=%g" % THRESHOLD,
            "log.live=off",
            "run_dir=" + d,
        ],
        quiet=True,
    )
    total = time.perf_counter() - t0
    t, steps = first_crossing(d, THRESHOLD)
    with open(os.path.join(d, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    with open(os.path.join(d, "run.json")) as f:
        facts = json.load(f)
    with open(os.path.join(d, "config.yaml")) as f:
        cfg = yaml.safe_load(f)
    shutil.rmtree(os.path.dirname(d), ignore_errors=True)
    last = rows[-1] if rows else {}
    best = max((r["return_mean"] for r in rows if r.get("return_mean") is not None), default=None)
    return {
        "seed": seed,
        "time_to_threshold_s": t,
        "env_steps": steps,
        "startup_s": facts.get("startup_s", rows[0].get("startup_s") if rows else None),
        "process_s": total,
        "load_1m": os.getloadavg()[0],
        "best_return_mean": best,
        "env_steps_per_s": last.get("env_steps_per_s"),
        "final_env_steps": last.get("env_steps"),
        "final_critic_updates": last.get("critic_updates"),
        "final_wall_time_s": last.get("wall_time_s"),
        "backend": facts.get("backend"),
        "defaults": facts.get("defaults"),
        "config": {  # the resolved defaults both tasks must share for a fair comparison
            "num_envs": cfg["num_envs"],
            "warmup_steps": cfg["algo"]["warmup_steps"],
            "critic_updates_per_step": cfg["algo"]["critic_updates_per_step"],
            "batch_size": cfg["algo"]["batch_size"],
            "hidden": cfg["net"]["critic_hidden"],
            "activation": cfg["net"]["activation"],
        },
    }


def wait_for_load(limit, max_wait_s):
    """Wait (up to max_wait_s) for the 1-minute load average to fall below `limit`; return the wait."""
    t0 = time.monotonic()
    while os.getloadavg()[0] >= limit and time.monotonic() - t0 < max_wait_s:
        time.sleep(10)
    return time.monotonic() - t0


def median(xs):
    return statistics.median(xs) if xs and None not in xs else None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS)[:4], choices=list(SETTINGS))
    p.add_argument("--budget-s", type=float, default=120.0, help="training time cap per run")
    p.add_argument("--max-load", type=float, default=1.5, help="wait for a 1-minute load average below this")
    p.add_argument("--max-wait-s", type=float, default=300.0, help="... but no longer than this")
    p.add_argument("--out", default="benchmarks/results/gymnasium_pendulum_cpu.json")
    args = p.parse_args()
    waited = wait_for_load(args.max_load, args.max_wait_s)
    load0 = os.getloadavg()[0]
    print("load average %.2f (waited %.0f s)" % (load0, waited), flush=True)
    results = {name: [] for name in args.settings}
    for seed in args.seeds:
        for name in args.settings:
            r = run(name, seed, args.budget_s)
            results[name].append(r)
            print(
                "%-26s seed %d: %s s to %g (%s env steps; start-up %.1f s), load %.1f"
                % (
                    name,
                    seed,
                    r["time_to_threshold_s"],
                    THRESHOLD,
                    r["env_steps"],
                    r["startup_s"] or 0.0,
                    r["load_1m"],
                ),
                flush=True,
            )
    summary = {}
    for name, rs in results.items():
        times = [r["time_to_threshold_s"] for r in rs]
        summary[name] = {
            "median_s": median(times),
            "times_s": times,
            "reached": sum(t is not None for t in times),
            "median_env_steps": median([r["env_steps"] for r in rs]),
            "median_startup_s": median([r["startup_s"] for r in rs]),
            "median_process_s": median([r["process_s"] for r in rs]),
            "overrides": SETTINGS[name],
        }
        print("%-26s median %s s  %s" % (name, summary[name]["median_s"], times))
    ratios = {}
    for name in results:
        if not name.startswith("gymnasium_"):
            continue
        mode = "sync" if name.endswith("_sync") else "trio"
        native = summary.get("native_" + mode, {}).get("median_s")
        mine = summary[name]["median_s"]
        ratio = mine / native if mine is not None and native else None
        ratios[name] = {
            "vs": "native_" + mode,
            "ratio_training_time": ratio,
            "within_target": None if ratio is None else ratio <= TARGET_RATIO,
        }
        print("%-26s / native_%s: %s (target <= %g)" % (name, mode, ratio, TARGET_RATIO))
    save(
        args.out,
        {
            "threshold": THRESHOLD,
            "target_ratio": TARGET_RATIO,
            "command": "python benchmarks/gymnasium_pendulum.py " + " ".join(sys.argv[1:]),
            "clock": "training time (wall_time_s, from the first actor step); start-up apart",
            "results": results,
            "summary": summary,
            "ratios": ratios,
            "waited_for_load_s": waited,
            "loadavg_1m_before": load0,
            "loadavg_1m_after": os.getloadavg()[0],
        },
    )


if __name__ == "__main__":
    main()
