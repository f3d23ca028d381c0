"""The run directory's schema: its file names, the metrics row's fields, and the one reader of each file.

    config.yaml              fully resolved config                                   (CONFIG)
    run.json                 derived facts: UTD, parameter and FLOP counts, versions (FACTS, read_facts)
    metrics.jsonl            one JSON object per log point, env_steps increasing     (METRICS, read_metrics)
    metrics.superseded.jsonl log points a resume made stale, stamped                 (SUPERSEDED)
    status.json              running / completed / stopped / failed, with the reason (STATUS, read_status);
                             while running, liveness: host, boot id, pid, process start, heartbeat (lost_reason)
    train.log                human-readable log, tracebacks included                 (TRAIN_LOG)
    checkpoints/             last.pt, prev.pt (the one before), replay/ segments     (CHECKPOINTS, LAST_CKPT)

RunDir (rundir.py) is the writer; the sweep's status, the analysis loader, the tests and the benchmarks read
through this module. Standard library only: `pql_scaling.analysis` imports it without the training stack.
"""

import json
import os
import socket
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, TypedDict, Union

# ------------------------------------------------------------------------------------------------------ files
CONFIG = "config.yaml"
FACTS = "run.json"
METRICS = "metrics.jsonl"
SUPERSEDED = "metrics.superseded.jsonl"
STATUS = "status.json"
TRAIN_LOG = "train.log"
CHECKPOINTS = "checkpoints"
LAST_CKPT = "last.pt"
PREV_CKPT = "prev.pt"

# status.json's `status`
STATUS_KEY = "status"
RUNNING, COMPLETED, STOPPED, FAILED = "running", "completed", "stopped", "failed"
# status.json's liveness fields (RunDir writes them; lost_reason reads them)
HOST, BOOT_ID, PID, PROC_START, HEARTBEAT, LOST = "host", "boot_id", "pid", "proc_start", "heartbeat", "lost"
# a running process rewrites its heartbeat this often, on a thread (a long checkpoint does not stop it)
HEARTBEAT_S = 10.0
LOST_AFTER_S = 120.0  # a heartbeat older than this, read from another host, means the run is lost
UNKNOWN = -1  # process_start where this system cannot tell a process's start time (no /proc)
FilePath = Union[str, os.PathLike]  # a file the readers open


# ----------------------------------------------------------------------------------------------- metrics rows
class MetricsRow(TypedDict, total=False):
    """One line of metrics.jsonl (runtime/metrics.py log_point; the learners', evaluator's and trio's parts)."""

    # counters at the log point
    env_steps: int
    actor_steps: int
    critic_updates: int
    policy_updates: int
    utd: float  # realised: critic_updates / env_steps
    flops: float
    wall_time_s: float  # training time (evaluation excluded)
    # the episodes finished since the last log point (None when none finished)
    return_mean: Optional[float]
    return_std: Optional[float]
    episodes: int
    episode_length: Optional[float]
    # rates over the interval since the last log point
    env_steps_per_s: float
    critic_updates_per_s: float
    policy_updates_per_s: float
    startup_s: float  # the first row of each process: start-up's share of wall_time_s
    checkpoint_time_s: float  # cumulative time the actor was blocked by checkpoints
    # the learners' means over the interval
    critic_loss: float
    q_mean: float
    actor_loss: float
    entropy: float  # SAC
    action_abs_mean: float  # PQL / DDPG
    alpha: float  # SAC
    # evaluation (when due)
    eval_return_mean: Optional[float]
    eval_return_std: Optional[float]
    eval_episodes: int
    eval_time_s: float
    # trio mode: throughput and waiting per role
    actor_steps_per_s: float
    actor_wait_s: float
    actor_wait_frac: float
    v_wait_s: float
    v_wait_frac: float
    v_snapshot_lag: float
    p_wait_s: float
    p_wait_frac: float
    p_snapshot_lag: float


FIELDS = tuple(MetricsRow.__annotations__)
ENV_STEPS, ACTOR_STEPS, CRITIC_UPDATES = "env_steps", "actor_steps", "critic_updates"
POLICY_UPDATES, FLOPS, WALL_TIME_S, EPISODES = "policy_updates", "flops", "wall_time_s", "episodes"
RETURN_MEAN, EVAL_RETURN_MEAN = "return_mean", "eval_return_mean"
ACTOR_WAIT_FRAC, V_WAIT_FRAC = "actor_wait_frac", "v_wait_frac"
# per-interval measurements: a row merged into the previous one (same env_steps) keeps the earlier values
INTERVAL_SUFFIXES = ("_per_s", "_frac")
# fields that measure the machine, not the learning
TIMING_FIELDS = frozenset(
    {
        WALL_TIME_S,
        "env_steps_per_s",
        "critic_updates_per_s",
        "policy_updates_per_s",
        "startup_s",
        "checkpoint_time_s",
        "eval_time_s",
    }
)
# metrics.superseded.jsonl's stamps on each moved row
SUPERSEDED_AT, RESUMED_FROM, UNPARSABLE_LINE = "superseded_at", "resumed_from_env_steps", "unparsable_line"

TRUNCATED = "truncated (last line, skipped)"


# ---------------------------------------------------------------------------------------------------- readers
def read_metrics(path: FilePath, tail_bytes: Optional[int] = None) -> Tuple[List[MetricsRow], List[str]]:
    """metrics.jsonl's log points and notes on the lines left out: (rows, notes). A truncated last line (a
    run killed mid-write, or one appending right now) is skipped with a note ending in TRUNCATED; a line that
    is not JSON, or not a JSON object, elsewhere is skipped with a note naming its number. OSError if the file
    cannot be read. `tail_bytes`: read only the file's last bytes (a live view of a long log): its first line
    may be cut, and the line numbers count from the window's start."""
    if tail_bytes is None:
        with open(path) as fh:
            text = fh.read()
    else:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - tail_bytes))
            text = fh.read().decode("utf-8", "replace")
    lines = text.split("\n")
    rows, notes = [], []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            last = all(not x.strip() for x in lines[i + 1 :])
            notes.append("line %d is %s" % (i + 1, TRUNCATED if last else "not JSON (skipped)"))
            continue
        if not isinstance(row, dict):
            notes.append("line %d is %s, not a JSON object (skipped)" % (i + 1, type(row).__name__))
            continue
        rows.append(row)
    return rows, notes


def read_status(
    path: FilePath, now: Optional[float] = None, lost_after_s: float = LOST_AFTER_S, raw: bool = False
) -> Any:
    """status.json (a dict: status, reason, time, ...), with a lost run told apart: a `running` whose process
    is gone (this host) or whose heartbeat is older than `lost_after_s` (any host) reads as `stopped`, its
    reason `lost: no heartbeat since ...`, and `lost: true` (see lost_reason). `raw`: as written. OSError when
    it is missing, ValueError (UnicodeDecodeError, json.JSONDecodeError) when it is being rewritten or
    damaged."""
    with open(path) as fh:
        st = json.load(fh)
    if raw or not isinstance(st, dict):
        return st
    why = lost_reason(st, time.time() if now is None else now, this_machine(), process_start, lost_after_s)
    return st if why is None else dict(st, status=STOPPED, reason=why, **{LOST: True})


def lost_reason(
    st: Dict[str, Any],
    now: float,
    machine: Tuple[str, Optional[str]],
    start_of: Callable[[int], Optional[int]],
    lost_after_s: float = LOST_AFTER_S,
) -> Optional[str]:
    """Why the status `st` of a `running` run is that of a lost one, or None (live, not running, or written
    before heartbeats existed). Pure: `machine` is this_machine(), `start_of(pid)` process_start.
    On the writer's machine (same host and boot) the process decides: gone, or its pid now another process
    (a different start time), is lost; alive is live however old the heartbeat (a long checkpoint, a stopped
    debugger). From another machine only the heartbeat can tell: older than `lost_after_s` is lost (the
    clocks are assumed to agree to well within that)."""
    beat = st.get(HEARTBEAT)
    if st.get(STATUS_KEY) != RUNNING or not isinstance(beat, (int, float)):
        return None
    since = "lost: no heartbeat since %s" % time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(beat))
    rerun = "rerun the sweep, or resume=RUN_DIR, to continue it"
    pid = st.get(PID)
    if (st.get(HOST), st.get(BOOT_ID)) == machine and isinstance(pid, int):
        started = start_of(pid)
        if started is None:
            return "%s (process %d on %s is gone); %s" % (since, pid, machine[0], rerun)
        if UNKNOWN not in (started, st.get(PROC_START, UNKNOWN)) and started != st.get(PROC_START):
            return "%s (pid %d on %s is now another process); %s" % (since, pid, machine[0], rerun)
        return None
    if now - beat > lost_after_s:
        return "%s (%.0f s ago, over the %.0f s limit; written on %s); %s" % (
            since,
            now - beat,
            lost_after_s,
            st.get(HOST),
            rerun,
        )
    return None


def this_machine() -> Tuple[str, Optional[str]]:
    """(host name, boot id): a pid means the same process only within one boot of one machine."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
    except OSError:
        boot = None
    return socket.gethostname(), boot


def process_start(pid: int) -> Optional[int]:
    """When process `pid` of this machine started (clock ticks since boot, /proc/PID/stat's 22nd field), None
    when no such process lives (a zombie, killed and not yet reaped, counts as gone); UNKNOWN where the
    system has no /proc but the process exists."""
    try:
        with open("/proc/%d/stat" % pid) as fh:
            fields = fh.read().rsplit(")", 1)[1].split()  # the name, in parentheses, may hold spaces
        return None if fields[0] in ("Z", "X") else int(fields[19])
    except (OSError, IndexError, ValueError):
        pass
    if os.path.isdir("/proc/self"):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except OSError:  # PermissionError: someone else's, alive
        pass
    return UNKNOWN


def read_facts(path: FilePath) -> Any:
    """run.json as written (a dict of derived facts). OSError / ValueError as read_status."""
    with open(path) as fh:
        return json.load(fh)
