"""Soak run (not in CI): one long trio run, sampling every process's resident memory and /dev/shm use, to show
memory stays flat (no leak per step, per log point or per checkpoint).

    python benchmarks/soak.py --seconds 3600 --out benchmarks/results/soak.json -- task=HalfCheetah backend=mujoco

Prints one line per sample; the JSON holds the samples and the growth of the total RSS from the first quarter
of the run to the last (a leak shows as steady growth; allocator warm-up as a step at the start)."""

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import save  # noqa: E402
from drills import ROOT, descendants  # noqa: E402


def rss(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3600)
    ap.add_argument("--every", type=float, default=10)
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "soak.json"))
    ap.add_argument("train_args", nargs="*")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="soak-")
    args = [
        "mode=trio",
        "log.live=off",
        "max_env_steps=null",
        "max_time_s=%g" % a.seconds,
        "run_dir=" + d,
    ] + a.train_args
    p = subprocess.Popen(
        [sys.executable, "-m", "pql_scaling.cli", "train"] + args,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    samples, t0 = [], time.monotonic()
    while p.poll() is None:
        time.sleep(a.every)
        procs = descendants(p.pid) | {p.pid}
        st = os.statvfs("/dev/shm")
        s = {
            "t": round(time.monotonic() - t0, 1),
            "rss_total": sum(rss(q) for q in procs),
            "procs": len(procs),
            "shm_used": (st.f_blocks - st.f_bfree) * st.f_frsize,
            "loadavg_1m": os.getloadavg()[0],
        }
        samples.append(s)
        print(s, flush=True)
    q = max(len(samples) // 4, 1)
    first = sum(s["rss_total"] for s in samples[:q]) / q if samples else 0
    last = sum(s["rss_total"] for s in samples[-q:]) / q if samples else 0
    save(
        a.out,
        {
            "command": " ".join(sys.argv),
            "train_args": args,
            "exit_code": p.returncode,
            "run_dir": d,
            "rss_growth_first_to_last_quarter": (last - first) / first if first else None,
            "samples": samples,
        },
    )


if __name__ == "__main__":
    main()
