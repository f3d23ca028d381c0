"""Dense vs BRO vs Soft MoE critics at three sizes each on HalfCheetah (backend=mujoco, CPU): return at a
fixed env-step budget and env steps to a return threshold against critic parameters, with bootstrap
intervals over seeds (issue 10; R3 reports that Soft MoE scales with parameters where dense does not).

    python benchmarks/critic_scaling.py run --root runs/critic_scaling      # trains the grid (resumable)
    python benchmarks/critic_scaling.py report --root runs/critic_scaling   # JSON + PNG in benchmarks/results/

Every run: same UTD (critic_updates_per_step / num_envs), same env-step budget, same actor, same seeds,
mode=sync with one torch thread, `--parallel` runs at a time. Finished runs are skipped on a rerun.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import save  # noqa: E402

# widths per architecture, chosen so that each spans > 10x in critic parameters at similar FLOP ranges
SIZES = {"mlp": [32, 96, 256], "bro": [32, 96, 256], "softmoe": [32, 128, 512]}
BASE = [
    "task=HalfCheetah",
    "backend=mujoco",
    "mode=sync",
    "threads=1",
    "num_envs=2",
    "algo.critic_updates_per_step=0.5",
    "algo.batch_size=128",
    "net.actor_hidden=[128,128]",
    "net.critic_depth=2",
    "max_time_s=0",
    "log.live=off",
    "log.every_steps=500",
    "net.tokens=8",
    "net.experts=4",
    "net.slots_per_expert=2",
]
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "critic_scaling_halfcheetah_cpu")


def grid(seeds):
    # seed-major: if the time runs out, the finished seeds cover every (arch, size)
    return [(s, a, w) for s in seeds for a in SIZES for w in SIZES[a]]


def run_dir(root, s, a, w):
    return os.path.join(root, f"{a}-w{w}-s{s}")


def done(d):
    try:
        with open(os.path.join(d, "status.json")) as f:
            return json.load(f)["status"] == "completed"
    except (OSError, ValueError, KeyError):
        return False


def reached(d, budget):
    """A run whose log reaches `budget` env steps (it may have run longer, or been stopped after it):
    sync mode is deterministic for a seed and nothing but the stop condition reads max_env_steps, so its
    log up to `budget` is the log of a run with that budget."""
    try:
        with open(os.path.join(d, "metrics.jsonl")) as f:
            return any(json.loads(l).get("env_steps", 0) >= budget for l in f if l.strip())
    except (OSError, ValueError):
        return False


def run(args):
    todo = [
        (s, a, w)
        for s, a, w in grid(range(args.first_seed, args.seeds))
        if not reached(run_dir(args.root, s, a, w), args.env_steps)
    ]
    procs, loads = [], []
    os.makedirs(args.root, exist_ok=True)
    log = open(os.path.join(args.root, "launch.log"), "a")
    while todo or procs:
        procs = [p for p in procs if p[0].poll() is None]
        while todo and len(procs) < args.parallel:
            s, a, w = todo.pop(0)
            d = run_dir(args.root, s, a, w)
            if os.path.exists(d):  # an unfinished run from an interrupted launch: start it again
                import shutil

                shutil.rmtree(d)
            cmd = (
                [sys.executable, "-m", "pql_scaling.cli", "train"]
                + BASE
                + [
                    f"seed={s}",
                    f"net.critic_arch={a}",
                    f"net.critic_width={w}",
                    f"max_env_steps={args.env_steps}",
                    f"run_dir={d}",
                ]
            )
            loads.append(os.getloadavg()[0])
            log.write(f"{time.strftime('%H:%M:%S')} load {loads[-1]:.2f} start {' '.join(cmd[3:])}\n")
            log.flush()
            procs.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(d + ".err", "w")), d))
        time.sleep(2)
    log.write(f"{time.strftime('%H:%M:%S')} all done; load at launches: {loads}\n")


def _curve(d, budget):
    rows = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl")) if l.strip()]
    rows = [r for r in rows if r.get("return_mean") is not None and r["env_steps"] <= budget]
    return np.array([r["env_steps"] for r in rows]), np.array([r["return_mean"] for r in rows]), rows


def _crossing(steps, mean, J):
    from scipy.optimize import isotonic_regression

    iso = isotonic_regression(mean).x
    i = np.nonzero(iso >= J)[0]
    return float(steps[i[0]]) if len(i) else np.nan


def report(args):
    rng = np.random.default_rng(0)
    cells = []
    for a in SIZES:
        for w in SIZES[a]:
            ds = [run_dir(args.root, s, a, w) for s in range(args.seeds)]
            ds = [d for d in ds if reached(d, args.env_steps)]
            if not ds:
                continue
            facts = json.load(open(os.path.join(ds[0], "run.json")))
            curves = [_curve(d, args.env_steps) for d in ds]
            T = min(len(c[0]) for c in curves)
            steps = curves[0][0][:T]
            R = np.stack([c[1][:T] for c in curves], 1)  # [T, seeds]
            final = R[-args.last :].mean(0)  # training-episode returns are noisy: mean of the last log points
            pick = rng.integers(0, R.shape[1], size=(args.boot, R.shape[1]))
            fb = final[pick].mean(1)
            sts = {}
            for J in args.thresholds:
                cross = _crossing(steps, R.mean(1), J)
                cb = np.array([_crossing(steps, R[:, p].mean(1), J) for p in pick])
                sts[f"{J:g}"] = {
                    "steps": None if np.isnan(cross) else cross,
                    "ci95": [float(np.nanpercentile(cb, 2.5)), float(np.nanpercentile(cb, 97.5))]
                    if np.isfinite(cb).any()
                    else [None, None],
                    "boot_reached": float(np.isfinite(cb).mean()),
                    "seeds_reached": int(
                        sum(np.isfinite(_crossing(steps, R[:, j], J)) for j in range(R.shape[1]))
                    ),
                }
            wall = [c[2][-1]["wall_time_s"] for c in curves]
            cells.append(
                {
                    "arch": a,
                    "width": w,
                    "critic_params": facts["critic_params"],
                    "critic_flops_per_sample_forward": facts["critic_flops_per_sample"]["forward"],
                    "flops_per_critic_update": facts["flops_per_critic_update"],
                    "seeds": len(ds),
                    "env_steps_budget": float(steps[-1]),
                    "utd": facts["utd"],
                    "return_at_budget_mean": float(final.mean()),
                    "return_at_budget_per_seed": final.tolist(),
                    "return_last_log_per_seed": R[-1].tolist(),
                    "return_at_budget_ci95": [float(np.percentile(fb, 2.5)), float(np.percentile(fb, 97.5))],
                    "steps_to_threshold": sts,
                    "wall_time_s_mean": float(np.mean(wall)),
                    "curve_steps": steps.tolist(),
                    "curve_mean": R.mean(1).tolist(),
                }
            )
    launches = (
        open(os.path.join(args.root, "launch.log")).read().splitlines()
        if os.path.exists(os.path.join(args.root, "launch.log"))
        else []
    )
    loads = [float(l.split(" load ")[1].split()[0]) for l in launches if " start " in l]
    payload = {
        "last": args.last,
        "plot_threshold": args.plot_threshold,
        "env_steps_budget": args.env_steps,
        "command": "python benchmarks/critic_scaling.py run --seeds %d --env-steps %d"
        % (args.seeds, args.env_steps),
        "train_overrides": BASE,
        "thresholds": args.thresholds,
        "bootstrap": args.boot,
        "cells": cells,
        "return_at_budget": f"per seed: mean of the last {args.last} logged training-episode returns "
        "(each the mean over the episodes that ended since the previous log point); "
        "CI: percentile bootstrap of the seed mean",
        "steps_to_threshold": "first logged env step where the isotonic fit of the seed-mean return "
        "reaches the threshold (R1's rule); CI over seed resamples that reach it",
        "loadavg_1m_at_launches": loads,
        "loadavg_now": list(os.getloadavg()),
        "note": "machine shared with other jobs (2 cores); wall times are not comparable across runs",
    }
    out = args.out or OUT
    save(out + ".json", payload)
    plot(payload, out + ".png")
    for c in cells:
        print(
            "%-8s w=%-4d N=%-7d seeds %d  return@budget %7.1f [%7.1f, %7.1f]  steps to J: %s"
            % (
                c["arch"],
                c["width"],
                c["critic_params"],
                c["seeds"],
                c["return_at_budget_mean"],
                *c["return_at_budget_ci95"],
                {k: v["steps"] for k, v in c["steps_to_threshold"].items()},
            )
        )


def plot(p, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    for a, col in zip(SIZES, ("C0", "C1", "C2")):
        cs = [c for c in p["cells"] if c["arch"] == a]
        if not cs:
            continue
        n = np.array([c["critic_params"] for c in cs], float)
        r = np.array([c["return_at_budget_mean"] for c in cs])
        lo, hi = np.array([c["return_at_budget_ci95"] for c in cs]).T
        ax[0].errorbar(n, r, yerr=[r - lo, hi - r], fmt="o-", color=col, capsize=3, label=a)
        key = f"{p['thresholds'][p['plot_threshold']]:g}"
        st = np.array(
            [
                np.nan
                if c["steps_to_threshold"][key]["steps"] is None
                else c["steps_to_threshold"][key]["steps"]
                for c in cs
            ],
            float,
        )
        slo = np.array(
            [
                np.nan
                if c["steps_to_threshold"][key]["ci95"][0] is None
                else c["steps_to_threshold"][key]["ci95"][0]
                for c in cs
            ]
        )
        shi = np.array(
            [
                np.nan
                if c["steps_to_threshold"][key]["ci95"][1] is None
                else c["steps_to_threshold"][key]["ci95"][1]
                for c in cs
            ]
        )
        ax[1].errorbar(
            n,
            st,
            yerr=[np.clip(st - slo, 0, None), np.clip(shi - st, 0, None)],
            fmt="o-",
            color=col,
            capsize=3,
            label=a,
        )
    ax[0].set(
        xscale="log",
        xlabel="critic parameters N",
        ylabel="return at budget (mean of last %d logs)" % p.get("last", 3),
    )
    ax[1].set(
        xscale="log",
        xlabel="critic parameters N",
        ylabel=f"env steps to return {p['thresholds'][p['plot_threshold']]:g} (missing: never)",
    )
    b = p["cells"][0] if p["cells"] else {}
    fig.suptitle(
        f"HalfCheetah (mujoco, CPU): {b.get('env_steps_budget', 0):.0f} env steps, UTD {b.get('utd', 0):g}, "
        f"{min([c['seeds'] for c in p['cells']] or [0])}+ seeds",
        fontsize=10,
    )
    ax[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print("saved %s" % path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["run", "report"])
    ap.add_argument("--root", default="runs/critic_scaling")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, dest="first_seed")
    ap.add_argument("--env-steps", type=int, default=12000, dest="env_steps")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument(
        "--thresholds", type=lambda v: [float(x) for x in v.split(",")], default=[250.0, 500.0, 1000.0]
    )
    ap.add_argument(
        "--plot-threshold", type=int, default=1, dest="plot_threshold", help="index into --thresholds"
    )
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument(
        "--out",
        help="output path without extension (default benchmarks/results/critic_scaling_halfcheetah_cpu)",
    )
    ap.add_argument(
        "--last", type=int, default=3, help="return at budget = mean of this many last log points"
    )
    args = ap.parse_args()
    (run if args.what == "run" else report)(args)


if __name__ == "__main__":
    main()
