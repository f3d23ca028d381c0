"""Populations vs separate runs: K Pendulum seeds as one population against the same seeds as separate runs.

Pendulum's CPU defaults, the same env steps per member, in mode=sync (default) or `--mode trio` (the actor and
the two learner processes; each separate run is three processes too). Populations of 1, 4, 16 and 64 members
(`pql-scale train population.size=K`), each timed as a process (start-up included), with every member's
training-loop time, updates/s and the process's peak resident memory per member; and the 16 seeds as 16 runs
through the local sweep launcher, 2 at a time (the 2-core machine's cores), the way a user would sweep seeds.

    python benchmarks/population_speed.py [--mode sync|trio] [--env-steps 20000] [--sizes 1 4 16 64]
        [--threads 1 2] [--out ...]

The separate runs get 1 torch thread each (2 at a time fill the 2 cores); the population runs once with 1
thread and once with 2 (its one process may use both cores; in the trio each of its processes).
The JSON records the load average before and after each measurement and the largest seen (`max_loadavg`):
timings taken above a load of 1.5 on this 2-core machine are not claims (`quiet` says which).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import save  # noqa: E402
from pql_scaling.experiments import sweep  # noqa: E402

PY = [sys.executable, "-m", "pql_scaling.cli"]


def timed(cmd):
    """(wall seconds, load before, load after, the process's own peak resident memory in KB)."""
    load0 = os.getloadavg()[0]
    t = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (a sweep's: its launcher's)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return wall, load0, os.getloadavg()[0], usage.ru_maxrss


def last_rows(dirs):
    out = []
    for d in dirs:
        with open(os.path.join(d, "metrics.jsonl")) as f:
            out.append(json.loads(f.read().splitlines()[-1]))
    return out


def population(root, k, steps, threads, mode="sync"):
    out = os.path.join(root, "pop%d-t%d" % (k, threads))
    cmd = PY + [
        "train",
        "mode=" + mode,
        "population.size=%d" % k,
        "max_env_steps=%d" % steps,
        "run_dir=" + out,
    ]
    cmd += ["threads=%d" % threads]
    wall, l0, l1, peak_kb = timed(cmd + ["log.live=off"])
    if k == 1:  # a population of one is a single run: its own directory
        members = [out]
    else:
        with open(os.path.join(out, "population.json")) as f:
            members = json.load(f)["members"]
    rows = last_rows(members)
    train_s = rows[0]["wall_time_s"]
    res = {
        "kind": "population",
        "mode": mode,
        "members": k,
        "threads": threads,
        "wall_s": round(wall, 2),
        "train_loop_s": train_s,
        "env_steps_per_member": rows[0]["env_steps"],
        "critic_updates_per_s_per_member": round(rows[0]["critic_updates"] / train_s, 1),
        # the trio: the largest peak of its three processes (wait4's rusage), not their sum
        "peak_rss_mb_per_member": round(peak_kb / 1024 / k, 1) if peak_kb else None,
        "final_return_mean": [r.get("return_mean") for r in rows][:16],
        "loadavg_before": l0,
        "loadavg_after": l1,
    }
    print(res, flush=True)
    shutil.rmtree(out, ignore_errors=True)
    return res


def separate(root, k, steps, parallel, mode="sync"):
    out = os.path.join(root, "sweep%d" % k)
    spec = {
        "name": "seeds",
        "out": out,
        "base": {"task": "pendulum", "mode": mode, "max_env_steps": steps},
        "grid": {"task": ["pendulum"]},
        "seeds": k,
        "launcher": {"kind": "local", "local": {"runs_per_device": parallel, "threads_per_run": 1}},
    }
    path = out + ".yaml"
    with open(path, "w") as f:
        yaml.safe_dump(spec, f, sort_keys=False)
    wall, l0, l1, _ = timed(PY + ["sweep", path, "--live", "off"])
    rows = sweep.status(sweep.load_spec(path))
    assert all(r["state"] == "completed" for r in rows), [(r["name"], r["state"]) for r in rows]
    res = {
        "kind": "separate runs (local sweep launcher)",
        "mode": mode,
        "runs": len(rows),
        "parallel": parallel,
        "wall_s": round(wall, 2),
        "sum_train_loop_s": round(sum(r["wall_time_s"] for r in rows), 1),
        "loadavg_before": l0,
        "loadavg_after": l1,
    }
    print(res, flush=True)
    shutil.rmtree(out, ignore_errors=True)
    return res


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["sync", "trio"], default="sync")
    p.add_argument("--env-steps", type=int, default=20000)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--separate", type=int, default=16)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2]
    )  # torch threads of the population's process
    p.add_argument("--out", default=None)  # default: population_speed_cpu.json, or _trio_cpu.json
    a = p.parse_args()
    suffix = "" if a.mode == "sync" else "_" + a.mode
    a.out = a.out or "benchmarks/results/population_speed%s_cpu.json" % suffix
    root = tempfile.mkdtemp(prefix="pop-bench-")
    results = [separate(root, a.separate, a.env_steps, a.parallel, a.mode)] if a.separate else []
    results += [population(root, k, a.env_steps, t, a.mode) for k in a.sizes for t in a.threads]
    sep = results[0]["wall_s"] if a.separate else None
    pops = [r for r in results if r["kind"] == "population"]
    same = [r for r in pops if r["members"] == a.separate]
    load = max(max(r["loadavg_before"], r["loadavg_after"]) for r in results)
    summary = {
        "mode": a.mode,
        "separate_wall_s": sep,
        "population_wall_s": {
            "%d members, %d threads" % (r["members"], r["threads"]): r["wall_s"] for r in pops
        },
        "population_vs_separate": round(min(r["wall_s"] for r in same) / sep, 3) if same and sep else None,
        "target": "population of %d <= 0.5 x the separate runs' wall time (issue 21)" % a.separate,
        "max_loadavg": load,
        "quiet": load <= 1.5,  # else other work shared the 2 cores: the timings are not claims
    }
    print(summary)
    save(
        a.out,
        {
            "command": "python benchmarks/population_speed.py " + " ".join(sys.argv[1:]),
            "env_steps_per_member": a.env_steps,
            "task": "pendulum CPU defaults (tasks/pendulum.yaml), mode=%s" % a.mode,
            "summary": summary,
            "results": results,
        },
    )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
