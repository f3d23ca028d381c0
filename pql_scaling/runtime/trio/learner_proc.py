"""The trio's learners: each runs `learner_main` in a spawned process, a `LearnerLoop` over the shared state
(the protocol is `protocol.py`'s docstring)."""

import io
import json
import logging
import os
import signal
import sys
import time
import traceback
from typing import Any, Dict, Optional, Type

import torch

from pql_scaling import config as config_lib
from pql_scaling.config import Config
from pql_scaling.core import nets
from pql_scaling.core.members import Streams
from pql_scaling.core.replay import Normalizer, Replay, critic_obs_dim
from pql_scaling.rundir.disk import write_atomic, write_json_atomic
from pql_scaling.runtime.learner import PLearner, VLearner
from pql_scaling.runtime.trio.child_console import child_logging, redirect_stderr
from pql_scaling.runtime.trio.protocol import (
    ROLES,
    STATE,
    LearnerStats,
    Shared,
    bounds,
    net_tensors,
    norm_tensors,
)

log = logging.getLogger("pql_scaling")


class ActorGone(SystemExit):
    """The main process (the actor) is gone without telling us: killed (SIGKILL, the OOM killer) or
    crashed."""


def fault_at(role: str) -> Optional[int]:
    """Fault injection for tests: PQL_TRIO_FAULT=role:n makes `role` raise at its n-th update/step."""
    spec = os.environ.get("PQL_TRIO_FAULT", "")
    name, _, n = spec.partition(":")
    return int(n) if name == role and n else None


def learner_main(
    role: str,
    cfg: Config,
    obs_dim: int,
    act_dim: int,
    sh: Shared,
    init_state: Dict[str, Any],
    log_path: str,
    parent_pid: int,
    loop_cls: "Optional[Type[LearnerLoop]]" = None,
    stderr: Any = None,
) -> None:
    # stderr: the write end of a pipe to the main process, which prints what comes through on its console
    # (child_console.py); log records go to train.log too
    redirect_stderr(stderr)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the actor decides
    torch.set_num_threads(cfg.threads or 1)
    handlers = child_logging(log, log_path)
    try:
        (loop_cls or LearnerLoop)(role, cfg, obs_dim, act_dim, sh, init_state, log_path, parent_pid).run()
    except ActorGone:
        code = 1
        log.error("%s: the actor (main process, pid %d) is gone; stopping", role, parent_pid)
        if role == "v_learner":  # nobody else is left to say what happened (a population: each member)
            for path in sh.status_dirs:
                _report_actor_gone(role, path, parent_pid)
    except SystemExit:
        code = 0  # told to stop
    except BaseException as e:  # noqa: BLE001 - every failure must reach the main process
        log.error("%s failed:\n%s", role, traceback.format_exc())
        sh.errors.put((role, "%s: %s" % (type(e).__name__, e)))
        sh.ctr.error = ROLES.index(role)
        sh.wake(*ROLES)
        code = 1
    for h in handlers:
        h.close()
    try:
        sys.stderr.flush()  # all of it into the pipe: os._exit flushes nothing
    except OSError:  # the main process, the pipe's reader, is gone
        pass
    # skip the interpreter's teardown (seconds with torch loaded); nothing is left to flush, and the
    # kernel closes the shared-memory descriptors
    os._exit(code)


def _report_actor_gone(role: str, run_path: str, parent_pid: int) -> None:
    status = os.path.join(run_path, "status.json")
    try:
        with open(status) as f:
            if json.load(f).get("status") in ("completed", "failed"):
                return  # a population member that had ended already keeps its own outcome
    except (OSError, ValueError):
        pass
    try:
        write_json_atomic(
            status,
            dict(
                status="failed",
                time=time.strftime("%Y-%m-%dT%H:%M:%S"),
                detected_by=role,
                reason="the actor (main process, pid %d) died without a word: killed (SIGKILL, the OOM "
                "killer, a preemption without SIGTERM) or crashed; the learners stopped; continue with "
                "resume=%s" % (parent_pid, run_path),
            ),
        )
    except Exception as e:  # noqa: BLE001 - a full disk must not keep this process alive
        log.error("could not write status.json: %s", e)


class LearnerLoop:
    def __init__(
        self,
        role: str,
        cfg: Config,
        obs_dim: int,
        act_dim: int,
        sh: Shared,
        init_state: Dict[str, Any],
        log_path: str,
        parent_pid: int,
    ) -> None:
        self.role, self.sh, self.parent_pid = role, sh, parent_pid
        self.device = device = torch.device(sh.devices[role])
        if device.type == "cuda":
            torch.cuda.set_device(device)
        self.state_path = os.path.join(os.path.dirname(log_path), "checkpoints", "." + role + ".pt")
        c_dim = critic_obs_dim(sh.replay_data)  # the replay's critic fields say if the critic has its own
        # a population (population.size = K > 1): K members stacked, updated as one batch (runtime/population.py);
        # its weights come from init_state, so the nets' own draws do not matter
        seeds, vary = config_lib.member_seeds(cfg), config_lib.member_values(cfg)
        k = len(seeds)
        if k == 1:
            actor_net, critic = nets.build(cfg, obs_dim, act_dim, c_dim)
        else:
            actor_net, critic, _ = nets.build_population(cfg, obs_dim, act_dim, seeds, c_dim)
        actor_net, critic = actor_net.to(device), critic.to(device)
        a = cfg.algo
        self.norm = Normalizer(
            obs_dim, device, clip=a.obs_clip, enabled=a.obs_norm, members=k, critic_dim=c_dim
        )
        rdev = next(iter(sh.replay_data.values())).device
        self.replay = Replay(
            a.buffer_size, obs_dim, act_dim, sh.num_envs, rdev, storage=sh.replay_data, members=k
        )
        # each learner its own sample stream, different across seeds, roles and resumes (a population's
        # member 0 draws from torch's default generator, seeded below; the others from their own)
        salt = 1000003 * ROLES.index(role) + 7919 * int(init_state["updates"])
        streams = Streams([s + salt for s in seeds], device) if k > 1 else None
        if k > 1 and hasattr(actor_net, "randn_like"):  # SAC: the policy's noise from each member's stream
            actor_net.randn_like = streams.randn_like
        if role == "v_learner":  # view: the other's net, read from its snapshot; own: ours, published
            self.learner = VLearner(cfg, critic, actor_net, self.norm, device, streams, vary)
            self.view, self.view_snap, self.own_snap, self.own = actor_net, sh.policy, sh.critic, critic
        else:
            self.learner = PLearner(cfg, actor_net, critic, self.norm, device, act_dim, streams, vary)
            self.view, self.view_snap, self.own_snap, self.own = critic, sh.critic, sh.policy, actor_net
        self.learner.load_state_dict(init_state)
        torch.manual_seed(cfg.seed + salt)
        self.seen_view = self.seen_norm = -1
        self.wait_s, self.t0 = 0.0, time.perf_counter()
        self.fault = fault_at(role)
        # perf.publish_every: snapshots every k updates (a GPU update can outrun its copy); finish() publishes
        # an update's count once its work is done, one update late on a GPU so the host can queue ahead
        self.publish_every = cfg.perf.publish_every
        self.gpus = sorted({str(d) for d in (self.replay.device, device) if d.type == "cuda"})
        self.pending, self.published, self.lag_sum, self.lag_n = None, self.learner.updates, 0, 0
        log.info("%s ready on %s (%d updates done)", role, device, self.learner.updates)

    def ready(self) -> bool:
        """The gate: is this learner's next update due? Reads in the order the wrap-safety proof needs."""
        sh, n = self.sh, self.learner.updates + 1
        if self.role == "v_learner":
            learn = sh.ctr.learn
            return learn > 0 and n <= sh.critic_due(learn)
        critic = sh.ctr.critic_updates
        return sh.ctr.learn > 0 and n <= sh.policy_due(critic)

    def service(self) -> None:
        """Answer the main process's requests; leave when told to stop or when the main process is gone."""
        sh = self.sh
        if os.getppid() != self.parent_pid:
            raise ActorGone(1)
        if sh.ctr.stop:
            raise SystemExit(0)
        req = sh.ctr.req
        if req == sh.ctr.acked(self.role):
            return
        self.flush()  # answer with every queued update counted and the newest weights published
        if sh.ctr.req_kind == STATE:  # atomic; a full disk raises DiskFull naming it
            buf = io.BytesIO()
            torch.save(self.learner.state_dict(), buf)
            write_atomic(self.state_path, buf.getvalue())
        losses = self.learner.stats.reshape(-1).tolist()  # the only host sync of a learner, once a log point
        self.learner.stats.zero_()
        row = LearnerStats(
            self.learner.updates, losses, self.wait_s, time.perf_counter() - self.t0, self.lag_sum, self.lag_n
        )
        sh.stats[self.role].copy_(row.to_tensor())
        sh.ctr.acknowledge(self.role, req)
        sh.wake("actor")

    def run(self) -> None:
        sh = self.sh
        while True:
            if (self.pending is not None or self.published != self.learner.updates) and not self.ready():
                self.flush()  # before sleeping, publish what is queued: the others may be waiting on it
            self.wait_s += sh.wait(self.role, self.ready, self.service)
            self.service()
            self.seen_norm = sh.norm.load(norm_tensors(self.norm), self.seen_norm)
            self.seen_view = self.view_snap.load(net_tensors(self.view), self.seen_view)
            if self.fault is not None and self.learner.updates + 1 >= self.fault:
                raise RuntimeError(
                    "injected fault in %s at update %d" % (self.role, self.learner.updates + 1)
                )
            self.learner.learn(self.replay, *bounds(self.replay, sh.ctr.rows))  # queued, on a GPU
            if self.pending is not None:
                self.finish()  # the previous update: on a GPU it ran while the host queued this one
            n = self.learner.updates
            publish = n % self.publish_every == 0
            if publish:
                self.own_snap.begin(net_tensors(self.own))
            events = []
            for d in self.gpus:  # CPU: none, the work above is done; GPU: mark where this update's work ends
                with torch.cuda.device(d):
                    events.append(torch.cuda.Event())
                    events[-1].record()
            self.pending = (events, n, publish)
            if not events:
                self.finish()

    def flush(self) -> None:
        if self.pending is not None:
            self.finish()
        # perf.publish_every > 1 may have left the newest weights unpublished
        if self.published != self.learner.updates:
            self.own_snap.publish(net_tensors(self.own))
            self.published = self.learner.updates

    def finish(self) -> None:
        """Count the pending update as done: its gather (so the actor may overwrite those rows) and its
        snapshot copy must have finished. On a GPU the host waits on an event, not on the device: the next
        update is already queued behind it."""
        events, n, publish = self.pending
        self.pending = None
        for ev in events:
            ev.synchronize()
        if publish:
            self.own_snap.end()
            self.published = n
        self.lag_sum += n - self.published  # how many updates the readers' copy of our weights trails by
        self.lag_n += 1
        self.sh.ctr.set_updates(self.role, n)
        # the P-learner waits on critic updates (a policy update wakes it needlessly)
        self.sh.wake("actor", "p_learner")
