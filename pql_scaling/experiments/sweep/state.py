"""A sweep's state on disk: each run directory's status.json (read through the run directory's schema) and
a lock file (`.sweep.lock`, fcntl flock) held by the process that runs it; `run_one` brings one run to an
end under that lock in a child `pql-scale train` process.

The flock is taken by the launcher's worker and inherited by the `train` child (pass_fds): the lock lives as
long as either holds it and vanishes with them, so a dead holder never blocks a rerun and a live one (a
train process that outlived its SIGKILLed launcher) is never duplicated.
"""

import fcntl
import json
import os
import subprocess
import sys
import time

from pql_scaling.rundir import schema
from pql_scaling.rundir.disk import write_json_atomic

LOCK_NAME = ".sweep.lock"
LOG_NAME = "launcher.log"  # the train process's stdout and stderr
# flag sums, not `a.B | a.C`: vermin takes that for a Python 3.10 union type (the bits are distinct)
LOCK_TRY = fcntl.LOCK_EX + fcntl.LOCK_NB
TAIL_BYTES = 16384  # the live view reads the end of metrics.jsonl only


def read_json(path):
    """A JSON file's content, or None when it is missing or unreadable (being rewritten, damaged)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _last_metrics(run_dir):
    """The last log point of metrics.jsonl (a truncated last line, from a kill mid-write, is skipped), with
    the return of the last one that saw a finished episode."""
    try:
        rows, _ = schema.read_metrics(os.path.join(run_dir, schema.METRICS), tail_bytes=TAIL_BYTES)
    except OSError:
        return None
    last = None
    for row in reversed(rows):
        last = last or dict(row)
        if row.get(schema.RETURN_MEAN) is not None:  # the last log point may have seen no finished episode
            last[schema.RETURN_MEAN] = row[schema.RETURN_MEAN]
            break
    return last


def _locked(path):
    """True while some process holds the run's lock (probing takes it for an instant)."""
    lock = os.path.join(path, LOCK_NAME)
    if not os.path.exists(lock):
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, LOCK_TRY)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we took


def run_state(path, probe=True, raw=False):
    """(state, reason) from the run directory: queued (nothing yet), running, completed, stopped, failed.
    A running run whose process is gone or whose heartbeat stopped reads `stopped` with the reason `lost: no
    heartbeat since ...` (schema.read_status; `raw`: as written); without a heartbeat (an older writer), one
    whose lock nobody holds reads `stopped`."""
    try:
        st = schema.read_status(os.path.join(path, schema.STATUS), raw=raw)
    except (OSError, ValueError):  # not written yet, or being rewritten
        st = None
    if st is None:
        if probe and _locked(path):
            return "running", "starting"
        return "queued", None
    s = st.get("status")
    # a status from before heartbeats: the lock is all that tells a killed process from a live one
    if s == "running" and schema.HEARTBEAT not in st and probe and not _locked(path):
        return "stopped", "the process died without a final status (killed?); rerun the sweep to resume it"
    return s, st.get("reason")


def _row(run, state=None, reason=None, launches=0, probe=True):
    """The run's manifest row: its state and its last env steps, return and clock."""
    if state is None:
        state, reason = run_state(run.path, probe)
    m = _last_metrics(run.path) or {}
    return {
        "name": run.name,
        "path": run.path,
        "key": run.key,
        "seed": run.seed,
        "overrides": run.overrides,
        "state": state,
        "reason": reason,
        schema.ENV_STEPS: m.get(schema.ENV_STEPS),
        schema.RETURN_MEAN: m.get(schema.RETURN_MEAN),
        schema.WALL_TIME_S: m.get(schema.WALL_TIME_S),
        "launches": launches,
    }


def _acquire(path, wait):
    os.makedirs(path, exist_ok=True)
    fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDWR + os.O_CREAT, 0o644)
    for i in range(1 if wait else 5):  # a few tries: `sweep status` probes the lock for an instant
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else LOCK_TRY)
            return fd
        except OSError:
            time.sleep(0.1 * (i + 1))
    os.close(fd)
    return None


def _train(run, args, fd, env):
    """One `pql-scale train` child (holding the lock through `fd`); its exit code. A child that dies before
    writing a final status (bad install, OOM kill) is recorded as failed; its checkpoint stays."""
    log_path = os.path.join(run.path, LOG_NAME)
    cmd = [sys.executable, "-m", "pql_scaling.cli", "train"] + args
    with open(log_path, "ab") as out:
        out.write(("\n$ %s\n" % " ".join(cmd)).encode())
        out.flush()
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, pass_fds=(fd,)
        )
        code = proc.wait()
    # as written: a child that died while `running` is lost, and a failure (retried) here
    if code != 0 and run_state(run.path, probe=False, raw=True)[0] in ("running", "queued"):
        write_json_atomic(
            os.path.join(run.path, schema.STATUS),
            {
                "status": "failed",
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "reason": "train exited with code %d before writing a status; see %s" % (code, log_path),
            },
        )
    return code


def run_one(run, retry=0, extra=(), env=None, wait=False):
    """Bring one run to an end under its lock, in a child `pql-scale train` process; return its manifest row.

    completed: skip. Nothing there (or no checkpoint yet): start. Stopped or killed: resume from the
    checkpoint. Failed: resume up to `retry` times. Held by another process: return state 'busy' at once
    (wait=False) or block until it is released and decide then (wait=True). `extra` overrides go before the
    run's own (a launcher's threads/device; the spec's values win)."""
    fd = _acquire(run.path, wait)
    if fd is None:
        return _row(run, "busy", "held by another process", probe=False)
    launches, retries = 0, 0
    try:
        while True:
            # we hold the lock: a lost run reads "stopped" (resumed below)
            state, reason = run_state(run.path, probe=False)
            if state == "completed":
                return _row(run, state, reason, launches)
            if state == "running" and schema.HEARTBEAT in (
                read_json(os.path.join(run.path, schema.STATUS)) or {}
            ):
                return _row(run, "busy", "alive by its heartbeat but not under this sweep's lock", launches)
            if state == "running":  # written before heartbeats existed: the lock was all there was
                state = "stopped"
            ckpt = os.path.exists(
                os.path.join(run.path, schema.CHECKPOINTS, schema.LAST_CKPT)
            ) and os.path.exists(os.path.join(run.path, schema.CONFIG))
            if launches and state == "stopped":  # interrupted while we ran it: the launcher is being stopped
                return _row(run, state, reason, launches)
            if state == "failed" or (launches and state == "queued"):
                if retries >= retry:
                    return _row(
                        run,
                        "failed",
                        reason
                        or "the train process exited without a status (see %s)"
                        % os.path.join(run.path, LOG_NAME),
                        launches,
                    )
                retries += 1
            if ckpt:
                args = list(extra) + ["resume=%s" % run.path]
            elif os.path.exists(os.path.join(run.path, schema.METRICS)):
                return _row(
                    run,
                    "failed",
                    "metrics but no checkpoint: cannot resume; delete %s to start it again" % run.path,
                    launches,
                )
            else:
                args = list(extra) + run.overrides
            launches += 1
            _train(run, args, fd, env)
    finally:
        os.close(fd)
