"""`mode=trio`: actor, V-learner and P-learner as three processes sharing memory.

protocol.py      the shared state and its rules (counters, schedules, snapshots, doorbells; the design is
                 its docstring)
learner_proc.py  the learners' processes (learner_main, LearnerLoop)
actor_side.py    the main process: the actor's gate, Trio (spawn, requests, stop) and run()
child_console.py the learners' stderr and log records, printed through the main process's console
"""

from pql_scaling.runtime.trio.actor_side import RoleFailed, Trio, TrioGate, run
from pql_scaling.runtime.trio.learner_proc import ActorGone, LearnerLoop, fault_at, learner_main
from pql_scaling.runtime.trio.protocol import (
    LAG,
    ROLES,
    STATE,
    STATS,
    Counters,
    Doorbell,
    LearnerStats,
    Schedule,
    Shared,
    Snapshot,
    bounds,
    net_tensors,
    norm_tensors,
    wait_queued,
)

__all__ = [
    "ActorGone",
    "Counters",
    "Doorbell",
    "TrioGate",
    "LAG",
    "LearnerLoop",
    "LearnerStats",
    "ROLES",
    "RoleFailed",
    "STATE",
    "STATS",
    "Schedule",
    "Shared",
    "Snapshot",
    "Trio",
    "bounds",
    "fault_at",
    "learner_main",
    "net_tensors",
    "norm_tensors",
    "run",
    "wait_queued",
]
