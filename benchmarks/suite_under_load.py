"""The test suite run N times in a row beside CPU hogs (not in CI): passes, failures, flakes and the time of each run.

    python benchmarks/suite_under_load.py --runs 5 --hogs 2 --repo /tmp/suite-clone \
        --out benchmarks/results/suite_under_load_cpu.json

Runs README.md's test command (`python -m pytest -q tests`) in --repo (a clean clone of the commit under test; its
own code is imported, PYTHONPATH points at it) with --hogs busy-loop processes beside it. `--hogs-after PID,...`
starts the busy loops only once those processes have exited: while they live they are the load (used to run the
first runs beside two soak runs, which keep both cores busy themselves). The JSON is rewritten after every run, so
a killed benchmark keeps what it measured; `--append` keeps the runs already in --out (each run names its commit)
and counts them in the totals. A failure that does not repeat in the other runs is a flake."""

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import commit, machine, save  # noqa: E402

SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?|warnings?|deselected)")


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    with open("/proc/%d/stat" % pid) as f:  # a zombie is not load
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def hog():
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def parse(output):
    """pytest's summary counts and the ids of the tests that failed or errored."""
    tail = output.strip().splitlines()[-1] if output.strip() else ""
    counts = {}
    for n, kind in SUMMARY.findall(tail):
        kind = {"error": "errors", "warning": "warnings"}.get(kind, kind)
        counts[kind] = int(n)
    bad = sorted(set(re.findall(r"^(?:FAILED|ERROR) (\S+)", output, flags=re.M)))
    return counts, bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--hogs", type=int, default=2)
    ap.add_argument("--hogs-after", default="", help="comma-separated pids: busy loops start once these exit")
    ap.add_argument("--repo", required=True, help="a clean clone of the commit under test")
    ap.add_argument("--out", required=True)
    ap.add_argument("--append", action="store_true", help="keep the runs already saved in --out")
    a = ap.parse_args()
    repo = os.path.abspath(a.repo)
    sha = commit(repo)
    waits = [int(p) for p in a.hogs_after.split(",") if p]
    hogs, runs, stop = [], [], threading.Event()
    commands = []
    if a.append and os.path.exists(a.out):
        with open(a.out) as f:
            old = json.load(f)
        commands = old.get("commands", [old["command"]] if "command" in old else [])
        runs = [dict(r, commit=r.get("commit", old.get("commit"))) for r in old.get("runs", [])]
    commands.append(" ".join(sys.argv))
    load, lock = [], threading.Lock()

    def keep_hogs():  # the busy loops come in once the processes named by --hogs-after are gone
        while not stop.is_set():
            if not any(alive(p) for p in waits) and len(hogs) < a.hogs:
                hogs.extend(hog() for _ in range(a.hogs - len(hogs)))
            with lock:
                load.append(os.getloadavg()[0])
            stop.wait(10)

    watcher = threading.Thread(target=keep_hogs, daemon=True)
    watcher.start()
    try:
        for i in range(a.runs):
            with lock:
                del load[:]
            beside = {"busy_loops": len(hogs), "soak_pids_alive": [p for p in waits if alive(p)]}
            t0 = time.monotonic()
            r = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "tests"],
                cwd=repo,
                env=dict(os.environ, PYTHONPATH=repo),
                capture_output=True,
                text=True,
            )
            counts, bad = parse(r.stdout)
            if r.returncode:  # pytest's failure report beside the JSON: what failed and why
                report = r.stdout[max(0, r.stdout.find("= FAILURES =") - 40) :]
                with open("%s.run%d.log" % (os.path.splitext(a.out)[0], len(runs) + 1), "w") as f:
                    f.write(report + r.stderr[-20000:])
            with lock:
                loads = list(load)
            runs.append(
                {
                    "run": len(runs) + 1,
                    "commit": sha,
                    "rc": r.returncode,
                    "wall_s": round(time.monotonic() - t0, 1),
                    "counts": counts,
                    "failed": bad,
                    "beside_at_start": beside,
                    "beside_at_end": {
                        "busy_loops": len(hogs),
                        "soak_pids_alive": [p for p in waits if alive(p)],
                    },
                    "loadavg_1m_mean": round(sum(loads) / len(loads), 2) if loads else None,
                    "loadavg_1m_range": [round(min(loads), 2), round(max(loads), 2)] if loads else None,
                    "tail": r.stdout.strip().splitlines()[-1:] + r.stderr.strip().splitlines()[-3:],
                }
            )
            print(runs[-1], flush=True)
            failing = sorted({t for x in runs for t in x["failed"]})
            save(
                a.out,
                {
                    "commands": commands,
                    "machine": machine(),
                    "commits": sorted({x["commit"] for x in runs}),
                    "runs": runs,
                    "totals": {
                        "runs": len(runs),
                        "runs_green": sum(x["rc"] == 0 for x in runs),
                        "failing_tests": {t: sum(t in x["failed"] for x in runs) for t in failing},
                        "flakes": sorted(
                            t for t in failing if 0 < sum(t in x["failed"] for x in runs) < len(runs)
                        ),
                    },
                },
            )
    finally:
        stop.set()
        for h in hogs:
            h.kill()


if __name__ == "__main__":
    main()
