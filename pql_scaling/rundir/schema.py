"""The run directory's schema: its file names, the metrics row's fields, and the one reader of each file.

    config.yaml              fully resolved config                                   (CONFIG)
    run.json                 derived facts: UTD, parameter and FLOP counts, versions (FACTS, read_facts)
    metrics.jsonl            one JSON object per log point, env_steps increasing     (METRICS, read_metrics)
    metrics.superseded.jsonl log points a resume made stale, stamped                 (SUPERSEDED)
    status.json              running / completed / stopped / failed, with the reason (STATUS, read_status)
    train.log                human-readable log, tracebacks included                 (TRAIN_LOG)
    checkpoints/             last.pt, prev.pt (the one before), replay/ segments     (CHECKPOINTS, LAST_CKPT)

RunDir (rundir.py) is the writer; the sweep's status, the analysis loader, the tests and the benchmarks read
through this module. Standard library only: `pql_scaling.analysis` imports it without the training stack.
"""

import json
from typing import Optional, TypedDict

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
RUNNING, COMPLETED, STOPPED, FAILED = "running", "completed", "stopped", "failed"


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
    }
)
# metrics.superseded.jsonl's stamps on each moved row
SUPERSEDED_AT, RESUMED_FROM, UNPARSABLE_LINE = "superseded_at", "resumed_from_env_steps", "unparsable_line"

TRUNCATED = "truncated (last line, skipped)"


# ---------------------------------------------------------------------------------------------------- readers
def read_metrics(path, tail_bytes=None):
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


def read_status(path):
    """status.json as written (a dict: status, reason, time, ...). OSError when it is missing, ValueError
    (UnicodeDecodeError, json.JSONDecodeError) when it is being rewritten or damaged."""
    with open(path) as fh:
        return json.load(fh)


def read_facts(path):
    """run.json as written (a dict of derived facts). OSError / ValueError as read_status."""
    with open(path) as fh:
        return json.load(fh)
