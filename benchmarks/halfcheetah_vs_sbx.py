"""Time to a HalfCheetah return on 2 CPU cores: `pql-scale train task=HalfCheetah backend=mujoco` vs SBX SAC.

SBX (Stable-Baselines-JAX) SAC runs with its rl-zoo HalfCheetah settings (learning_starts 10000, every other
hyperparameter at its default: one env, UTD 1, batch 256, lr 3e-4, 256x256 nets) on Gymnasium's HalfCheetah-v5;
ours runs our mujoco backend's HalfCheetah (v5 semantics) with tasks/HalfCheetah.yaml plus the overrides given
after `--`. Both are graded by the same measure: the mean return of `--episodes` noise-free episodes, evaluated
every `--eval-every` env steps (ours: `eval.every_steps`), and the time to a threshold is the training clock at
the first evaluation at or above it. SBX's clock starts when learning starts and excludes its evaluations (they
pause its only process); ours is the run's `wall_time_s` (start-up excluded, evaluations included: the actor
evaluates while the learners go on). Runs are interleaved seed by seed (A B A B ...) so load drifts into both
alike; each run is its own process, and the JSON is saved after every run (a rerun skips what it holds).

    python -m venv --system-site-packages /tmp/sbxvenv && /tmp/sbxvenv/bin/pip install sbx-rl jax
    python benchmarks/halfcheetah_vs_sbx.py --seeds 0 1 2 3 4 --sbx-python /tmp/sbxvenv/bin/python \\
        --out benchmarks/results/halfcheetah_vs_sbx_cpu.json
    python benchmarks/halfcheetah_vs_sbx.py --only ours --label ours_e64 --seeds 0 1 2 3 4 -- num_envs=64
"""

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

THRESHOLD = 2000.0
SBX_SETTINGS = "SBX SAC MlpPolicy, learning_starts=10000 (rl-zoo HalfCheetah), other defaults, HalfCheetah-v5"


def sbx_child(seed, budget_s, eval_every, episodes):
    """Runs in the SBX interpreter: one SAC run; prints its curve as one JSON line."""
    import gymnasium as gym
    import numpy as np
    from sbx import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    eval_env = gym.make("HalfCheetah-v5")

    class Clock(BaseCallback):
        def _on_training_start(self):
            self.t0, self.paused, self.curve = time.perf_counter(), 0.0, []

        def _on_step(self):
            now = time.perf_counter()
            if self.num_timesteps % eval_every == 0:
                clock = now - self.t0 - self.paused  # training time so far, earlier evaluations excluded
                rets = []
                for ep in range(episodes):
                    obs, _ = eval_env.reset(seed=10_000 + 100 * seed + ep)
                    done, total = False, 0.0
                    while not done:
                        act, _ = self.model.predict(obs, deterministic=True)
                        obs, r, term, trunc, _ = eval_env.step(act)
                        total += float(r)
                        done = term or trunc
                    rets.append(total)
                self.paused += time.perf_counter() - now
                self.curve.append(
                    {
                        "wall_time_s": clock,
                        "env_steps": self.num_timesteps,
                        "updates": max(0, self.num_timesteps - 10000),
                        "eval_return_mean": float(np.mean(rets)),
                    }
                )
                if self.curve[-1]["eval_return_mean"] >= THRESHOLD:  # its time to the threshold is known
                    return False
            return time.perf_counter() - self.t0 - self.paused < budget_s

    env = gym.make("HalfCheetah-v5")
    model = SAC("MlpPolicy", env, learning_starts=10000, seed=seed, verbose=0)
    clock = Clock()
    model.learn(total_timesteps=3_000_000, callback=clock)
    print("CURVE " + json.dumps(clock.curve), flush=True)


def run_sbx(python, seed, budget_s, eval_every, episodes):
    out = subprocess.run(
        [
            python,
            os.path.abspath(__file__),
            "--_sbx-child",
            str(seed),
            str(budget_s),
            str(eval_every),
            str(episodes),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [l for l in out.stdout.splitlines() if l.startswith("CURVE ")]
    if out.returncode or not lines:
        raise SystemExit("SBX run failed (seed %d):\n%s" % (seed, out.stderr[-3000:]))
    return json.loads(lines[-1][len("CURVE ") :])


def run_ours(seed, budget_s, eval_every, episodes, overrides):
    d = os.path.join(tempfile.mkdtemp(prefix="hc-vs-sbx-"), "run")
    cmd = [
        "pql-scale",
        "train",
        "task=HalfCheetah",
        "backend=mujoco",
        "seed=%d" % seed,
        "max_time_s=%g" % budget_s,
        "eval.every_steps=%d" % eval_every,
        "eval.episodes=%d" % episodes,
        "log.live=off",
        "run_dir=" + d,
    ]
    cmd += list(overrides)
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit("our run failed (seed %d): %s\n%s" % (seed, " ".join(cmd), out.stderr[-3000:]))
    curve = []
    with open(os.path.join(d, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if row.get("eval_return_mean") is not None:
                curve.append(
                    {
                        "wall_time_s": row["wall_time_s"],
                        "env_steps": row["env_steps"],
                        "updates": row["critic_updates"],
                        "eval_return_mean": row["eval_return_mean"],
                    }
                )
    return curve


def crossing(curve, threshold=THRESHOLD):
    """(wall_time_s, env_steps, spacing_s) at the first evaluation >= threshold; (None, None, None) if none."""
    prev = 0.0
    for point in curve:
        if point["eval_return_mean"] >= threshold:
            return point["wall_time_s"], point["env_steps"], point["wall_time_s"] - prev
        prev = point["wall_time_s"]
    return None, None, None


def median_censored(times, budget):
    """Median time with runs that never crossed counted as later than any that did (None if half never did)."""
    vals = sorted(t if t is not None else math.inf for t in times)
    m = statistics.median(vals) if vals else math.inf
    return None if math.isinf(m) else m


def ratio_ci(a, b, n=2000):
    """Bootstrap 95% interval of median(a) / median(b), resampling seeds within each side."""
    rng = random.Random(0)
    out = []
    for _ in range(n):
        ma = median_censored([rng.choice(a) for _ in a], None)
        mb = median_censored([rng.choice(b) for _ in b], None)
        if ma is not None and mb:
            out.append(ma / mb)
    if len(out) < n * 0.9:
        return None
    out.sort()
    return [out[int(0.025 * len(out))], out[int(0.975 * len(out)) - 1]]


def summarise(runs):
    by = {}
    for r in runs:
        by.setdefault(r["label"], []).append(r)
    summary = {}
    for label, rs in by.items():
        times = [r["time_to_threshold_s"] for r in rs]
        summary[label] = {
            "seeds": [r["seed"] for r in rs],
            "times_s": times,
            "median_s": median_censored(times, None),
            "reached": sum(t is not None for t in times),
        }
    base = summary.get("sbx")
    for label, s in summary.items():
        if label != "sbx" and base and s["median_s"] and base["median_s"]:
            s["ratio_vs_sbx"] = s["median_s"] / base["median_s"]
            s["ratio_vs_sbx_ci95"] = ratio_ci(s["times_s"], base["times_s"])
    return summary


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--only", choices=["sbx", "ours"], help="run one side only")
    p.add_argument("--label", default="ours", help="name of our configuration in the results")
    p.add_argument(
        "--sbx-python", default=sys.executable, help="an interpreter with sbx-rl and jax installed"
    )
    p.add_argument("--sbx-budget-s", type=float, default=480.0)
    p.add_argument("--budget-s", type=float, default=300.0, help="our runs' max_time_s")
    p.add_argument("--eval-every", type=int, default=3200, help="env steps between evaluations (SBX: 2000)")
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--out", default="benchmarks/results/halfcheetah_vs_sbx_cpu.json")
    p.add_argument("overrides", nargs="*", help="our training overrides, after --")
    args = p.parse_args()
    runs = json.load(open(args.out))["runs"] if os.path.exists(args.out) else []
    done = {(r["label"], r["seed"]) for r in runs}
    for seed in args.seeds:
        for side in ("sbx", "ours"):
            if args.only and side != args.only:
                continue
            label = "sbx" if side == "sbx" else args.label
            if (label, seed) in done:
                continue
            load = os.getloadavg()[0]
            t = time.perf_counter()
            if side == "sbx":
                curve = run_sbx(args.sbx_python, seed, args.sbx_budget_s, 2000, args.episodes)
            else:
                curve = run_ours(seed, args.budget_s, args.eval_every, args.episodes, args.overrides)
            t_hit, steps_hit, spacing = crossing(curve)
            runs.append(
                {
                    "label": label,
                    "seed": seed,
                    "overrides": [] if side == "sbx" else list(args.overrides),
                    "time_to_threshold_s": t_hit,
                    "env_steps_at_threshold": steps_hit,
                    "resolution_s": spacing,
                    "final_eval_return": curve[-1]["eval_return_mean"] if curve else None,
                    "run_s": time.perf_counter() - t,
                    "loadavg_1m_before": load,
                    "curve": curve,
                }
            )
            print(
                "%-12s seed %d: time to %g = %s s (resolution %s s), final %s"
                % (
                    label,
                    seed,
                    THRESHOLD,
                    t_hit and round(t_hit, 1),
                    spacing and round(spacing, 1),
                    runs[-1]["final_eval_return"] and round(runs[-1]["final_eval_return"]),
                ),
                flush=True,
            )
            from common import save

            save(
                args.out,
                {
                    "threshold": THRESHOLD,
                    "sbx_settings": SBX_SETTINGS,
                    "ours_settings": "pql-scale train task=HalfCheetah backend=mujoco + each run's overrides",
                    "command": " ".join(sys.argv),
                    "summary": summarise(runs),
                    "runs": runs,
                },
            )
    print(json.dumps(summarise(runs), indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_sbx-child":
        sbx_child(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
