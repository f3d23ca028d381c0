"""Seed robustness: one population of N seeds per task (its CPU defaults, mode=sync), how many reach the task's
solved return within a budget, and how fast.

Each member stops logging at the first log point whose training return reaches the task's solved return
(target_return); the population runs until every member has or the env-step budget is spent. Time to the
threshold is the population's clock at that log point divided by the population's size: the member's share
of the machine (every member trains side by side for all of it).

    python benchmarks/seed_robustness.py [--tasks pendulum] [--seeds 32] [--env-steps 200000]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import save  # noqa: E402
from pql_scaling.tasks import load_native  # noqa: E402


def quantile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


def one_task(root, task, seeds, steps, first_seed):
    out = os.path.join(root, task)
    threshold = load_native(task).solved_return
    cmd = [sys.executable, "-m", "pql_scaling.cli", "train", "task=" + task, "mode=sync", "log.live=off"]
    cmd += ["population.size=%d" % seeds, "seed=%d" % first_seed, "target_return=%g" % threshold]
    cmd += ["max_env_steps=%d" % steps, "max_time_s=0", "run_dir=" + out]
    t = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - t
    with open(os.path.join(out, "population.json")) as f:
        members = json.load(f)["members"]
    hits, best = [], []
    for d in members:
        with open(os.path.join(d, "metrics.jsonl")) as f:
            rows = [json.loads(line) for line in f]
        rets = [r["return_mean"] for r in rows if r.get("return_mean") is not None]
        best.append(max(rets) if rets else None)
        hit = next(
            (r for r in rows if r.get("return_mean") is not None and r["return_mean"] >= threshold), None
        )
        hits.append((hit["env_steps"], hit["wall_time_s"] / seeds) if hit else None)
    solved = [h for h in hits if h]
    res = {
        "task": task,
        "threshold": threshold,
        "seeds": list(range(first_seed, first_seed + seeds)),
        "budget_env_steps": steps,
        "solved": len(solved),
        "of": seeds,
        "unsolved_seeds": [first_seed + i for i, h in enumerate(hits) if h is None],
        "unsolved_best_return": [b for h, b in zip(hits, best) if h is None],
        "env_steps_median": quantile([h[0] for h in solved], 0.5),
        "env_steps_p90": quantile([h[0] for h in solved], 0.9),
        "time_share_s_median": quantile([h[1] for h in solved], 0.5),
        "time_share_s_p90": quantile([h[1] for h in solved], 0.9),
        "population_wall_s": round(wall, 1),
    }
    print(res, flush=True)
    shutil.rmtree(out, ignore_errors=True)
    return res


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", nargs="+", default=["pendulum"])
    p.add_argument("--seeds", type=int, default=32)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--env-steps", type=int, default=200000)
    p.add_argument("--out", default="benchmarks/results/seed_robustness_cpu.json")
    a = p.parse_args()
    root = tempfile.mkdtemp(prefix="seed-robustness-")
    results = [one_task(root, t, a.seeds, a.env_steps, a.first_seed) for t in a.tasks]
    save(
        a.out,
        {
            "command": "python benchmarks/seed_robustness.py " + " ".join(sys.argv[1:]),
            "mode": "sync (one population per task)",
            "results": results,
        },
    )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
