"""Env-steps/s of backend=mujoco for each MJCF task at several env counts.

    python benchmarks/mujoco_throughput.py [--envs 16 256 4096] [--nthread 2] [--seconds 3]

An env step is one `env.step` of one env (frame_skip physics steps), with random actions in [-1, 1],
including auto-resets, observation/reward computation and the float32 conversion the trainer gets.
MuJoCo's rollout pool gets `--nthread` threads; torch gets one (the env's tensor work is small, and idle
torch worker threads would compete with MuJoCo's for the cores). The 1-minute load average before and
after each point is recorded: on a shared machine other processes' load lowers the numbers.
Writes benchmarks/results/mujoco_throughput_cpu.json (with machine and library versions).
"""

import argparse
import json
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import envs  # noqa: E402
from pql_scaling.envs.mujoco_backend import TASKS  # noqa: E402


def measure(task, num_envs, nthread, seconds, min_steps=3):
    env = envs.make(task, num_envs, seed=0, backend="mujoco", nthread=nthread)
    env.reset()
    gen = torch.Generator().manual_seed(0)
    actions = [torch.rand((num_envs, env.act_dim), generator=gen) * 2 - 1 for _ in range(8)]
    env.step(actions[0])  # warm-up
    steps, start = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < seconds:
        env.step(actions[steps % len(actions)])
        steps += 1
    elapsed = time.perf_counter() - start
    env.close()
    return num_envs * steps / elapsed, steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[16, 256, 4096])
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--nthread", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--out",
        default=os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "results", "mujoco_throughput_cpu.json"
        ),
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    import mujoco

    results = []
    print("%-12s %8s %14s %7s" % ("task", "num_envs", "env_steps/s", "steps"))
    for task in args.tasks:
        for n in args.envs:
            load_before = os.getloadavg()[0]
            sps, steps = measure(task, n, args.nthread, args.seconds)
            load_after = os.getloadavg()[0]
            results.append(
                {
                    "task": task,
                    "num_envs": n,
                    "env_steps_per_s": round(sps, 1),
                    "timed_steps": steps,
                    "loadavg_1min_before": load_before,
                    "loadavg_1min_after": load_after,
                }
            )
            print(
                "%-12s %8d %14.0f %7d   load %.1f -> %.1f" % (task, n, sps, steps, load_before, load_after),
                flush=True,
            )
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    cpu_model = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    record = {
        "backend": "mujoco",
        "what": "env steps per second (frame_skip physics steps each), random actions, auto-reset included",
        "nthread": args.nthread,
        "seconds_per_point": args.seconds,
        "machine": {
            "cpu": cpu_model,
            "cpus_available": cpus,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "mujoco": mujoco.__version__,
        },
        "command": "python benchmarks/mujoco_throughput.py " + " ".join(sys.argv[1:]),
        "results": results,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(record, f, indent=2)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
