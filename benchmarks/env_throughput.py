"""Env-step throughput of the native tasks: env-steps/s = num_envs * steps / seconds, after warm-up.

    python benchmarks/env_throughput.py --device cpu --out benchmarks/results/env_throughput_cpu.json

Writes {"machine": {...}, "env_throughput": [row, ...]}; other benchmarks (e.g. critic updates) can
add their own top-level lists to the same file. A step is the full `NativeVecEnv.step` (action
clamp and scaling, dynamics, time limit, auto-reset), with one fixed batch of random actions so the
action sampler is not timed. torch's thread count is left at its default unless --threads is given,
and recorded with the load average: on a CPU shared with other jobs, intra-op parallel regions can
stall waiting for a descheduled thread, so compare rows only at equal threads and similar load.
"""
import argparse
import json
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import envs  # noqa: E402
from tasks import NATIVE_TASKS  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def env_throughput(task, num_envs, device="cpu", seconds=2.0, warmup_steps=20, seed=0):
    """Step `task` with `num_envs` envs for about `seconds` after warm-up; returns one result row."""
    device = torch.device(device)
    env = envs.make(task, num_envs, device=device, seed=seed)
    g = torch.Generator(device=device).manual_seed(seed)
    actions = torch.rand((num_envs, env.act_dim), generator=g, device=device) * 2 - 1
    with torch.inference_mode():
        env.reset()
        for _ in range(warmup_steps):
            env.step(actions)
        _sync(device)
        steps, chunk = 0, 10
        start = time.perf_counter()
        while True:
            for _ in range(chunk):
                env.step(actions)
            steps += chunk
            _sync(device)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
    return {
        "task": task,
        "num_envs": num_envs,
        "device": str(device),
        "steps": steps,
        "seconds": elapsed,
        "env_steps_per_s": num_envs * steps / elapsed,
        "step_ms": 1e3 * elapsed / steps,
    }


def machine_info(device):
    device = torch.device(device)
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if hasattr(os, "getloadavg"):
        info["loadavg_1m_before"] = os.getloadavg()[0]
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/env_throughput_<device type>.json)")
    parser.add_argument("--tasks", nargs="+", default=sorted(NATIVE_TASKS))
    parser.add_argument("--num-envs", nargs="+", type=int, default=[64, 1024, 16384])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave torch's default)")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per (task, num_envs)")
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "env_throughput_%s.json" % device.type)
    machine = machine_info(device)
    print("  ".join("%s=%s" % kv for kv in machine.items()))
    rows = []
    print("%-26s %8s %16s %10s" % ("task", "envs", "env-steps/s", "ms/step"))
    for task in args.tasks:
        for n in args.num_envs:
            row = env_throughput(task, n, device, args.seconds)
            rows.append(row)
            print("%-26s %8d %16.3e %10.3f" % (task, n, row["env_steps_per_s"], row["step_ms"]))
    if hasattr(os, "getloadavg"):
        machine["loadavg_1m_after"] = os.getloadavg()[0]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"machine": machine, "env_throughput": rows}, f, indent=1)
    print("wrote", out)


if __name__ == "__main__":
    main()
