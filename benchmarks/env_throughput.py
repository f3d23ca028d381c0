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
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import envs  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from pql_scaling.tasks import NATIVE_TASKS  # noqa: E402


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


def update_throughput(overrides, device="cpu", seconds=2.0):
    """Critic and policy updates/s of the learner for a config (net widths, batch size), on a full replay."""
    from pql_scaling import config
    from pql_scaling.core import nets
    from pql_scaling.core.replay import Normalizer, Replay
    from pql_scaling.runtime.learner import PLearner, VLearner

    cfg = config.load(["device=%s" % device] + list(overrides))
    env = envs.make(cfg.task, cfg.num_envs, device=device)
    actor, critic = (m.to(device) for m in nets.build(cfg, env.obs_dim, env.act_dim))
    norm = Normalizer(env.obs_dim, device)
    replay = Replay(
        max(cfg.algo.batch_size * 4, cfg.num_envs), env.obs_dim, env.act_dim, cfg.num_envs, device
    )
    for k, v in replay.data.items():
        v.normal_()
    replay.rows = replay.capacity
    v, p = VLearner(cfg, critic, actor, norm, device), PLearner(cfg, actor, critic, norm, device, env.act_dim)
    row = {
        "task": cfg.task,
        "algo": cfg.algo.name,
        "batch_size": cfg.algo.batch_size,
        "device": str(device),
        "critic_hidden": list(cfg.net.critic_hidden),
        "actor_hidden": list(cfg.net.actor_hidden),
        "critic_params": nets.count_params(critic),
    }
    for name, learner in (("critic", v), ("policy", p)):
        for _ in range(5):
            learner.learn(replay)
        _sync(torch.device(device))
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(5):
                learner.learn(replay)
            n += 5
            _sync(torch.device(device))
        row[name + "_updates_per_s"] = n / (time.perf_counter() - start)
    flops_c, flops_p = nets.update_flops(actor, critic, cfg.algo.batch_size)
    row["critic_update_gflop"] = flops_c / 1e9
    row["critic_gflops_per_s"] = flops_c * row["critic_updates_per_s"] / 1e9
    return row


UPDATE_CONFIGS = {
    "pql_default": [
        "task=pendulum",
        "net.actor_hidden=[512,256,128]",
        "net.critic_hidden=[512,256,128]",
        "algo.batch_size=8192",
    ],
    "pendulum_default": ["task=pendulum"],
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--out", default=None, help="JSON path (default benchmarks/results/env_throughput_<device type>.json)"
    )
    parser.add_argument("--tasks", nargs="+", default=sorted(NATIVE_TASKS))
    parser.add_argument("--num-envs", nargs="+", type=int, default=[64, 1024, 16384])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: leave torch's default)"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per (task, num_envs)")
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    out = args.out or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results", "env_throughput_%s.json" % device.type
    )
    machine = common.machine()
    print("  ".join("%s=%s" % kv for kv in machine.items()))
    rows = []
    print("%-26s %8s %16s %10s" % ("task", "envs", "env-steps/s", "ms/step"))
    for task in args.tasks:
        for n in args.num_envs:
            row = env_throughput(task, n, device, args.seconds)
            rows.append(row)
            print("%-26s %8d %16.3e %10.3f" % (task, n, row["env_steps_per_s"], row["step_ms"]))
    updates = []
    print(
        "%-18s %12s %12s %12s %10s"
        % ("learner config", "critic upd/s", "policy upd/s", "critic GF/s", "params")
    )
    for name, overrides in UPDATE_CONFIGS.items():
        row = dict(update_throughput(overrides, device, args.seconds), config=name)
        updates.append(row)
        print(
            "%-18s %12.1f %12.1f %12.2f %10d"
            % (
                name,
                row["critic_updates_per_s"],
                row["policy_updates_per_s"],
                row["critic_gflops_per_s"],
                row["critic_params"],
            )
        )
    if hasattr(os, "getloadavg"):
        machine["loadavg_1m_after"] = os.getloadavg()[0]
    common.save(out, {"env_throughput": rows, "update_throughput": updates})


if __name__ == "__main__":
    main()
