"""Return vs wall-clock for every native task with the defaults a new user gets (CPU), several seeds.

Each run is a real `pql-scale train task=T seed=S` process, at most `--parallel` at a time; times are on
the training clock (wall_time_s, max_time_s: from the first actor step) with start-up (startup_s) apart.
While it runs we sample the memory of its whole process tree (PSS, so the replay shared by the trio's three processes is
counted once) and the load average. Saved: each run's curve, its time and env steps to the task's
documented solved return (tasks.solved_return), start-up, process wall time against max_time_s, peak
memory, and the CPU seconds the run had used when it crossed (a load-independent cost: on a shared
machine wall-clock times scale with the CPU share a run got); per task the median over seeds; and one
PNG with every curve.

    python benchmarks/native_curves.py --out benchmarks/results/native_curves_cpu.json
    python benchmarks/native_curves.py --tasks mountaincar --seeds 0 --stop threshold -- max_time_s=120

`--stop threshold` ends each run at its first log point at or above the threshold (target_return): a
cheaper measurement of the time to it, with curves that end there. Everything after `--` is passed to
every run as extra overrides (then they are no longer the defaults; the JSON says so).
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import first_crossing, save  # noqa: E402

import tasks  # noqa: E402


def tree_pids(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def tree_cpu_s(pid):
    """User + system CPU seconds of a process and its live descendants (plus those they reaped)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for p in tree_pids(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def tree_pss_mb(pid):
    """Proportional set size of a process and its descendants (shared pages split between sharers), MB."""
    total = 0
    for p in tree_pids(pid):
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                total += next(int(l.split()[1]) for l in f if l.startswith("Pss:"))
        except (OSError, StopIteration):
            pass
    return total / 1024


class Run:
    def __init__(self, task, seed, extra, stop, root, cap_s=None):
        self.task, self.seed, self.threshold = task, seed, tasks.solved_return(task)
        self.run_dir = os.path.join(root, "%s-s%d" % (task, seed))
        self.args = ["task=" + task, "seed=%d" % seed, "log.live=off", "run_dir=" + self.run_dir] + list(
            extra
        )
        if stop == "threshold":
            self.args.append("target_return=%r" % self.threshold)
        if cap_s:  # a shorter budget than the task's own, to bound the benchmark's length (the JSON says so)
            from pql_scaling import config

            budget = config.load(["task=" + task]).max_time_s
            if not budget or budget > cap_s:
                self.args.append("max_time_s=%r" % float(cap_s))
        self.peak_mb, self.loads, self.cpu = 0.0, [], []  # cpu: (seconds since start, CPU seconds used)

    def start(self):
        self.load_before = os.getloadavg()[0]
        self.t0 = time.monotonic()
        self.log = open(self.run_dir + ".log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pql_scaling.cli", "train"] + self.args,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        print("started %s seed %d (pid %d)" % (self.task, self.seed, self.proc.pid), flush=True)

    def poll(self):
        """Sample memory and load; True once the process has ended."""
        if self.proc.poll() is not None:
            if not hasattr(self, "process_s"):
                self.process_s = time.monotonic() - self.t0
                self.log.close()
            return True
        self.peak_mb = max(self.peak_mb, tree_pss_mb(self.proc.pid))
        self.cpu.append((time.monotonic() - self.t0, tree_cpu_s(self.proc.pid)))
        self.loads.append(os.getloadavg()[0])
        return False

    def result(self):
        rows = []
        if os.path.exists(os.path.join(self.run_dir, "metrics.jsonl")):
            rows = [json.loads(l) for l in open(os.path.join(self.run_dir, "metrics.jsonl"))]
        facts = json.load(open(os.path.join(self.run_dir, "run.json"))) if rows else {}
        cfg_max_time = None
        if os.path.exists(os.path.join(self.run_dir, "config.yaml")):
            import yaml

            cfg_max_time = yaml.safe_load(open(os.path.join(self.run_dir, "config.yaml")))["max_time_s"]
        t_hit, steps_hit = first_crossing(self.run_dir, self.threshold) if rows else (None, None)
        curve = [
            [r["wall_time_s"], r["env_steps"], r["return_mean"]] for r in rows if r["return_mean"] is not None
        ]
        cpu_hit = None
        if t_hit is not None and self.cpu:  # CPU seconds spent by the time of the crossing (load-independent)
            cpu_hit = next((c for w, c in self.cpu if w >= t_hit), self.cpu[-1][1])
        status = json.load(open(os.path.join(self.run_dir, "status.json"))) if rows else {"status": "no run"}
        return {
            "task": self.task,
            "seed": self.seed,
            "threshold": self.threshold,
            "exit_code": self.proc.returncode,
            "status": status.get("status"),
            "stop_reason": status.get("reason"),
            "time_to_threshold_s": t_hit,
            "env_steps_to_threshold": steps_hit,
            "cpu_s_to_threshold": cpu_hit,
            "cpu_s_total": self.cpu[-1][1] if self.cpu else None,
            "startup_s": facts.get("startup_s"),
            "defaults": facts.get("defaults"),
            "max_time_s": cfg_max_time,
            "clock_starts_at": facts.get("clock_starts_at"),
            "process_wall_s": round(self.process_s, 2),
            "last_wall_time_s": rows[-1]["wall_time_s"] if rows else None,
            "env_steps": rows[-1]["env_steps"] if rows else None,
            "critic_updates": rows[-1]["critic_updates"] if rows else None,
            "final_return_mean": curve[-1][2] if curve else None,
            "best_return_mean": max(c[2] for c in curve) if curve else None,
            "peak_memory_mb": round(self.peak_mb, 1),
            "loadavg_1m_before": round(self.load_before, 2),
            "loadavg_1m_mean_during": round(statistics.mean(self.loads), 2) if self.loads else None,
            "args": self.args[:2] + self.args[4:],
            "config": {
                k: facts.get(k)
                for k in ("num_envs", "utd", "batch_size", "critic_lr", "critic_params", "mode", "algo")
            },
            "curve_wall_s_env_steps_return": curve,
        }


def normalise(r):
    """Put every run on the training clock (wall_time_s from the first actor step, start-up apart).

    Runs recorded before the clock moved (no clock_starts_at in this file, or 'process start ...' in run.json)
    counted wall_time_s from the process start: subtract their startup_s."""
    if r.get("normalised"):
        return r
    old = r.get("clock_starts_at") is None or str(r.get("clock_starts_at")).startswith("process start")
    shift = (r.get("startup_s") or 0.0) if old else 0.0
    t = r["time_to_threshold_s"]
    r["time_to_threshold_s"] = None if t is None else round(t - shift, 2)
    r["time_to_threshold_incl_startup_s"] = (
        None if t is None else round(t - shift + (r.get("startup_s") or 0.0), 2)
    )
    r["curve_wall_s_env_steps_return"] = [
        [round(w - shift, 3), e, ret] for w, e, ret in r["curve_wall_s_env_steps_return"]
    ]
    if r.get("last_wall_time_s") is not None:
        r["last_wall_time_s"] = round(r["last_wall_time_s"] - shift, 3)
    r["clock"] = "training (from the first actor step; startup_s apart)"
    r["normalised"] = True
    return r


def summarise(results):
    results = [normalise(r) for r in results]
    out = {}
    for task in dict.fromkeys(r["task"] for r in results):
        rs = [r for r in results if r["task"] == task]
        times = [r["time_to_threshold_s"] for r in rs]
        reached = [t for t in times if t is not None]
        # the median over seeds counts a seed that never reached as +inf: it is only defined if most reached
        med = statistics.median(t if t is not None else float("inf") for t in times)
        out[task] = {
            "threshold": rs[0]["threshold"],
            "seeds": len(rs),
            "reached": len(reached),
            "median_time_to_threshold_s": None if med == float("inf") else round(med, 1),
            "median_time_to_threshold_incl_startup_s": None
            if med == float("inf")
            else round(
                statistics.median(
                    r["time_to_threshold_incl_startup_s"]
                    if r["time_to_threshold_incl_startup_s"] is not None
                    else float("inf")
                    for r in rs
                ),
                1,
            ),
            "times_to_threshold_s": times,
            "cpu_s_to_threshold": [r["cpu_s_to_threshold"] for r in rs],
            "median_env_steps_to_threshold": statistics.median(r["env_steps_to_threshold"] for r in rs)
            if len(reached) == len(rs)
            else None,
            "median_final_return": statistics.median(
                r["final_return_mean"] for r in rs if r["final_return_mean"] is not None
            )
            if any(r["final_return_mean"] is not None for r in rs)
            else None,
            "peak_memory_mb_max": max(r["peak_memory_mb"] for r in rs),
            "median_startup_s": statistics.median(r["startup_s"] for r in rs if r["startup_s"] is not None)
            if any(r["startup_s"] is not None for r in rs)
            else None,
            "loadavg_1m_mean_during": round(statistics.mean(r["loadavg_1m_mean_during"] or 0 for r in rs), 2),
        }
    return out


def markdown(summary):
    """The README's task table: threshold, seeds that reached it, median wall-clock and CPU seconds to it."""
    lines = [
        "| task | solved return | reached | median time to it (training) | median start-up | CPU s to it (per seed) "
        "| peak memory | load during |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task, s in summary.items():
        med = (
            "not reached"
            if s["median_time_to_threshold_s"] is None
            else "%.0f s" % s["median_time_to_threshold_s"]
        )
        cpu = ", ".join("-" if c is None else "%.0f" % c for c in s["cpu_s_to_threshold"])
        lines.append(
            "| `%s` | %g | %d/%d | %s | %.0f s | %s | %.0f MB | %.0f |"
            % (
                task,
                s["threshold"],
                s["reached"],
                s["seeds"],
                med,
                s["median_startup_s"] or 0,
                cpu,
                s["peak_memory_mb_max"],
                s["loadavg_1m_mean_during"],
            )
        )
    return "\n".join(lines)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["task"] for r in results))
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.4), squeeze=False)
    for ax, task in zip(axes[0], names):
        for r in (r for r in results if r["task"] == task):
            c = r["curve_wall_s_env_steps_return"]
            ax.plot(
                [p[0] / 60 for p in c],
                [p[2] for p in c],
                lw=1,
                marker="o",
                ms=2.5,
                label="seed %d" % r["seed"],
            )
        ax.axhline(tasks.solved_return(task), color="k", ls="--", lw=0.8, label="solved")
        ax.set_title(task, fontsize=10)
        load = [
            r["loadavg_1m_mean_during"]
            for r in results
            if r["task"] == task and r.get("loadavg_1m_mean_during") is not None
        ]
        ax.set_xlabel(
            "training wall-clock (min), %d-core CPU%s"
            % (os.cpu_count() or 0, ", load %.0f-%.0f" % (min(load), max(load)) if load else "")
        )
    axes[0][0].set_ylabel("mean episode return")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print("saved %s" % path)


def run_some(todo, running, done, parallel):
    while todo and len(running) < parallel:
        todo[0].start()
        running.append(todo.pop(0))
    time.sleep(1.0)
    for r in [r for r in running if r.poll()]:
        running.remove(r)
        done.append(r.result())
        d = done[-1]
        print(
            "%s seed %d: %s, threshold %s reached at %s s (%s env steps, %s CPU s), final return %s, peak %.0f MB, "
            "load %s"
            % (
                d["task"],
                d["seed"],
                d["status"],
                d["threshold"],
                d["time_to_threshold_s"],
                d["env_steps_to_threshold"],
                d["cpu_s_to_threshold"],
                d["final_return_mean"],
                d["peak_memory_mb"],
                d["loadavg_1m_mean_during"],
            ),
            flush=True,
        )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", nargs="*", default=list(tasks.NATIVE_TASKS))
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--parallel", type=int, default=2, help="runs at a time")
    p.add_argument("--stop", choices=("budget", "threshold"), default="budget")
    p.add_argument("--cap-s", type=float, default=None, help="cap every run's max_time_s at this")
    p.add_argument("--out", default="benchmarks/results/native_curves_cpu.json")
    p.add_argument("--png", default=None, help="default: --out with .png")
    p.add_argument("--root", default=None, help="where the run directories go (default: a temporary folder)")
    p.add_argument(
        "--merge",
        nargs="*",
        default=None,
        metavar="JSON",
        help="run nothing: combine the runs of earlier outputs into --out and its PNG",
    )
    p.add_argument(
        "--merge-roots",
        nargs="*",
        default=(),
        metavar="DIR",
        help="with --merge: the run folders of those outputs, to read each run's clock from its run.json",
    )
    p.add_argument("extra", nargs="*", help="overrides for every run (after --)")
    args = p.parse_args()
    if args.merge:
        parts = [json.load(open(f)) for f in args.merge]
        for part, root in zip(parts, args.merge_roots):
            for r in part["runs"]:
                facts = os.path.join(root, "%s-s%d" % (r["task"], r["seed"]), "run.json")
                if r.get("clock_starts_at") is None and os.path.exists(facts):
                    r["clock_starts_at"] = json.load(open(facts)).get("clock_starts_at")
        done = [r for part in parts for r in part["runs"]]
        origins = [
            o
            for part in parts
            for o in part.get("merged_from")
            or [
                {
                    k: part.get(k)
                    for k in ("command", "stop", "cap_s", "extra_overrides", "total_s", "machine")
                }
            ]
        ]
        save(
            args.out,
            {
                "benchmark": "native_curves",
                "merged_from": origins,
                "notes": parts[0].get("notes"),
                "summary": summarise(done),
                "runs": done,
            },
        )
        plot(done, args.png or os.path.splitext(args.out)[0] + ".png")
        print(markdown(summarise(done)))
        return
    root = args.root or tempfile.mkdtemp(prefix="native_curves-")
    os.makedirs(root, exist_ok=True)
    todo = [Run(t, s, args.extra, args.stop, root, args.cap_s) for t in args.tasks for s in args.seeds]
    running, done = [], []
    t0 = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below on `kill` too
    try:
        while todo or running:
            run_some(todo, running, done, args.parallel)
    finally:
        for (
            r
        ) in running:  # a killed benchmark leaves no training behind (SIGTERM: the run checkpoints and stops)
            r.proc.terminate()
            r.proc.wait()
    summary = summarise(done)

    for task, s in summary.items():
        print(
            "%-24s threshold %7.1f  reached %d/%d  median time %s s  peak %.0f MB"
            % (
                task,
                s["threshold"],
                s["reached"],
                s["seeds"],
                s["median_time_to_threshold_s"],
                s["peak_memory_mb_max"],
            )
        )
    save(
        args.out,
        {
            "benchmark": "native_curves",
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
            "stop": args.stop,
            "cap_s": args.cap_s,
            "extra_overrides": args.extra,
            "defaults_only": not args.extra,
            "parallel_runs": args.parallel,
            "total_s": round(time.monotonic() - t0, 1),
            "loadavg_at_end": os.getloadavg(),
            "notes": "Each run is a `pql-scale train` process with the task's CPU defaults (tasks/<task>.yaml); "
            "times are on the training clock, start-up (startup_s) apart. The machine (2 cores) was shared "
            "with other sessions' jobs: see the load averages per run; times scale with the CPU share a run got.",
            "summary": summary,
            "runs": done,
        },
    )
    plot(done, args.png or os.path.splitext(args.out)[0] + ".png")
    print(markdown(summary))


if __name__ == "__main__":
    main()
