"""Does the trio's actor keep the simulator's speed while the learners run? (PQL's claim, on our code.)

1. The simulator alone: env-steps/s of `env.step` with random actions (auto-resets included).
2. A trio training run on the same task, env count and device, learners at the task's configured ratios;
   the actor's env-steps/s from metrics.jsonl (`actor_steps_per_s * num_envs`), log points after the first
   `--skip-s` seconds (compilation, replay fill).
Target on a GPU (issue 14): mjwarp Ant at 4096 envs keeps >= 90% of the stand-alone rate.

    python benchmarks/trio_actor_speed.py                                # Ant, backend=mjwarp, cuda, 4096 envs
    python benchmarks/trio_actor_speed.py --backend mujoco --device cpu --num-envs 32 --seconds 20   # code path on CPU
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import envs  # noqa: E402


def standalone(task, backend, num_envs, device, seconds):
    env = envs.make(task, num_envs, seed=0, backend=backend, device=device)
    env.reset()
    gen = torch.Generator().manual_seed(0)
    actions = [(torch.rand((num_envs, env.act_dim), generator=gen) * 2 - 1).to(device) for _ in range(8)]
    for a in actions[:3]:
        env.step(a)  # warm-up (CUDA graph capture)
    common_sync(device)
    n, t0 = 0, time.perf_counter()
    while n < 5 or time.perf_counter() - t0 < seconds:
        env.step(actions[n % 8])
        n += 1
    common_sync(device)
    rate = num_envs * n / (time.perf_counter() - t0)
    if hasattr(env, "close"):
        env.close()
    return rate


def common_sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="Ant")
    ap.add_argument("--backend", default="mjwarp")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--num-envs", type=int, default=4096)
    ap.add_argument("--seconds", type=float, default=90.0, help="the trio run's wall-clock budget")
    ap.add_argument("--skip-s", type=float, default=30.0, help="log points before this are warm-up")
    ap.add_argument("--sim-seconds", type=float, default=10.0)
    ap.add_argument("--extra", nargs="*", default=["perf.compile=reduce-overhead"], help="training overrides")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    sim = standalone(args.task, args.backend, args.num_envs, args.device, args.sim_seconds)
    print(
        "stand-alone %s/%s x%d on %s: %.3e env-steps/s"
        % (args.task, args.backend, args.num_envs, args.device, sim),
        flush=True,
    )
    from pql_scaling.runtime.train import train

    d = os.path.join(tempfile.mkdtemp(), "run")
    overrides = [
        "task=%s" % args.task,
        "backend=%s" % args.backend,
        "device=%s" % args.device,
        "num_envs=%d" % args.num_envs,
        "mode=trio",
        "max_time_s=%g" % args.seconds,
        "max_env_steps=null",
        "log.live=off",
        "run_dir=" + d,
    ] + args.extra
    train(overrides, quiet=True)
    with open(os.path.join(d, "metrics.jsonl")) as f:
        rows = [json.loads(l) for l in f]
    late = [r for r in rows if r["wall_time_s"] >= args.skip_s and r.get("actor_steps_per_s")]
    actor = statistics.median(r["actor_steps_per_s"] * args.num_envs for r in late) if late else None
    ratio = actor / sim if actor else None
    cu = statistics.median(r["critic_updates_per_s"] for r in late) if late else None
    print(
        "trio actor: %s env-steps/s = %s of stand-alone; critic updates/s %s; target >= 0.90"
        % (actor, ratio and round(ratio, 3), cu),
        flush=True,
    )
    dev = (
        args.device
        if torch.device(args.device).type == "cpu"
        else torch.cuda.get_device_name(torch.device(args.device))
    )
    out = args.out or os.path.join(
        os.path.dirname(os.path.abspath(__file__)),
        "results",
        "trio_actor_speed_%s_%s_%s.json" % (args.task, args.backend, dev.replace(" ", "_")),
    )
    common.save(
        out,
        {
            "command": "python benchmarks/trio_actor_speed.py " + " ".join(sys.argv[1:]),
            "overrides": overrides,
            "standalone_env_steps_per_s": sim,
            "trio_actor_env_steps_per_s": actor,
            "ratio": ratio,
            "trio_critic_updates_per_s": cu,
            "target_ratio": 0.9,
            "rows": late,
            "device_name": dev,
            "loadavg_1m_before": load0,
            "loadavg_1m_after": os.getloadavg()[0],
        },
    )


if __name__ == "__main__":
    main()
