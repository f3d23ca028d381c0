"""One run's state, as its parts: the roles (roles.py), the training clock (clock.py), the log points
(metrics.py) and the checkpoints (checkpoint.py), tied together by `Session`, which the runtimes (sync.py,
trio/) drive: started(), should_stop(), log_point(), and the hooks of the `Runtime` they attach."""

import time
from typing import Any, Dict, Optional

import torch

from pql_scaling.config import Config
from pql_scaling.core.replay import Normalizer, Replay
from pql_scaling.envs.contract import VecEnv
from pql_scaling.rundir.disk import log
from pql_scaling.rundir.replay_store import ReplayStore
from pql_scaling.rundir.rundir import RunDir
from pql_scaling.runtime.checkpoint import BackgroundWriter, Checkpointer
from pql_scaling.runtime.clock import TrainingClock
from pql_scaling.runtime.learner import PLearner, VLearner
from pql_scaling.runtime.metrics import Diverged, MetricsLogger
from pql_scaling.runtime.roles import Roles, build_roles, describe

__all__ = ["Diverged", "Runtime", "Session"]


class Runtime:
    """A runtime's hooks into the Session (Session.attach_runtime). Sync mode, with every role in this
    process, keeps these no-ops; the trio brings its learners' state and its per-role metrics."""

    def before_checkpoint(self) -> None:
        """Bring the state of roles that live in other processes into this process's mirrors."""

    def extra_metrics(self) -> Dict[str, Any]:
        """The runtime's own metrics for this log point."""
        return {}


class Session:
    """Everything one run holds: config, env, roles, counters, and the run directory's writers.

    `counters` is a plain dict saved inside each checkpoint as is: wall_time_s, run_id, critic_owed and
    policy_owed (Fractions: the debts of the ratios), eval_time_s and checkpoint_time_s (cumulative)."""

    def __init__(
        self,
        cfg: Config,
        run: RunDir,
        env: VecEnv,
        resumed_state: Optional[Dict[str, Any]] = None,
        started: Optional[float] = None,
    ) -> None:
        self.cfg, self.run, self.env = cfg, run, env
        self.device = torch.device(cfg.device)
        self.roles: Roles = build_roles(cfg, env, run)
        self.learning_starts = self.roles.learning_starts
        self.flops_critic, self.flops_policy = self.roles.flops_critic, self.roles.flops_policy
        self.facts = describe(cfg, env, self.roles)
        self.counters: Dict[str, Any] = {"wall_time_s": 0.0}
        self.runtime = Runtime()
        self.signal: Optional[int] = None  # a stop signal not yet acted on (interrupt())
        # start-up is timed from `started` (the CLI's entry; default: now), training from the first actor step
        self.clock = TrainingClock(cfg, time.monotonic() if started is None else started)
        self.checkpoints = Checkpointer(cfg, run, env, self.roles, self.counters, self.clock)
        if resumed_state is not None:
            self.load_state_dict(resumed_state)
        self.clock.time_offset = self.counters["wall_time_s"]
        self.evaluator = None
        if cfg.eval.every_steps:
            from pql_scaling.runtime.evaluate import Evaluator

            self.evaluator = Evaluator(cfg, self.roles.actor_device, self.env_steps)
        self.metrics = MetricsLogger(cfg, run, env, self.roles, self.clock, self.counters, self.evaluator)

    # ---------------------------------------------------------------- the roles

    @property
    def actor(self) -> Any:
        return self.roles.actor

    @actor.setter
    def actor(self, actor: Any) -> None:  # tests drive the trio with a fake actor
        self.roles.actor = actor

    @property
    def v_learner(self) -> VLearner:
        return self.roles.v_learner

    @property
    def p_learner(self) -> PLearner:
        return self.roles.p_learner

    @property
    def norm(self) -> Normalizer:
        return self.roles.norm

    @property
    def replay(self) -> Replay:
        return self.roles.replay

    @property
    def replay_store(self) -> Optional[ReplayStore]:
        return self.roles.replay_store

    @property
    def env_steps(self) -> int:
        return self.actor.steps * self.env.num_envs

    def attach_runtime(self, runtime: Runtime) -> None:
        """The runtime running this session: its hooks are called at checkpoints and log points."""
        self.runtime = runtime

    # ---------------------------------------------------------------- the clock

    @property
    def stop_reason(self) -> Optional[str]:
        return self.clock.stop_reason

    def wall_time(self, now: Optional[float] = None) -> float:
        return self.clock.wall_time(now)

    def started(self) -> None:
        """The runtime calls this once its roles are ready, just before the first actor step: the training
        clock starts here."""
        now = time.monotonic()
        startup_s = self.clock.begin(now, self.actor.steps)
        self.metrics.restart(now)
        self.checkpoints.last_ckpt = now
        if not self.cfg.resume:
            self.run.update_facts(startup_s=startup_s)
        log.info(
            "start-up took %.2f s (config, env, run directory%s)",
            startup_s,
            ", learner processes" if self.cfg.mode == "trio" else "",
        )

    def interrupt(self, signum: int) -> None:
        """A stop signal's handler: raised as KeyboardInterrupt by should_stop(), between two steps, never in
        the middle of an update (whose debts would then be saved out of step with the updates done)."""
        self.signal = signum

    def should_stop(self) -> bool:
        if self.signal is not None:
            signum, self.signal = self.signal, None
            raise KeyboardInterrupt("signal %d" % signum)
        return self.clock.should_stop(self.env_steps, self.actor.steps)

    # ---------------------------------------------------------------- log points and checkpoints

    def log_point(self, now: float) -> Dict[str, Any]:
        """Sync with the device, check the losses, write one metrics row, maybe checkpoint."""
        row, now = self.metrics.log_point(now, self.runtime.extra_metrics)
        if self.checkpoints.due(now):
            # a GPU replay (gigabytes) is copied off the device at once and written on a thread, not by the
            # actor
            self.checkpoint(now, background=self.replay.device.type == "cuda")
        return row

    def checkpoint(self, now: Optional[float] = None, background: bool = False) -> None:
        """Save the state (see Checkpointer.checkpoint), the runtime's state pulled in first."""
        self.checkpoints.checkpoint(self.runtime.before_checkpoint, now, background)

    @property
    def writer(self) -> BackgroundWriter:
        return self.checkpoints.writer

    def state_dict(self) -> Dict[str, Any]:
        return self.checkpoints.state_dict()

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        self.checkpoints.load_state_dict(s)
