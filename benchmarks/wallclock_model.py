"""The wall-clock model of analysis/wallclock.py against measured time to threshold, for sync and trio runs.

    python benchmarks/wallclock_model.py [--out runs/bench-wallclock] [--steps 8000]

Trains pendulum (eval on) at two UTDs in mode=sync and mode=trio, one seed each, one run at a time, then
`analyze` with budget: wall_clock: T = a D + C / R (sync) or max(a D, C / R) (trio), a and R fitted from the
runs' own log intervals; the error is the model's T at each (UTD, threshold) crossing vs the logged
wall_time_s there. Saves benchmarks/results/wallclock_model_cpu.json with the machine's load average.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import save, train  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="runs/bench-wallclock")
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--result", default="benchmarks/results/wallclock_model_cpu.json")
    a = p.parse_args()
    loads = [os.getloadavg()]
    for mode in ("sync", "trio"):
        for cups in (1, 4):  # UTD 1/16 and 1/4 at pendulum's 16 envs
            d = os.path.join(a.out, mode, "cups%d" % cups)
            trained = train(
                d,
                [
                    "task=pendulum",
                    "mode=%s" % mode,
                    "num_envs=16",
                    "net.activation=elu",  # what wallclock_model_cpu.json measured
                    "algo.critic_updates_per_step=%d" % cups,
                    "max_env_steps=%d" % a.steps,
                    "max_time_s=0",
                    "eval.every_steps=500",
                    "eval.episodes=8",
                    "log.live=off",
                ],
            )
            if trained:
                loads.append(os.getloadavg())
    from pql_scaling.analysis import pipeline

    out = {"steps": a.steps, "loadavg_per_run": loads, "modes": {}}
    for mode in ("sync", "trio"):
        res = pipeline.run_analysis(
            {
                "inputs": [os.path.join(a.out, mode)],
                "max_returns": {"pendulum": -100.0},
                "min_returns": {"pendulum": -1500.0},
                "thresholds": [300.0, 400.0, 500.0, 600.0],
                "budget": "wall_clock",
                "bootstrap": 0,
                "returns": "eval",
                "plots": False,
            }
        ).fits
        w = res["wall_clock"]
        out["modes"][mode] = {"rates": w["rates"], "check": w["check"].get(mode), "returns": res["returns"]}
        c = w["check"].get(mode) or {}
        print(
            "%s: median |model - measured| / measured = %s over %s crossings"
            % (mode, c.get("median_abs_rel_error"), c.get("n"))
        )
    save(a.result, out)


if __name__ == "__main__":
    main()
