"""The SLURM jobs a sweep submitted and which of them SLURM still holds, so that a rerun (after its launcher
died, or beside a launcher still running) never submits a run again while that run's job is pending or
running.

`<out>/slurm_jobs.json` maps each run's name to the job ids submitted for it, in order; it is written (atomically)
as soon as sbatch returns. Submitting is one step under `<out>/.slurm_submit.lock` (fcntl flock): ask squeue which
recorded jobs it still holds, submit the runs that have none, record their ids. Two launchers therefore never
both submit a run, and a launcher killed outside that step loses no id. squeue is the authority for jobs not yet
finished (pending, running, completing, suspended, requeued); a job it no longer lists has ended, and the run
directory says how (completed, stopped by a preemption, failed), so the run is submitted again unless it is
completed. When squeue cannot answer (SLURM down), nothing is submitted.
"""

import contextlib
import fcntl
import getpass
import os
import subprocess

from pql_scaling.rundir.disk import write_json_atomic

JOBS_NAME = "slurm_jobs.json"
LOCK_NAME = ".slurm_submit.lock"
# states squeue may still print for a job that has ended (until MinJobAge): not holding the run
ENDED = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "REVOKED",
    "TIMEOUT",
}


class SlurmQueryError(RuntimeError):
    pass


def read(out):
    """{run name: [job ids]} of every job this sweep submitted ({} before the first)."""
    import json

    try:
        with open(os.path.join(out, JOBS_NAME)) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise SlurmQueryError("%s is unreadable (%s): the jobs it names are unknown" % (JOBS_NAME, e))
    return {k: list(v) for k, v in data.get("jobs", {}).items()}


def record(out, pairs):
    """Add (run name, job id) pairs to the record."""
    pairs = list(pairs)
    if not pairs:
        return
    jobs = read(out)
    for name, job_id in pairs:
        jobs.setdefault(name, []).append(str(job_id))
    write_json_atomic(os.path.join(out, JOBS_NAME), {"jobs": jobs})


@contextlib.contextmanager
def submit_lock(out):
    """Held while one launcher decides what to submit, submits it and records it."""
    os.makedirs(out, exist_ok=True)
    fd = os.open(os.path.join(out, LOCK_NAME), os.O_RDWR + os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def queued():
    """{job id: state} of this user's jobs that squeue lists and that have not ended; array tasks one by one
    (`123_4`), pending ones included."""
    cmd = ["squeue", "--noheader", "--array", "--user", getpass.getuser(), "--format", "%i|%T"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SlurmQueryError("%s: %s" % (" ".join(cmd), e))
    if p.returncode != 0:
        raise SlurmQueryError(
            "%s exited with %d: %s" % (" ".join(cmd), p.returncode, p.stderr.strip()[-300:])
        )
    out = {}
    for line in p.stdout.splitlines():
        job_id, _, state = line.strip().partition("|")
        state = state.split()[0] if state.strip() else ""
        if job_id and state not in ENDED:
            out[job_id] = state
    return out


def held(out, runs):
    """{run path: (job id, state)} for the runs with a recorded job that SLURM still holds (the latest one)."""
    jobs = read(out)
    mine = {r.path: jobs[r.name] for r in runs if jobs.get(r.name)}
    if not mine:
        return {}
    live = queued()
    out = {}
    for path, ids in mine.items():
        alive = [j for j in ids if j in live]
        if alive:
            out[path] = (alive[-1], live[alive[-1]])
    return out
