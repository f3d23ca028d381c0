"""What evaluation on by default costs (issue 26): per task, one short `pql-scale train` with the task's CPU
defaults and its default eval schedule (`eval.every_steps`, `eval.episodes` from tasks/<task>.yaml), one run at
a time. Reported per task: the measured env-steps/s (training clock, evaluation excluded), the evaluations a
default run gets (its max_env_steps, or its max_time_s times the measured env-steps/s), the seconds one
evaluation takes, and evaluation's share of training time, eval_time_s / wall_time_s, both as measured in the
short run and projected onto the default run. Saves JSON with the machine and os.getloadavg() at start and end.

    nice -n 10 python benchmarks/eval_cost.py                      # native tasks and HalfCheetah (mujoco)
    nice -n 10 python benchmarks/eval_cost.py --tasks Hopper Ant   # more MJCF tasks, merged into the JSON
    nice -n 10 python benchmarks/eval_cost.py --tasks Pendulum-v1  # backend=gymnasium

A short run evaluates an early policy: tasks whose episodes end early on failure (Hopper, Walker2d, Ant,
Humanoid) or on success (mountaincar) cost a different amount per evaluation later in training; pendulum,
cartpole_swingup, acrobot_swingup, double_cartpole_swingup and HalfCheetah always run full-length episodes.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import machine  # noqa: E402
from pql_scaling import config  # noqa: E402
from pql_scaling.tasks.mjcf import MJCF_TASKS  # noqa: E402

DEFAULT_TASKS = [
    "pendulum",
    "mountaincar",
    "cartpole_swingup",
    "acrobot_swingup",
    "double_cartpole_swingup",
    "HalfCheetah",
]
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "eval_cost_cpu.json")


def backend(task):
    """MJCF tasks on the CPU's MuJoCo, registered Gymnasium ids (Name-vN) on backend=gymnasium, else native."""
    return "mujoco" if task in MJCF_TASKS else "gymnasium" if "-v" in task else "native"


def task_args(task):
    return ["task=" + task] + ([] if backend(task) == "native" else ["backend=" + backend(task)])


def measure(task, time_s, root):
    """One short run with the task's defaults (threads=1) and its eval schedule -> a result dict."""
    cfg = config.load(task_args(task))
    run_dir = os.path.join(root, task)
    args = task_args(task) + [
        "threads=1",
        "max_time_s=%r" % float(time_s),
        "log.live=off",
        "run_dir=" + run_dir,
    ]
    load0, t0 = os.getloadavg(), time.monotonic()
    with open(run_dir + ".log", "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pql_scaling.cli", "train"] + args, stdout=out, stderr=subprocess.STDOUT
        )
        loads = []
        while proc.poll() is None:
            loads.append(os.getloadavg()[0])
            time.sleep(1.0)
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    last = max(rows, key=lambda r: (r["env_steps"], r["wall_time_s"]))
    evals = [r for r in rows if r.get("eval_return_mean") is not None or "eval_episodes" in r]
    eval_s = max((r.get("eval_time_s") or 0.0) for r in rows)
    wall, steps = last["wall_time_s"], last["env_steps"]
    rate = steps / wall
    if cfg.max_env_steps:  # the default run ends at its step cap or its time budget, whichever comes first
        run_steps = min(cfg.max_env_steps, rate * cfg.max_time_s)
    else:
        run_steps = rate * cfg.max_time_s
    run_s = run_steps / rate
    per_eval = eval_s / len(evals) if evals else None
    n_default = int(run_steps // cfg.eval.every_steps) if cfg.eval.every_steps else 0
    return {
        "task": task,
        "backend": backend(task),
        "mode": cfg.mode,
        "num_envs": cfg.num_envs,
        "eval_every_steps": cfg.eval.every_steps,
        "eval_episodes": cfg.eval.episodes,
        "default_max_env_steps": cfg.max_env_steps,
        "default_max_time_s": cfg.max_time_s,
        "command": "pql-scale train " + " ".join(a for a in args if not a.startswith("run_dir=")),
        "exit_code": proc.returncode,
        "process_s": round(time.monotonic() - t0, 1),
        "wall_time_s": wall,
        "env_steps": steps,
        "env_steps_per_s": round(rate, 1),
        "evaluations": len(evals),
        "eval_time_s": eval_s,
        "eval_s_per_evaluation": round(per_eval, 4) if per_eval is not None else None,
        "eval_share_measured": round(eval_s / wall, 4),
        "default_run_env_steps": int(run_steps),
        "default_run_s": round(run_s, 1),
        "evaluations_per_default_run": n_default,
        "eval_share_projected": round(n_default * per_eval / run_s, 4) if per_eval is not None else None,
        "eval_returns": [r.get("eval_return_mean") for r in evals],
        "loadavg_before": [round(x, 2) for x in load0],
        "loadavg_1m_mean_during": round(statistics.mean(loads), 2) if loads else None,
    }


def table(results):
    head = "%-24s %6s %9s %6s %7s %9s %9s %8s %8s" % (
        "task",
        "every",
        "env st/s",
        "evals",
        "s/eval",
        "evals/run",
        "run s",
        "share",
        "proj.",
    )
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            "%-24s %6d %9.0f %6d %7s %9d %9.0f %7.2f%% %7s"
            % (
                r["task"],
                r["eval_every_steps"],
                r["env_steps_per_s"],
                r["evaluations"],
                "-" if r["eval_s_per_evaluation"] is None else "%.3f" % r["eval_s_per_evaluation"],
                r["evaluations_per_default_run"],
                r["default_run_s"],
                100 * r["eval_share_measured"],
                "-" if r["eval_share_projected"] is None else "%.2f%%" % (100 * r["eval_share_projected"]),
            )
        )
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS)
    p.add_argument("--time-s", type=float, default=60.0, help="training budget of a native task's run")
    p.add_argument("--mjcf-time-s", type=float, default=90.0, help="of an MJCF task's (>= 2 evaluations)")
    p.add_argument("--out", default=OUT)
    p.add_argument("--fresh", action="store_true", help="replace the JSON instead of merging tasks into it")
    a = p.parse_args()
    start = {"loadavg": list(os.getloadavg()), "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    results = []
    with tempfile.TemporaryDirectory() as root:
        for task in a.tasks:  # one run at a time: timings on a shared 2-core machine
            print("running %s ..." % task, flush=True)
            r = measure(task, a.mjcf_time_s if task in MJCF_TASKS else a.time_s, root)
            results.append(r)
            print(table([r]).splitlines()[-1], flush=True)
    end = {"loadavg": list(os.getloadavg()), "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    session = {
        "command": " ".join(["python", "benchmarks/eval_cost.py"] + sys.argv[1:]),
        "tasks": a.tasks,
        "start": start,
        "end": end,
        "machine": machine(),
    }
    payload = {"benchmark": "eval_cost", "sessions": [], "results": []}
    if os.path.exists(a.out) and not a.fresh:
        payload = json.load(open(a.out))
    payload["sessions"].append(session)
    # a task's earlier rows stay, marked superseded (an older schedule, or measured again)
    rerun = set(a.tasks)
    payload["results"] = [
        dict(r, superseded=r.get("superseded") or r["task"] in rerun) for r in payload["results"]
    ]
    payload["results"] += [dict(r, session=len(payload["sessions"]) - 1, superseded=False) for r in results]
    payload["notes"] = (
        "Per task one `pql-scale train` with its CPU defaults (tasks/<task>.yaml, MJCF tasks on backend=mujoco), "
        "threads=1, a short max_time_s, run one at a time under nice -n 10 on a shared machine. env_steps_per_s "
        "is on the training clock (evaluation excluded); evaluations_per_default_run = the default run's env "
        "steps (its max_env_steps, or max_time_s x env_steps_per_s) // eval.every_steps; eval_share_measured = "
        "eval_time_s / wall_time_s of the short run; eval_share_projected = evaluations_per_default_run x "
        "eval_s_per_evaluation / the default run's training seconds. Each result names its session (machine, "
        "load at start and end); superseded rows are earlier measurements of a task (an older schedule, or measured "
        "again), kept for the record."
    )
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(payload, f, indent=1)
    print("\n" + table([r for r in payload["results"] if not r["superseded"]]))
    print("saved %s" % a.out)


if __name__ == "__main__":
    main()
