"""Time-to-threshold on Pendulum: our default `pql-scale train task=pendulum` vs Stable-Baselines3 SAC.

SB3 runs with its rl-zoo Pendulum-v1 settings (learning_rate 1e-3, every other hyperparameter at its
default) on Gymnasium's Pendulum-v1; we run our native pendulum with the defaults a new user gets
(tasks/pendulum.yaml). Both clocks start when learning starts (after model / env construction) and
stop at the first time the mean return of the last >= 10 finished episodes reaches -250: SB3 with a
callback over the last 10 episodes, ours at the first log point whose mean over the episodes finished
since the previous log point (>= 16 episodes per log point with the defaults) reaches it.

    python benchmarks/pendulum_vs_sb3.py --seeds 0 1 2 --out benchmarks/results/pendulum_vs_sb3_cpu.json
"""

import argparse
import collections
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import first_crossing, save  # noqa: E402

THRESHOLD = -250.0


def run_sb3(seed, budget_s, steps, threads):
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.monitor import Monitor

    class Stop(BaseCallback):
        def __init__(self):
            super().__init__()
            self.returns = collections.deque(maxlen=10)
            self.hit = None

        def _on_training_start(self):
            self.t0 = time.perf_counter()

        def _on_step(self):
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(info["episode"]["r"])
            if len(self.returns) == 10 and sum(self.returns) / 10 >= THRESHOLD:
                self.hit = (time.perf_counter() - self.t0, self.num_timesteps)
                return False
            return time.perf_counter() - self.t0 < budget_s

    default_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    env = Monitor(gym.make("Pendulum-v1"))
    model = SAC("MlpPolicy", env, learning_rate=1e-3, seed=seed, verbose=0, device="cpu")
    cb = Stop()
    model.learn(total_timesteps=steps, callback=cb)
    torch.set_num_threads(default_threads)
    return cb.hit or (None, None)


def run_ours(seed, budget_s):
    from pql_scaling.runtime.train import train

    d = os.path.join(tempfile.mkdtemp(), "run")
    train(
        [
            "task=pendulum",
            "seed=%d" % seed,
            "max_time_s=%g" % budget_s,
            "target_return=%g" % THRESHOLD,
            "log.live=off",
            "run_dir=" + d,
        ],
        quiet=True,
    )
    return first_crossing(d, THRESHOLD)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budget-s", type=float, default=150.0)
    p.add_argument("--out", default="benchmarks/results/pendulum_vs_sb3_cpu.json")
    p.add_argument(
        "--sb3-threads",
        type=int,
        nargs="+",
        default=[0, 1],
        help="torch threads for SB3 runs: 0 = torch's default (what a user gets), 1 = best for tiny nets",
    )
    args = p.parse_args()
    runners = [("ours", lambda seed: run_ours(seed, args.budget_s))]
    for th in args.sb3_threads:
        runners.append(
            (
                "sb3" if th == 0 else "sb3_threads%d" % th,
                lambda seed, th=th: run_sb3(seed, args.budget_s, 200000, th),
            )
        )
    results = {name: [] for name, _ in runners}
    for seed in args.seeds:
        for name, fn in runners:
            t, steps = fn(seed)
            results[name].append({"seed": seed, "time_to_threshold_s": t, "env_steps": steps})
            print("%-5s seed %d: %s s, %s env steps" % (name, seed, t and round(t, 2), steps), flush=True)
    summary = {}
    for name, rs in results.items():
        times = [r["time_to_threshold_s"] for r in rs]
        summary[name] = {"mean_s": statistics.mean(times) if None not in times else None, "times_s": times}
    for name in results:
        if name != "ours" and summary["ours"]["mean_s"] and summary[name]["mean_s"]:
            summary["ratio_ours_over_" + name] = summary["ours"]["mean_s"] / summary[name]["mean_s"]
        print("%-14s mean time to threshold %s s" % (name, summary[name]["mean_s"]))
    print({k: v for k, v in summary.items() if k.startswith("ratio")})
    save(
        args.out,
        {
            "threshold": THRESHOLD,
            "results": results,
            "summary": summary,
            "sb3_settings": "SAC MlpPolicy, learning_rate=1e-3 (rl-zoo Pendulum-v1), other defaults; "
            "sb3 = torch's default "
            "thread count, sb3_threads1 = torch.set_num_threads(1)",
            "ours_settings": "pql-scale train task=pendulum (tasks/pendulum.yaml defaults)",
        },
    )


if __name__ == "__main__":
    main()
