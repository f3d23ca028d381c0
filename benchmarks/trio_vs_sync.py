"""Trio vs sync at the same ratios on Pendulum: env-steps/s, critic updates/s, time to a mean return of -250.

    python benchmarks/trio_vs_sync.py [--seeds 0 1 2] [--out benchmarks/results/trio_vs_sync_cpu.json] [key=value ...]

Each (mode, seed) is one `pql-scale train` run in a fresh process, one after another, with the same
overrides (recorded in the JSON, with the machine and its load average, since other work on a small
machine moves these numbers). Throughputs are whole-run averages: env steps (or critic updates) over
the wall time of the last log point; time to threshold is the wall time of the first log point whose
return_mean >= -250. GPU placement (actor/learner devices) is a matter of overrides, e.g.
`device=cuda:0 v_learner_device=cuda:1`; this script does not choose them.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import first_crossing, save  # noqa: E402

THRESHOLD = -250.0
# the pendulum defaults the project tuned for the 2-core CPU (tasks/pendulum.yaml on main), spelled out
# so that both modes and any branch run exactly the same configuration
OVERRIDES = [
    "task=pendulum",
    "num_envs=16",
    "max_env_steps=200000",
    "max_time_s=150",
    "threads=1",
    "algo.gamma=0.99",
    "algo.reward_scale=0.1",
    "algo.critic_updates_per_step=2",
    "algo.policy_updates_per_critic_update=0.5",
    "algo.batch_size=512",
    "algo.critic_lr=3.0e-3",
    "algo.actor_lr=3.0e-3",
    "net.actor_hidden=[64,64]",
    "net.critic_hidden=[64,64]",
    "log.every_steps=25",
]


def one_run(mode, seed, extra, workdir):
    run_dir = os.path.join(workdir, "%s-s%d" % (mode, seed))
    cmd = (
        [
            sys.executable,
            "-m",
            "pql_scaling.cli",
            "train",
            "mode=%s" % mode,
            "seed=%d" % seed,
            "run_dir=%s" % run_dir,
            "log.live=plain",
        ]
        + OVERRIDES
        + list(extra)
    )
    load_before = os.getloadavg()
    t0 = time.monotonic()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    process_s = time.monotonic() - t0
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    last = rows[-1]
    hit_s, hit_steps = first_crossing(run_dir, THRESHOLD)
    out = {
        "mode": mode,
        "seed": seed,
        "env_steps": last["env_steps"],
        "critic_updates": last["critic_updates"],
        "policy_updates": last["policy_updates"],
        "utd": last["utd"],
        "wall_time_s": last["wall_time_s"],
        "process_s": round(process_s, 2),
        "env_steps_per_s": last["env_steps"] / last["wall_time_s"],
        "critic_updates_per_s": last["critic_updates"] / last["wall_time_s"],
        "time_to_threshold_s": hit_s,
        "env_steps_to_threshold": hit_steps,
        "final_return_mean": next(
            (r["return_mean"] for r in reversed(rows) if r["return_mean"] is not None), None
        ),
        "load_avg_1m_before": load_before[0],
    }
    if mode == "trio":
        waits = [r for r in rows if "actor_wait_frac" in r]
        for key in ("actor_wait_frac", "v_wait_frac", "p_wait_frac"):
            out["mean_" + key] = sum(r[key] for r in waits) / len(waits)
    return out


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--modes", nargs="+", default=["sync", "trio"])
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "trio_vs_sync_cpu.json"))
    ap.add_argument("extra", nargs="*", help="more key=value overrides, applied to both modes")
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="trio_vs_sync_")
    runs = []
    try:
        for seed in args.seeds:  # modes interleaved per seed, so a change in machine load hits both
            for mode in args.modes:
                r = one_run(mode, seed, args.extra, workdir)
                print(json.dumps(r), flush=True)
                runs.append(r)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = {}
    for mode in args.modes:
        rs = [r for r in runs if r["mode"] == mode]
        summary[mode] = {
            k: mean([r[k] for r in rs])
            for k in ("env_steps_per_s", "critic_updates_per_s", "time_to_threshold_s", "utd")
        }
        summary[mode]["reached_threshold"] = sum(r["time_to_threshold_s"] is not None for r in rs)
        summary[mode]["runs"] = len(rs)
    result = {
        "benchmark": "trio_vs_sync",
        "threshold": THRESHOLD,
        "overrides": OVERRIDES + list(args.extra),
        "notes": "CPU only (no GPU in this session). Throughputs are whole-run averages including process start-up; "
        "trio pays ~5-10 s of learner start-up (spawn + import torch) on this machine. Each process uses "
        "1 torch thread. Other sessions shared the machine; load averages are per run.",
        "summary": summary,
        "runs": runs,
    }
    save(args.out, result)  # adds the machine facts
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
