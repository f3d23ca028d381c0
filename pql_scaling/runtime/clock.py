"""The training clock: wall_time_s and the stop conditions.

Start-up (imports, env, run directory, the trio's learner processes) is timed from the process's start (the
CLI's entry) and reported apart as startup_s; the training clock (wall_time_s, max_time_s) starts at the first
actor step, so a budget is training time whatever the machine's load does to start-up. Evaluation pauses it.
"""

import time
from typing import Optional

from pql_scaling.config import Config


class TrainingClock:
    def __init__(self, cfg: Config, process_start: float, time_offset: float = 0.0) -> None:
        self.cfg = cfg
        self.process_start = process_start
        self.time_offset = time_offset  # wall_time_s a resumed run had already trained for
        self.start: Optional[float] = None  # set by begin(): the first actor step
        self.first_step: Optional[int] = None
        self.startup_s: Optional[float] = None
        self.paused = 0.0  # seconds spent evaluating since start: not training time
        self.stop_reason: Optional[str] = None

    def wall_time(self, now: Optional[float] = None) -> float:
        if self.start is None:  # training has not started yet
            return self.time_offset
        return self.time_offset + ((now or time.monotonic()) - self.start) - self.paused

    def begin(self, now: float, actor_steps: int) -> float:
        """Start the training clock (just before the first actor step); returns startup_s."""
        self.startup_s = round(now - self.process_start, 3)
        self.start = now
        self.first_step = actor_steps
        return self.startup_s

    def pause(self, seconds: float) -> None:
        """Take `seconds` (evaluation) out of the training time."""
        self.paused += seconds

    def stop(self, reason: str) -> None:
        self.stop_reason = reason

    def should_stop(self, env_steps: int, actor_steps: int) -> bool:
        if self.stop_reason is not None:
            return True
        cfg = self.cfg
        if cfg.max_env_steps is not None and env_steps >= cfg.max_env_steps:
            self.stop_reason = "max_env_steps"
        elif cfg.max_time_s and actor_steps > self.first_step and self.wall_time() >= cfg.max_time_s:
            # (checked after an actor step: even a budget shorter than one step trains and logs that step)
            self.stop_reason = "max_time_s"
        return self.stop_reason is not None
