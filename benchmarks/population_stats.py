"""Does a population learn as separate runs do? K Pendulum seeds as one population and as K separate runs.

The same question as tests/test_population.py's sync test (two-sided Mann-Whitney p > 0.05 on env steps to the
target return, medians within 15%), for a mode the test cannot afford: `--mode trio` (actor, V-learner and
P-learner processes; every separate run is three processes too, run one at a time on 2 cores). The trio's update
ratios are held per member, so its env steps to a return are comparable with separate runs' whatever the load;
this is a statistics check, not a timing one (the wall times are recorded but are not claims).

    python benchmarks/population_stats.py [--mode trio] [--seeds 16] [--budget 40000] [--target -250]
        [--out benchmarks/results/population_stats_trio_cpu.json]

A seed that never reaches the target counts as the budget (a tie at the top).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import first_crossing, save  # noqa: E402

PY = [sys.executable, "-m", "pql_scaling.cli", "train"]


def train(args):
    t = time.monotonic()
    subprocess.run(PY + args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - t


def main():
    from scipy.stats import mannwhitneyu

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", default="trio", choices=["sync", "trio"])
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--first-seed", type=int, default=100)
    ap.add_argument("--budget", type=int, default=40000)
    ap.add_argument("--target", type=float, default=-250.0)
    ap.add_argument("--out", default="benchmarks/results/population_stats_trio_cpu.json")
    a = ap.parse_args()
    seeds = list(range(a.first_seed, a.first_seed + a.seeds))
    common = ["task=pendulum", "mode=" + a.mode, "threads=1", "log.live=off"]
    common += ["target_return=%g" % a.target, "max_env_steps=%d" % a.budget]
    root = tempfile.mkdtemp(prefix="popstats-")
    load0 = os.getloadavg()[0]
    pop_dir = os.path.join(root, "pop")
    pop_s = train(
        common + ["population.size=%d" % a.seeds, "population.seeds=%s" % seeds, "run_dir=" + pop_dir]
    )
    with open(os.path.join(pop_dir, "population.json")) as f:
        members = json.load(f)["members"]
    together = [first_crossing(d, a.target)[1] or a.budget for d in members]
    apart, apart_s = [], 0.0
    for s in seeds:
        d = os.path.join(root, "s%d" % s)
        apart_s += train(common + ["seed=%d" % s, "run_dir=" + d])
        apart.append(first_crossing(d, a.target)[1] or a.budget)
        print("seed", s, "population", together[len(apart) - 1], "separate", apart[-1], flush=True)
    p = float(mannwhitneyu(together, apart, alternative="two-sided").pvalue)
    med = lambda x: sorted(x)[len(x) // 2]  # noqa: E731
    rel = abs(med(together) - med(apart)) / med(apart)
    result = {
        "command": " ".join(sys.argv),
        "mode": a.mode,
        "task": "pendulum CPU defaults (tasks/pendulum.yaml)",
        "seeds": seeds,
        "target_return": a.target,
        "budget_env_steps": a.budget,
        "population_env_steps_to_target": together,
        "separate_env_steps_to_target": apart,
        "reached": {
            "population": sum(x < a.budget for x in together),
            "separate": sum(x < a.budget for x in apart),
        },
        "median": {"population": med(together), "separate": med(apart)},
        "median_rel_diff": round(rel, 4),
        "mann_whitney_p_two_sided": round(p, 4),
        "passes": p > 0.05 and rel <= 0.15,
        "criterion": "two-sided Mann-Whitney p > 0.05 and medians within 15% (issue 21)",
        "wall_s": {"population": round(pop_s, 1), "separate_one_at_a_time": round(apart_s, 1)},
        "loadavg_at_start": load0,
        "loadavg_at_end": os.getloadavg()[0],
    }
    print(json.dumps({k: v for k, v in result.items() if k != "command"}), flush=True)
    save(a.out, result)


if __name__ == "__main__":
    main()
