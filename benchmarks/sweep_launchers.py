"""Sweep launchers vs the same runs started by hand, at the same parallelism.

16 short Pendulum runs (4 UTDs x 4 seeds), 2 at a time, 1 torch thread each:
  hand   the runs' `pql-scale train` commands (from `pql-scale sweep --dry-run`) through `xargs -P 2`
  local  `pql-scale sweep SPEC` (the local pool)
  ray    `pql-scale sweep SPEC --launcher ray` (starts a local Ray cluster, one task per run)
Repetitions interleave hand and local (ABAB...) so load drift on a shared machine cancels; the load
average is recorded around every repetition. Throughput = env steps of all runs / wall seconds.
Launcher overhead per run = (T_launcher - T_hand) * parallelism / runs (slot-seconds each run costs extra).

    python benchmarks/sweep_launchers.py [--reps 2] [--ray] [--out benchmarks/results/sweep_launchers_cpu.json]
"""

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import save  # noqa: E402
from pql_scaling.experiments import sweep  # noqa: E402

BASE = {
    "task": "pendulum",
    "mode": "sync",
    "num_envs": 16,
    "max_env_steps": 1600,
    "algo.batch_size": 64,
    "net": {"actor_hidden": [64, 64], "critic_hidden": [64, 64]},
    "log.every_steps": 20,
}


def spec(out, parallel):
    return {
        "name": "bench",
        "out": out,
        "base": BASE,
        "grid": {"utd": [0.0625, 0.125, 0.25, 0.5]},
        "seeds": 4,
        "launcher": {"kind": "local", "local": {"runs_per_device": parallel, "threads_per_run": 1}},
    }


def timed(cmd, env=None):
    load0 = os.getloadavg()
    t = time.monotonic()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - t, load0, os.getloadavg()


def one(kind, root, rep, parallel):
    out = os.path.join(root, "%s%d" % (kind, rep))
    d = spec(out, parallel)
    path = out + ".yaml"
    with open(path, "w") as f:
        yaml.safe_dump(d, f, sort_keys=False)
    py = [sys.executable, "-m", "pql_scaling.cli"]
    if kind == "hand":
        runs = sweep.expand(sweep.load_spec(d))
        with open(out + ".cmds", "w") as f:  # one shell command per line, as a user would paste them
            f.write("".join(shlex.join(py + ["train", "threads=1"] + r.overrides) + "\n" for r in runs))
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        cmd = [
            "sh",
            "-c",
            "xargs -d '\\n' -P %d -n 1 sh -c 'eval \"$1\"' _ < %s" % (parallel, shlex.quote(out + ".cmds")),
        ]
        wall, l0, l1 = timed(cmd, env)
    else:
        wall, l0, l1 = timed(
            py + ["sweep", path, "--live", "off"] + (["--launcher", "ray"] if kind == "ray" else [])
        )
    rows = sweep.status(sweep.load_spec(path))
    assert all(r["state"] == "completed" for r in rows), [(r["name"], r["state"]) for r in rows]
    steps = sum(r["env_steps"] for r in rows)
    train_s = sum(r["wall_time_s"] for r in rows)  # time inside training loops, as the runs logged it
    res = {
        "kind": kind,
        "rep": rep,
        "runs": len(rows),
        "wall_s": round(wall, 2),
        "env_steps": steps,
        "env_steps_per_s": round(steps / wall, 1),
        "runs_per_min": round(60 * len(rows) / wall, 2),
        "sum_train_loop_s": round(train_s, 1),
        "loadavg_before": l0,
        "loadavg_after": l1,
    }
    print(res, flush=True)
    shutil.rmtree(out, ignore_errors=True)
    return res


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--ray", action="store_true")
    p.add_argument("--out", default="benchmarks/results/sweep_launchers_cpu.json")
    a = p.parse_args()
    root = tempfile.mkdtemp(prefix="sweep-bench-")
    results = []
    for rep in range(a.reps):  # ABAB: hand, local, hand, local ...
        for kind in ("hand", "local"):
            results.append(one(kind, root, rep, a.parallel))
    if a.ray:
        results.append(one("ray", root, 0, a.parallel))

    def mean(kind, f="wall_s"):
        vals = [r[f] for r in results if r["kind"] == kind]
        return sum(vals) / len(vals)

    n = results[0]["runs"]
    summary = {}
    for kind in ("hand", "local") + (("ray",) if a.ray else ()):
        summary[kind + "_wall_s"] = round(mean(kind), 2)
        # slot-seconds per run outside the training loop (process start-up, imports, launcher): less
        # sensitive to load drift than wall-clock differences, since the runs log their own loop time
        summary[kind + "_outside_train_loop_per_run_s"] = round(
            (mean(kind) - mean(kind, "sum_train_loop_s") / a.parallel) * a.parallel / n, 2
        )
        if kind != "hand":
            summary[kind + "_vs_hand_throughput"] = round(mean("hand") / mean(kind), 3)
            summary[kind + "_overhead_per_run_s"] = round((mean(kind) - mean("hand")) * a.parallel / n, 2)
    print(summary)
    cmd = "python benchmarks/sweep_launchers.py " + " ".join(sys.argv[1:])
    save(
        a.out,
        {
            "command": cmd,
            "parallel": a.parallel,
            "spec_base": BASE,
            "summary": summary,
            "results": results,
            "note": "shared 2-core machine: other helpers' jobs ran at the same time (see the load averages); "
            "hand and local interleaved so drift cancels",
        },
    )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
