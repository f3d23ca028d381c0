"""Soak run (not in CI): one long trio run, sampling every process's resident memory, open files, /dev/shm and the
run directory's size, to show memory and files stay flat (no leak per step, per log point or per checkpoint).

    python benchmarks/soak.py --seconds 3600 --out benchmarks/results/soak_halfcheetah.json -- \
        task=HalfCheetah backend=mujoco algo.buffer_size=100000

Prints one line per sample. The JSON holds the samples and, for the total and for each process (by role), the growth
of resident memory from the first quarter of the run to the last: a leak shows as steady growth, allocator warm-up as a
step at the start. The replay ring is the one thing that should grow, until it is full: pass a buffer_size that fills
within the first quarter, else its pages (shared memory in the trio on CPU) read as growth. Private memory (RssAnon)
is reported apart from shared memory (RssShmem) for that reason. At the end: files the run left in /dev/shm, processes
left alive, and the run's final status."""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, save  # noqa: E402
from drills import ROOT, descendants  # noqa: E402

FIELDS = {"VmRSS": "rss", "RssAnon": "anon", "RssShmem": "shmem", "RssFile": "file"}


def proc_memory(pid):
    """Resident memory of one process by kind (bytes) and its open file descriptors; {} once it is gone."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in FIELDS:
                    out[FIELDS[key]] = int(line.split()[1]) * 1024
        out["fds"] = len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return {}
    return out if "rss" in out else {}  # a zombie has no memory lines


def role(pid, root, run_dir):
    """'actor' for the run's own process (the trio's actor), a learner by the pid train.log gives it
    ("trio: v_learner is pid N"), else what its command line names."""
    if pid == root:
        return "actor"
    try:
        with open(os.path.join(run_dir, "train.log")) as f:
            for m in re.finditer(r"trio: (\w+) is pid (\d+)", f.read()):
                if int(m.group(2)) == pid:
                    return m.group(1)
    except OSError:
        pass
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        cmd = ""
    return "resource_tracker" if "resource_tracker" in cmd else "pid%d" % pid


def dir_size(path):
    total = 0
    for base, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(base, name))
            except OSError:
                pass
    return total


def shm_of(pids):
    """The /dev/shm files the processes map or hold open: {path: size} (the run's own shared memory, apart from
    any other run's on the same machine)."""
    paths = set()
    for pid in pids:
        try:
            with open("/proc/%d/maps" % pid) as f:
                paths.update(
                    line.split(None, 5)[5].split(" (deleted)")[0].strip() for line in f if "/dev/shm/" in line
                )
            for fd in os.listdir("/proc/%d/fd" % pid):
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                if target.startswith("/dev/shm/"):
                    paths.add(target.split(" (deleted)")[0])
        except OSError:
            pass
    out = {}
    for path in paths:
        try:
            out[path] = os.stat(path).st_blocks * 512  # allocated, not nominal, size
        except OSError:
            pass  # unlinked already (mapped, deleted): freed when the last mapping goes
    return out


def last_env_steps(run_dir):
    try:
        with open(os.path.join(run_dir, "metrics.jsonl"), "rb") as f:
            f.seek(max(os.fstat(f.fileno()).st_size - 4096, 0))
            return json.loads(f.read().splitlines()[-1]).get("env_steps")
    except (OSError, ValueError, IndexError):
        return None


def growth(values):
    """Mean of the last quarter over the first quarter, minus 1 (None when there is too little to tell)."""
    q = len(values) // 4
    if q < 1:
        return None
    first, last = sum(values[:q]) / q, sum(values[-q:]) / q
    return (last - first) / first if first else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3600, help="the run's max_time_s (training clock)")
    ap.add_argument("--every", type=float, default=10, help="seconds between samples")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "soak.json"))
    ap.add_argument("train_args", nargs="*")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="soak-")
    args = [
        "mode=trio",
        "log.live=off",
        "max_env_steps=null",
        "max_time_s=%g" % a.seconds,
        "log.checkpoint_every_s=120",
        "run_dir=" + d,
    ] + a.train_args
    p = subprocess.Popen(
        [sys.executable, "-m", "pql_scaling.cli", "train"] + args,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    samples, roles, shm_seen, t0 = [], {}, set(), time.monotonic()
    while p.poll() is None:
        time.sleep(a.every)
        procs = sorted(descendants(p.pid) | {p.pid})
        per = {}
        for q in procs:
            m = proc_memory(q)
            if m:
                if q not in roles or roles[q].startswith("pid"):
                    roles[q] = role(q, p.pid, d)
                per[roles[q]] = m
        if "actor" not in per:
            break  # the run has exited
        shm = shm_of(procs)
        shm_seen.update(shm)
        s = {
            "t": round(time.monotonic() - t0, 1),
            "rss_total": sum(m.get("rss", 0) for m in per.values()),
            "anon_total": sum(m.get("anon", 0) for m in per.values()),
            "fds_total": sum(m.get("fds", 0) for m in per.values()),
            "procs": per,
            "shm_bytes": sum(shm.values()),
            "shm_files": len(shm),
            "run_dir_bytes": dir_size(d),
            "env_steps": last_env_steps(d),
            "loadavg_1m": os.getloadavg()[0],
        }
        samples.append(s)
        print(json.dumps({k: v for k, v in s.items() if k != "procs"}), flush=True)
    try:
        p.wait(timeout=300)  # the final checkpoint and the learners' shutdown
    except subprocess.TimeoutExpired:
        pass
    time.sleep(2)  # the learners' own exit and the resource tracker's clean-up
    left_alive = sorted(descendants(p.pid))
    leaked_shm = sorted(f for f in shm_seen if os.path.exists(f))
    try:
        with open(os.path.join(d, "status.json")) as f:
            final_status = json.load(f)
    except (OSError, ValueError) as e:
        final_status = {"unreadable": repr(e)}
    names = sorted({r for s in samples for r in s["procs"]})
    per_role = {
        r: {
            kind: growth([s["procs"][r].get(kind, 0) for s in samples if r in s["procs"]])
            for kind in ("rss", "anon", "shmem", "fds")
        }
        for r in names
    }
    save(
        a.out,
        {
            "command": " ".join(sys.argv),
            "machine": machine(),
            "train_args": args,
            "exit_code": p.returncode,
            "run_dir": d,
            "final_status": final_status,
            "wall_s": round(time.monotonic() - t0, 1),
            "growth_first_to_last_quarter": {
                "rss_total": growth([s["rss_total"] for s in samples]),
                "anon_total": growth([s["anon_total"] for s in samples]),
                "fds_total": growth([s["fds_total"] for s in samples]),
                "shm_bytes": growth([s["shm_bytes"] for s in samples]),
                "run_dir_bytes": growth([s["run_dir_bytes"] for s in samples]),
                "per_process": per_role,
            },
            "shm_files_seen": len(shm_seen),
            "leaked_shm_files": leaked_shm,
            "processes_left_alive": left_alive,
            "loadavg_1m_range": [min(s["loadavg_1m"] for s in samples), max(s["loadavg_1m"] for s in samples)]
            if samples
            else None,
            "samples": samples,
        },
    )


if __name__ == "__main__":
    main()
