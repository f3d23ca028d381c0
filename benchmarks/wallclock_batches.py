"""Does a sync run's time follow its updates or its FLOPs? analysis/wallclock.py's two sync models on real runs
whose batch sizes differ, graded on a run neither saw.

    python benchmarks/wallclock_batches.py [--out runs/bench-wallclock-batches] [--steps 16000]

Trains HalfCheetah (mujoco, the task's CPU defaults: 32 envs, 128x128 nets, threads=1) in mode=sync, one run at a
time: fitted at batch 128 and 512 x UTD 1/8 and 1/2 (critic_updates_per_step 4 and 16), held out at batch 256 x
UTD 1/4. The rates are fitted on the fitted runs' log intervals twice: T = a D + C / R (one FLOP rate: the model
before the per-update term, what a table without update counts still gets) and T = a D + u U + C / R (a fixed cost
per update beside the per-FLOP one). Each model then predicts the held-out run's logged wall_time_s (from its own
D, U and C, after the same start-up t0) and gives its delta (the FLOPs-equivalent of a transition at the held-out
batch size: what a FLOPs budget prices a transition at). The study on HalfCheetah found delta = 0 with the first
model and 4e6 by hand with the second. Saves benchmarks/results/wallclock_batches_cpu.json with the machine's load.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import save, train  # noqa: E402

FITTED = [(128, 4), (128, 16), (512, 4), (512, 16)]  # (batch size, critic updates per actor step of 32 envs)
HELD_OUT = (256, 8)


def _train(d, batch, cups, steps):
    train(
        d,
        [
            "task=HalfCheetah",
            "backend=mujoco",
            "mode=sync",
            "algo.batch_size=%d" % batch,
            "algo.critic_updates_per_step=%d" % cups,
            "max_env_steps=%d" % steps,
            "max_time_s=0",
            "eval.every_steps=0",  # evaluations are a cost of their own (benchmarks/eval_cost.py)
            "log.every_steps=%d" % max(1, steps // 32 // 25),  # ~25 log intervals per run
            "log.live=off",
            "wandb.mode=disabled",
        ],
    )


def _table(root):
    """Every log row of the run directories under root (the analysis's loader keeps only rows with a return,
    and HalfCheetah's first episodes end at 32000 env steps): the columns wallclock.rates reads."""
    import pandas as pd

    from pql_scaling.rundir import schema

    parts = []
    for name in sorted(os.listdir(root)):
        rows, _ = schema.read_metrics(os.path.join(root, name, schema.METRICS))
        df = pd.DataFrame(rows)[["env_steps", "critic_updates", "flops", "wall_time_s"]]
        parts.append(df.rename(columns={"critic_updates": "grad_steps"}).assign(run=name, task="HalfCheetah"))
    return pd.concat(parts, ignore_index=True).assign(mode="sync")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="runs/bench-wallclock-batches")
    p.add_argument("--steps", type=int, default=16000)
    p.add_argument("--result", default="benchmarks/results/wallclock_batches_cpu.json")
    a = p.parse_args()
    loads = []
    for b, c in FITTED + [HELD_OUT]:
        _train(
            os.path.join(a.out, "fitted" if (b, c) in FITTED else "held_out", "b%d_c%d" % (b, c)),
            b,
            c,
            a.steps,
        )
        loads.append(os.getloadavg())
    from pql_scaling.analysis import wallclock

    fit_table = _table(os.path.join(a.out, "fitted"))
    held = _table(os.path.join(a.out, "held_out")).sort_values("env_steps")
    last = held.iloc[-1]
    models = {
        "per_flop": wallclock.rates(fit_table.drop(columns=["grad_steps"])),  # no update counts: u = 0
        "per_update_and_flop": wallclock.rates(fit_table),
    }
    out = {"steps": a.steps, "fitted": FITTED, "held_out": HELD_OUT, "loadavg_per_run": loads, "models": {}}
    # the held-out run's cost per update FLOP at its own batch size: its FLOPs per update
    d_all = np.diff(held[["env_steps", "grad_steps", "flops", "wall_time_s"]].to_numpy(float), axis=0)
    f_held = float(np.median(d_all[:, 2][d_all[:, 1] > 0] / d_all[:, 1][d_all[:, 1] > 0]))
    for name, rts in models.items():
        (r,) = rts.values()
        pred = wallclock.time_to(
            last["env_steps"], last["flops"], r["a_s_per_transition"], r["learner_flops_per_s"], "sync",
            r["t0_s"], U=last["grad_steps"], u=r["s_per_update"],
        )  # fmt: skip
        s_per_flop = r["s_per_update"] / f_held + 1.0 / r["learner_flops_per_s"]
        out["models"][name] = {
            "rates": r,
            "held_out_T_model_s": float(pred),
            "held_out_T_measured_s": float(last["wall_time_s"]),
            "held_out_rel_error": float((pred - last["wall_time_s"]) / last["wall_time_s"]),
            "delta_at_held_out_batch": float(r["a_s_per_transition"] / s_per_flop)
            if s_per_flop > 0
            else None,
        }
        print(
            "%-20s a %.3g s/transition, u %.3g s/update, R %.3g FLOP/s, fitted intervals' median |error| %.1f%%; "
            "held-out run (batch %d, UTD %g): model %.1f s vs measured %.1f s (%+.1f%%); delta %.3g"
            % (
                name,
                r["a_s_per_transition"],
                r["s_per_update"],
                r["learner_flops_per_s"],
                100 * r["interval_median_rel_error"],
                HELD_OUT[0],
                HELD_OUT[1] / 32,
                pred,
                last["wall_time_s"],
                100 * out["models"][name]["held_out_rel_error"],
                out["models"][name]["delta_at_held_out_batch"] or float("nan"),
            )
        )
    save(a.result, out)


if __name__ == "__main__":
    main()
