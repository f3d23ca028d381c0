"""The trio's main process: the actor steps the simulator and writes through the gate (`TrioGate`), `Trio`
spawns and stops the learners and answers the Session's runtime hooks, `run` is the actor's loop (the
protocol is `protocol.py`'s docstring)."""

import logging
import os
import signal
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, Dict, Optional, Type

import torch
import torch.multiprocessing as mp

from pql_scaling.core.replay import Replay
from pql_scaling.rundir.disk import to_host
from pql_scaling.runtime.actor import Gate
from pql_scaling.runtime.session import Runtime, Session
from pql_scaling.runtime.trio.child_console import StderrPump
from pql_scaling.runtime.trio.learner_proc import LearnerLoop, fault_at, learner_main
from pql_scaling.runtime.trio.protocol import (
    LAG,
    ROLES,
    STATE,
    STATS,
    LearnerStats,
    Shared,
    net_tensors,
    norm_tensors,
    wait_queued,
)

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from multiprocessing.context import BaseContext

log = logging.getLogger("pql_scaling")


class RoleFailed(RuntimeError):
    pass


class TrioGate(Gate):
    """The actor's gate in the trio: a write waits until the learners have done every update owed before it
    (the exact ratios), and its rows are committed to them only once their bytes are in the replay."""

    def __init__(self, sh: Shared, trio: "Trio", actor_device: torch.device) -> None:
        self.sh, self.trio, self.actor_device = sh, trio, actor_device
        self.learn = 0  # actor steps taken with at least learning_starts rows in replay (since start/resume)
        self.next_learn = 0

    def wait(self, replay: Replay) -> None:
        r, sh = replay, self.sh
        self.next_learn = self.learn + (min(r.rows + r.num_envs, r.capacity) >= sh.learning_starts)
        owed_c = sh.critic_due(max(self.next_learn - LAG, 0))
        owed_p = sh.policy_due(owed_c)
        self.trio.actor_wait += sh.wait("actor", lambda: sh.paid(owed_c, owed_p), self.trio.check)

    def commit(self, replay: Replay) -> None:
        wait_queued(replay.device, self.actor_device)  # rows are committed only once their bytes are in
        self.sh.ctr.rows = replay.rows  # rows before learn: a learner reads learn first, then rows
        self.sh.ctr.learn = self.learn = self.next_learn
        self.sh.wake("v_learner")


@dataclass
class LearnerMark:
    """A learner's cumulative figures (LearnerStats) at the last log point."""

    wait_s: float = 0.0
    busy_s: float = 0.0
    lag_sum: float = 0.0
    lag_n: float = 0.0


@dataclass
class LogMark:
    """Where the last log point's per-role metrics left off."""

    t: float
    steps: int
    actor_wait_s: float = 0.0
    learners: Dict[str, LearnerMark] = field(default_factory=lambda: {r: LearnerMark() for r in ROLES[1:]})


class Trio(Runtime):
    """The learner processes seen from the main process, and the Session's runtime hooks (state pulled
    before a checkpoint, per-role metrics at log points)."""

    def __init__(self, s: Session, loop_cls: Optional[Type[LearnerLoop]] = None) -> None:
        # loop_cls: a LearnerLoop subclass, for tests
        self.s, cfg = s, s.cfg
        # already `cuda:N`, never an index-less `cuda` (config.load normalises every device key once)
        self.devices = {role: getattr(cfg, role + "_device") or cfg.device for role in ROLES}
        guard = LAG * s.replay.num_envs  # per ring: a population's member writes num_envs of K x num_envs
        if s.replay.capacity < guard + s.learning_starts:
            raise ValueError(
                "algo.buffer_size=%d is too small for mode=trio with num_envs=%d: it needs at "
                "least %d rows (learning_starts + %d rows kept clear of the actor's writes)"
                % (cfg.algo.buffer_size, s.replay.num_envs, guard + s.learning_starts, guard)
            )
        ctx = mp.get_context("spawn")
        self.sh = sh = Shared(s, ctx, self.devices)
        sh.policy.publish(net_tensors(s.p_learner.actor))
        sh.critic.publish(net_tensors(s.v_learner.critic))
        sh.norm.publish(norm_tensors(s.norm))
        self.seen_policy = 1
        self.actor_wait, self.t0 = 0.0, time.perf_counter()
        self.last = LogMark(t=self.t0, steps=s.actor.steps)
        self.gate = TrioGate(sh, self, s.roles.actor_device)
        s.actor.gate = self.gate  # ActorRole.gate: the actor's writes wait for the learners
        self.running = False
        self.fault = fault_at("actor")
        self.signal: Optional[int] = None
        # on the CPU: a child's optimiser state must be its own copy, not an IPC alias of the parent's mirror
        init = {
            "v_learner": to_host(s.v_learner.state_dict()),
            "p_learner": to_host(s.p_learner.state_dict()),
        }
        self.procs: Dict[str, Any] = {}  # role -> its process
        self.stderr = StderrPump(ctx)  # the learners' stderr and log records, onto this process's console
        try:
            self._spawn(ctx, init, loop_cls)
        except BaseException:
            self.stop(graceful=False)
            raise
        self.running = True
        s.attach_runtime(self)

    def _spawn(
        self, ctx: "BaseContext", init: Dict[str, Dict[str, Any]], loop_cls: Optional[Type[LearnerLoop]]
    ) -> None:
        s = self.s
        log_path = os.path.join(s.run.path, "train.log")
        for role in ROLES[1:]:
            p = ctx.Process(
                target=learner_main,
                name=role,
                daemon=True,
                args=(
                    role,
                    s.cfg,
                    s.env.obs_dim,
                    s.env.act_dim,
                    self.sh,
                    init[role],
                    log_path,
                    os.getpid(),
                    loop_cls,
                    self.stderr.pipe(role),
                ),
            )
            p.start()
            self.procs[role] = p
            self.stderr.started(role)
            log.info("trio: %s is pid %d on %s", role, p.pid, self.devices[role])

    def on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        self.signal = signum  # raised at the next safe point: never inside a wait on a shared primitive

    def check(self) -> None:
        """Raise if a learner failed or died, or a stop signal came; cheap enough to call every actor step."""
        sh = self.sh
        if self.signal is not None:
            signum, self.signal = self.signal, None
            raise KeyboardInterrupt("signal %d" % signum)
        if sh.ctr.error or not all(p.is_alive() for p in self.procs.values()):
            reasons = []
            while not sh.errors.empty():
                role, msg = sh.errors.get()
                reasons.append("%s failed: %s" % (role, msg))
            for role, p in self.procs.items():
                if not p.is_alive() and not any(r.startswith(role) for r in reasons):
                    reasons.append("%s process (pid %d) died with exit code %s" % (role, p.pid, p.exitcode))
            raise RoleFailed("; ".join(reasons) + " (traceback, if any, in train.log)")

    def request(self, kind: int) -> None:
        """Ask both learners for stats (and their state); wait until both answered."""
        sh = self.sh
        sh.ctr.req_kind = kind
        sh.ctr.req += 1  # kind before the request number: a learner reads them in the other order
        req = sh.ctr.req
        sh.wake("v_learner", "p_learner")
        self.actor_wait += sh.wait("actor", lambda: sh.ctr.ack_v == req and sh.ctr.ack_p == req, self.check)
        for role, mirror in (("v_learner", self.s.v_learner), ("p_learner", self.s.p_learner)):
            st = LearnerStats.from_tensor(sh.stats[role])
            mirror.updates = int(st.updates)
            mirror.stats.copy_(torch.tensor(st.losses, dtype=mirror.stats.dtype).view_as(mirror.stats))
            if kind == STATE:
                path = os.path.join(self.s.run.ckpt_dir, "." + role + ".pt")
                mirror.load_state_dict(torch.load(path, map_location=mirror.stats.device, weights_only=True))
        if kind == STATE:
            s = self.s
            s.counters["critic_owed"] = sh.critic_due.owed(self.gate.learn, s.v_learner.updates)
            s.counters["policy_owed"] = sh.policy_due.owed(s.v_learner.updates, s.p_learner.updates)

    def before_checkpoint(self) -> None:
        """Bring the learners' state here (while they run)."""
        if self.running:
            self.request(STATE)

    def extra_metrics(self) -> Dict[str, float]:
        """Per-role throughput and waiting since the last log point (learners' figures from the last
        request)."""
        now, last, steps = time.perf_counter(), self.last, self.s.actor.steps
        dt = max(now - last.t, 1e-9)
        row = {
            "actor_steps_per_s": (steps - last.steps) / dt,
            "actor_wait_s": round(self.actor_wait, 3),
            "actor_wait_frac": (self.actor_wait - last.actor_wait_s) / dt,
        }
        for role, short in (("v_learner", "v"), ("p_learner", "p")):
            st, before = LearnerStats.from_tensor(self.sh.stats[role]), last.learners[role]
            row[short + "_wait_s"] = round(st.wait_s, 3)
            row[short + "_wait_frac"] = (st.wait_s - before.wait_s) / max(st.busy_s - before.busy_s, 1e-9)
            # perf.publish_every's cost: by how many updates the others' copy of these weights trailed, on
            # average
            row[short + "_snapshot_lag"] = (st.lag_sum - before.lag_sum) / max(st.lag_n - before.lag_n, 1)
            last.learners[role] = LearnerMark(st.wait_s, st.busy_s, st.lag_sum, st.lag_n)
        last.t, last.actor_wait_s, last.steps = now, self.actor_wait, steps
        return row

    def stop(self, graceful: bool) -> None:
        """Pull the learners' final state (graceful) and end both processes on every path."""
        sh, t0 = self.sh, time.perf_counter()
        try:
            if graceful and self.running:
                self.request(STATE)
        finally:
            log.info("trio: state pulled in %.2f s", time.perf_counter() - t0)
            self.running = False
            sh.ctr.stop = 1
            sh.wake(*ROLES)
            self._end_processes()
            self.stderr.close()  # the learners' last words printed (a failure's traceback) before ours
            for role in ROLES[1:]:
                path = os.path.join(self.s.run.ckpt_dir, "." + role + ".pt")
                if os.path.exists(path):
                    os.remove(path)
            log.info("trio: learners stopped in %.2f s", time.perf_counter() - t0)

    def _end_processes(self) -> None:
        for p in self.procs.values():
            p.join(timeout=10)
        for p in self.procs.values():
            if p.is_alive():
                log.warning("trio: %s (pid %d) did not stop; terminating it", p.name, p.pid)
                p.terminate()
                p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()


def run(s: Session, loop_cls: Optional[Type[LearnerLoop]] = None) -> None:
    cfg = s.cfg
    torch.set_num_threads(cfg.threads or 1)
    trio = Trio(s, loop_cls)
    sh, actor, policy = trio.sh, s.actor, s.p_learner.actor
    graceful = False
    old_handlers = {sig: signal.signal(sig, trio.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        trio.request(STATS)  # both learners are up (spawned, torch imported, nets built): start-up is over
        s.started()
        while not s.should_stop():
            trio.check()
            trio.seen_policy = sh.policy.load(net_tensors(policy), trio.seen_policy)
            if trio.fault is not None and actor.steps + 1 >= trio.fault:
                raise RuntimeError("injected fault in actor at step %d" % (actor.steps + 1))
            actor.step(policy)
            # on a GPU: announced a step later, once copied, never waited for
            sh.norm.offer(norm_tensors(s.norm))
            if actor.steps % cfg.log.every_steps == 0:
                trio.request(STATS)
                s.log_point(time.monotonic())
        # pay what is owed for the steps taken, so the final counts are exactly sync mode's; a time budget
        # is a hard stop instead (owing LAG steps' updates may take long when learners are slow, and the
        # debt stays in the checkpoint's counters)
        if s.stop_reason != "max_time_s":
            owed_c = sh.critic_due(trio.gate.learn)
            owed_p = sh.policy_due(owed_c)
            trio.actor_wait += sh.wait("actor", lambda: sh.paid(owed_c, owed_p), trio.check)
        graceful = True
    except KeyboardInterrupt:
        graceful = True
        raise
    finally:
        try:
            trio.stop(graceful)
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
