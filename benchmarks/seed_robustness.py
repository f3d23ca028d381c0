"""Seed robustness: one population of N seeds per task and mode (its CPU defaults), how many reach the task's
solved return within a budget, and how fast.

Each member stops logging at the first log point whose training return reaches the task's solved return
(target_return); the population runs until every member has or the env-step budget (per member) is spent. Time
to the threshold is the population's clock at that log point divided by the population's size: the member's
share of the machine (every member trains side by side for all of it).

    python benchmarks/seed_robustness.py [--tasks pendulum] [--mode sync|trio] [--seeds 32] [--env-steps 200000]
        [--append]

--append keeps the results already in --out (each result names its mode, commit, date and load), so the table
grows one task and mode at a time.
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import commit, save  # noqa: E402
from pql_scaling.tasks import load_native  # noqa: E402


def quantile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


def one_task(root, task, seeds, steps, first_seed, mode):
    out = os.path.join(root, task + "-" + mode)
    threshold = load_native(task).solved_return
    load0 = os.getloadavg()[0]
    cmd = [sys.executable, "-m", "pql_scaling.cli", "train", "task=" + task, "mode=" + mode, "log.live=off"]
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
        "mode": mode,
        "commit": commit(),
        "date": datetime.date.today().isoformat(),
        "loadavg_1m_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)],
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
    p.add_argument("--mode", default="sync", choices=["sync", "trio"])
    p.add_argument("--out", default="benchmarks/results/seed_robustness_cpu.json")
    p.add_argument("--append", action="store_true", help="keep the results already saved in --out")
    a = p.parse_args()
    commands, results = [], []
    if a.append and os.path.exists(a.out):
        with open(a.out) as f:
            old = json.load(f)
        commands = old.get("commands") or [old["command"]]
        for r in old["results"]:  # results saved before a result named its mode were sync ones
            results.append(dict(r, mode=r.get("mode", "sync")))
    commands.append("python benchmarks/seed_robustness.py " + " ".join(sys.argv[1:]))
    root = tempfile.mkdtemp(prefix="seed-robustness-")
    for t in a.tasks:
        results.append(one_task(root, t, a.seeds, a.env_steps, a.first_seed, a.mode))
        # saved after every task: a killed benchmark keeps what it measured
        save(a.out, {"commands": commands, "note": "one population per task and mode", "results": results})
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
