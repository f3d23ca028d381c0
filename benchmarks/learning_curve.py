"""Train one task and save its learning curve (return vs wall-clock and env steps) as JSON.

    python benchmarks/learning_curve.py --out benchmarks/results/halfcheetah_mujoco_cpu.json -- \
        task=HalfCheetah backend=mujoco num_envs=32 max_time_s=1200 max_env_steps=null

Everything after `--` goes to `pql-scale train`. The random-policy return of the same task (mean over
`--random-episodes` episodes with uniform actions) is saved beside the curve as the baseline to beat.
"""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import save  # noqa: E402


def random_return(overrides, episodes):
    import torch

    from pql_scaling import config, envs

    cfg = config.load(overrides)
    env = envs.make(cfg.task, episodes, backend=cfg.backend, seed=123)
    env.reset()
    total, done_once, ret = (
        torch.zeros(episodes),
        torch.zeros(episodes, dtype=torch.bool),
        torch.zeros(episodes),
    )
    for _ in range(env.max_episode_steps):
        _, r, term, trunc, _ = env.step(torch.rand(episodes, env.act_dim) * 2 - 1)
        ret += r * (~done_once)
        done_once |= term | trunc
        if done_once.all():
            break
    total = ret
    return float(total.mean())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--random-episodes", type=int, default=16)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    from pql_scaling.runtime.train import train

    run_dir = os.path.join(tempfile.mkdtemp(), "run")
    train(args.overrides + ["log.live=plain", "run_dir=" + run_dir])
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    curve = [
        {k: r[k] for k in ("wall_time_s", "env_steps", "critic_updates", "return_mean", "utd")}
        for r in rows
        if r["return_mean"] is not None
    ]
    baseline = random_return(args.overrides, args.random_episodes)
    best = max(c["return_mean"] for c in curve)
    print(
        "random policy %.1f, best logged mean return %.1f, final %.1f"
        % (baseline, best, curve[-1]["return_mean"])
    )
    save(
        args.out,
        {
            "command": "pql-scale train " + " ".join(args.overrides),
            "random_policy_return": baseline,
            "best_return_mean": best,
            "final_return_mean": curve[-1]["return_mean"],
            "curve": curve,
            "config": json.load(open(os.path.join(run_dir, "run.json"))),
        },
    )


if __name__ == "__main__":
    main()
