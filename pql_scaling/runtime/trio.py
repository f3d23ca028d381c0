"""`mode=trio`: PQL's actor, V-learner and P-learner as three processes sharing memory.

The main process owns the simulator and runs the actor (Isaac Gym wants the sim in the main process);
the V-learner (critic) and the P-learner (policy) run in two spawned processes. Nothing is copied per
step through pipes or the host: every shared tensor is allocated once (shared memory on CPU, CUDA IPC
on GPU) and the roles talk through it.

Shared state
    ctr       int64 CPU counters: rows committed to replay, learn steps, critic / policy updates,
              stop / error flags, and a request / acknowledge pair per learner (stats or state)
    replay    the replay storage, on the V-learner's device (the actor copy_'s its rows into it)
    policy    a double-buffered snapshot of the policy (log_alpha included), written by the P-learner,
              read by the actor and the V-learner
    critic    a double-buffered snapshot of the critic, written by the V-learner, read by the P-learner
    norm      a double-buffered snapshot of the observation normaliser, written by the actor
    stats     float64 per learner: loss sums, wait and busy seconds, filled on request at log points

Ratios (exact, integer arithmetic). With l = actor steps taken while the replay held at least
`learning_starts` rows, the V-learner may run its update u+1 only while u+1 <= Cv(l) = floor(r_c * l)
and the P-learner its update p+1 only while p+1 <= Cp(u) = floor(r_p * u) (plus the fractional debts a
checkpoint carried). The actor in turn may write the rows that make l = l' only once both learners
finished the updates owed at l' - LAG: it never runs more than LAG steps ahead. At the end of a run
the actor waits for the learners to pay what is owed, so the final counts equal sync mode's.

Wrap safety (why no learner ever reads a row being written). A learner passes its gate with some u
(or p) done and l read, then reads `rows` committed and samples. Until its update ends its count
stays put, so the actor can only write rows whose l' satisfies Cv(l' - LAG) <= u < Cv(l) (resp. the
P-learner's composition), i.e. l' <= l + LAG - 1: at most (LAG - 1) * num_envs rows after those it saw.
Learners therefore sample only the committed rows *except* the oldest LAG * num_envs of the ring (the
next to be overwritten). On CUDA a learner waits for its gather before counting the update done, and
the actor synchronises its copy before committing rows.

Snapshots are seqlocks over two slots: the writer marks a slot odd, writes it, marks it even, then
points readers at it; a reader copies the newest slot and retries if its sequence number moved.
The CPU protocols rely on stores (and loads) not being reordered with each other, which x86-64
guarantees; a weakly ordered CPU (ARM) would need explicit fences here.

Waiting: a role that must wait clears its doorbell (a semaphore), re-checks its condition and sleeps on
the doorbell; whoever moves a counter it waits on rings it. The 50 ms timeout only paces the checks for
a dead process, an error flag and a stop signal (SIGINT / SIGTERM are turned into KeyboardInterrupt at
those safe points, never inside a wait on a shared primitive).
"""
import io
import logging
import os
import signal
import time
import traceback
from fractions import Fraction

import torch
import torch.multiprocessing as mp

from pql_scaling import config as config_lib
from pql_scaling.core import nets
from pql_scaling.runtime.learner import PLearner, VLearner
from pql_scaling.core.replay import Normalizer, Replay
from pql_scaling.rundir.disk import to_host, write_atomic, write_json_atomic

LAG = 2  # actor steps the actor may run ahead of what both learners have consumed
ROLES = ("actor", "v_learner", "p_learner")
# ctr layout
ROWS, LEARN, CRITIC, POLICY, STOP, ERROR, REQ, REQ_KIND, ACK_V, ACK_P = range(10)
STATS, STATE = 1, 2  # request kinds
log = logging.getLogger("pql_scaling")


class RoleFailed(RuntimeError):
    pass


class ActorGone(SystemExit):
    """The main process (the actor) is gone without telling us: killed (SIGKILL, the OOM killer) or crashed."""


class Schedule:
    """base + floor(owed + ratio * (x - origin)) in integers: how many updates are due at x."""

    def __init__(self, base, owed, ratio, origin=0):
        owed, ratio = Fraction(owed), Fraction(str(ratio))
        self.base, self.origin, self.den = int(base), int(origin), owed.denominator * ratio.denominator
        self.c0, self.c1 = owed.numerator * ratio.denominator, ratio.numerator * owed.denominator

    def __call__(self, x):
        return self.base + (self.c0 + self.c1 * (x - self.origin)) // self.den

    def owed(self, x, done):
        """The exact debt at x with `done` updates, as sync mode keeps it (a Fraction)."""
        return Fraction(self.c0 + self.c1 * (x - self.origin), self.den) - (done - self.base)


def wait_queued(*devices):
    """Wait (on the host) for the work queued so far on these devices' current streams: an event each, never a
    device-wide synchronize, so work on a side stream (a snapshot read) or still queued elsewhere is not waited
    for. CPU devices need nothing: a CPU copy_ is done when it returns."""
    for d in {torch.device(d) for d in devices}:
        if d.type == "cuda":
            with torch.cuda.device(d):
                ev = torch.cuda.Event()
                ev.record()
            ev.synchronize()


class Snapshot:
    """A seqlock over two slots holding a flat copy of some tensors, on the writer's device.

    Each slot carries the version it holds, and a reader returns that stamp: between reading the
    publish counter and validating its slot, the writer may have finished two more publishes into the
    same slot, so the counter alone could name an older version than the bytes copied.

    On a GPU nothing here waits for the whole device. A writer waits (an event) for its own copy before it
    announces it, or with offer() does not wait at all and announces the copy on a later call once it is done.
    A reader copies the slot into a staging buffer on a side stream, waits for that copy alone (not for the
    update its compute stream may still be running), validates, and then queues staging -> tensors on its
    compute stream, where stream order puts it after the work already queued and before the next."""

    def __init__(self, tensors, device):
        sizes = [t.numel() for t in tensors]
        self.device = torch.device(device)
        self.slots = torch.zeros(2, sum(sizes), device=self.device, dtype=tensors[0].dtype)
        # publishes, sequence of slot 0, of slot 1, version held by slot 0, by slot 1
        self.seq = torch.zeros(5, dtype=torch.int64)
        if self.device.type == "cpu":
            self.slots.share_memory_()
        self.seq.share_memory_()
        self.sizes = sizes
        self.pending = None  # offer(): the event of a queued copy not yet announced
        self.reader = None  # CUDA readers: (side stream, 2 staging buffers, 2 "consumed" events), per process

    def __getstate__(self):  # what the learner processes receive: no events, streams or buffers of ours
        state = dict(self.__dict__)
        state["pending"] = state["reader"] = None
        return state

    def _views(self, i, tensors):
        return zip(tensors, self.slots[i].split(self.sizes))

    def publish(self, tensors):
        self.begin(tensors)
        wait_queued(self.device, tensors[0].device)  # the bytes must be there before we say so
        self.end()

    def offer(self, tensors):
        """publish() without waiting on a GPU: announce the copy queued by the last offer if it is done, then queue
        a new one (none while the last is still copying). On the CPU the same as publish()."""
        if self.pending is not None:
            if not self.pending.query():
                return
            self.pending = None
            self.end()
        self.begin(tensors)
        if self.device.type == "cuda" and tensors[0].device == self.device:
            self.pending = torch.cuda.Event()
            self.pending.record()
        else:
            wait_queued(self.device, tensors[0].device)
            self.end()

    def begin(self, tensors):
        """Mark the older slot odd and queue the copy into it; end() (once the copy is done) makes it current."""
        p = int(self.seq[0])
        i = p % 2  # the older slot; readers are pointed at the other one
        self.seq[1 + i] += 1  # odd: being written
        with torch.no_grad():
            for t, view in self._views(i, tensors):
                view.copy_(t.reshape(-1))

    def end(self):
        p = int(self.seq[0])
        i = p % 2
        self.seq[3 + i] = p + 1
        self.seq[1 + i] += 1  # even: whole
        self.seq[0] = p + 1

    def load(self, tensors, seen=-1):
        """Copy the newest whole snapshot into `tensors`; returns its version (no copy if it is `seen`)."""
        cuda = tensors[0].device.type == "cuda" or self.device.type == "cuda"
        while True:
            p = int(self.seq[0])
            if p == seen:
                return p
            i = (p - 1) % 2
            s = int(self.seq[1 + i])
            if s % 2:
                continue  # the writer has already moved on to rewrite this slot: take the newer one
            if cuda:
                staged = self._stage(i, tensors[0].device)
            else:
                with torch.no_grad():
                    for t, view in self._views(i, tensors):
                        t.copy_(view.view_as(t))
            version = int(self.seq[3 + i])
            if int(self.seq[1 + i]) == s:
                if cuda:
                    self._unstage(staged, tensors)
                return version

    def _stage(self, i, device):
        """Copy slot i into a staging buffer on a side stream and wait for that copy only; returns the buffer's index."""
        if self.reader is None:
            with torch.cuda.device(device):
                side = torch.cuda.Stream()
            staging = [torch.empty(self.slots.shape[1], dtype=self.slots.dtype, device=device) for _ in range(2)]
            self.reader = [side, staging, [None, None], 0]
        side, staging, consumed, j = self.reader
        with torch.cuda.stream(side), torch.no_grad():
            if consumed[j] is not None:
                side.wait_event(consumed[j])  # a device-side wait: the last unstage from this buffer was queued
            staging[j].copy_(self.slots[i])
            done = torch.cuda.Event()
            done.record(side)
        done.synchronize()  # the copy must be finished before we validate it
        return j

    def _unstage(self, j, tensors):
        side, staging, consumed, _ = self.reader
        with torch.no_grad():
            for t, view in zip(tensors, staging[j].split(self.sizes)):
                t.copy_(view.view_as(t))
        consumed[j] = torch.cuda.Event()
        consumed[j].record()  # on the compute stream, after the copies just queued
        self.reader[3] = 1 - j


def net_tensors(module):
    return [p.data for p in module.parameters()]


def norm_tensors(norm):
    return [norm.mean, norm.var, norm.count.view(1)]


def bounds(replay, rows):
    """(size, start) of the rows a learner may sample: the committed ones, less the LAG*num_envs that may be rewritten."""
    guard = LAG * replay.num_envs
    size = min(rows, replay.capacity - guard)
    start = max(rows + guard - replay.capacity, 0) % replay.capacity
    return size, start


def sample(replay, rows, batch_size):
    """A uniform batch from the committed rows, leaving out the LAG*num_envs that may be rewritten."""
    size, start = bounds(replay, rows)
    return replay.sample(batch_size, size=size, start=start)


class Doorbell:
    """A wake-up for one waiting role: ring() never blocks (multiprocessing.Event.set would wait for every
    sleeper to wake), and rings that came while nobody waited are drained by clear()."""

    def __init__(self, ctx):
        self.sem = ctx.Semaphore(0)

    def ring(self):
        self.sem.release()

    def clear(self):
        while self.sem.acquire(False):
            pass

    def wait(self, timeout):
        self.sem.acquire(True, timeout)


class Shared:
    """Everything the three roles share; built once by the main process and passed to the learners."""

    def __init__(self, s, ctx, devices):
        a = s.cfg.algo
        self.devices = devices
        self.ctr = torch.zeros(10, dtype=torch.int64).share_memory_()
        self.stats = {r: torch.zeros(8, dtype=torch.float64).share_memory_() for r in ROLES[1:]}
        if s.replay.device.type == "cpu":
            for t in s.replay.data.values():
                t.share_memory_()
        self.replay_data = s.replay.data
        self.policy = Snapshot(net_tensors(s.p_learner.actor), devices["p_learner"])
        self.critic = Snapshot(net_tensors(s.v_learner.critic), devices["v_learner"])
        self.norm = Snapshot(norm_tensors(s.norm), devices["actor"])
        self.events = {r: Doorbell(ctx) for r in ROLES}  # "a counter you wait on moved"
        self.errors = ctx.SimpleQueue()
        u0, p0 = s.v_learner.updates, s.p_learner.updates
        # a checkpoint's whole-update debts are dropped: the replay may restart empty, and an owed update
        # that needs rows the actor is gated from writing would deadlock (at most LAG steps' worth)
        self.critic_due = Schedule(u0, Fraction(s.counters.get("critic_owed", 0)) % 1, a.critic_updates_per_step)
        self.policy_due = Schedule(p0, Fraction(s.counters.get("policy_owed", 0)) % 1, a.policy_updates_per_critic_update, u0)
        self.learning_starts, self.num_envs = s.learning_starts, s.env.num_envs
        self.ctr[CRITIC], self.ctr[POLICY] = u0, p0

    def wake(self, *roles):
        for r in roles:
            self.events[r].ring()

    def wait(self, role, ready, service):
        """Block `role` until ready(); returns seconds waited. The timeout only paces the liveness checks."""
        if ready():
            return 0.0
        t0 = time.perf_counter()
        ev = self.events[role]
        while True:
            ev.clear()  # clear, then check: a wake-up between the two is never lost
            service()
            if ready():
                return time.perf_counter() - t0
            ev.wait(0.05)


# ---------------------------------------------------------------- learners (spawned processes)


def fault_at(role):
    """Fault injection for tests: PQL_TRIO_FAULT=role:n makes `role` raise at its n-th update/step."""
    spec = os.environ.get("PQL_TRIO_FAULT", "")
    name, _, n = spec.partition(":")
    return int(n) if name == role and n else None


def learner_main(role, cfg, obs_dim, act_dim, sh, init_state, log_path, parent_pid, loop_cls=None):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the actor decides
    torch.set_num_threads(cfg.threads or 1)
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(processName)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        (loop_cls or LearnerLoop)(role, cfg, obs_dim, act_dim, sh, init_state, log_path, parent_pid).run()
    except ActorGone:
        code = 1
        log.error("%s: the actor (main process, pid %d) is gone; stopping", role, parent_pid)
        if role == "v_learner":  # nobody else is left to say what happened
            run_path = os.path.dirname(log_path)
            try:
                write_json_atomic(os.path.join(run_path, "status.json"), dict(
                    status="failed", time=time.strftime("%Y-%m-%dT%H:%M:%S"), detected_by=role,
                    reason="the actor (main process, pid %d) died without a word: killed (SIGKILL, the OOM killer, a "
                           "preemption without SIGTERM) or crashed; the learners stopped; continue with resume=%s"
                           % (parent_pid, run_path)))
            except Exception as e:  # noqa: BLE001 - a full disk must not keep this process alive
                log.error("could not write status.json: %s", e)
    except SystemExit:
        code = 0  # told to stop
    except BaseException as e:  # noqa: BLE001 - every failure must reach the main process
        log.error("%s failed:\n%s", role, traceback.format_exc())
        sh.errors.put((role, "%s: %s" % (type(e).__name__, e)))
        sh.ctr[ERROR] = ROLES.index(role)
        sh.wake(*ROLES)
        code = 1
    handler.close()
    # skip the interpreter's teardown (seconds with torch loaded); nothing is left to flush, and the
    # kernel closes the shared-memory descriptors
    os._exit(code)


class LearnerLoop:
    def __init__(self, role, cfg, obs_dim, act_dim, sh, init_state, log_path, parent_pid):
        self.role, self.sh, self.parent_pid = role, sh, parent_pid
        self.device = device = torch.device(sh.devices[role])
        if device.type == "cuda":
            torch.cuda.set_device(device)
        self.state_path = os.path.join(os.path.dirname(log_path), "checkpoints", "." + role + ".pt")
        actor_net, critic = (m.to(device) for m in nets.build(cfg, obs_dim, act_dim))
        self.norm = Normalizer(obs_dim, device, clip=cfg.algo.obs_clip, enabled=cfg.algo.obs_norm)
        rdev = next(iter(sh.replay_data.values())).device
        self.replay = Replay(cfg.algo.buffer_size, obs_dim, act_dim, sh.num_envs, rdev, storage=sh.replay_data)
        if role == "v_learner":
            self.learner = VLearner(cfg, critic, actor_net, self.norm, device)
            self.view, self.view_snap, self.own_snap, self.counter = actor_net, sh.policy, sh.critic, CRITIC
            self.own = critic
        else:
            self.learner = PLearner(cfg, actor_net, critic, self.norm, device, act_dim)
            self.view, self.view_snap, self.own_snap, self.counter = critic, sh.critic, sh.policy, POLICY
            self.own = actor_net
        self.learner.load_state_dict(init_state)
        # each learner its own sample stream, different across seeds, roles and resumes
        torch.manual_seed(cfg.seed + 1000003 * ROLES.index(role) + 7919 * self.learner.updates)
        self.ack = ACK_V if role == "v_learner" else ACK_P
        self.seen_view = self.seen_norm = -1
        self.wait_s, self.t0 = 0.0, time.perf_counter()
        self.fault = fault_at(role)
        # perf.publish_every: snapshots every k updates (a GPU update can outrun its copy); finish() publishes
        # an update's count once its work is done, one update late on a GPU so the host can queue ahead
        self.publish_every = cfg.perf.publish_every
        self.gpus = sorted({str(d) for d in (self.replay.device, device) if d.type == "cuda"})
        self.pending, self.published, self.lag_sum, self.lag_n = None, self.learner.updates, 0, 0
        log.info("%s ready on %s (%d updates done)", role, device, self.learner.updates)

    def ready(self):
        """The gate: is this learner's next update due? Reads in the order the wrap-safety proof needs."""
        sh, n = self.sh, self.learner.updates + 1
        if self.role == "v_learner":
            learn = int(sh.ctr[LEARN])
            return learn > 0 and n <= sh.critic_due(learn)
        critic = int(sh.ctr[CRITIC])
        return int(sh.ctr[LEARN]) > 0 and n <= sh.policy_due(critic)

    def service(self):
        """Answer the main process's requests; leave when told to stop or when the main process is gone."""
        sh = self.sh
        if os.getppid() != self.parent_pid:
            raise ActorGone(1)
        if int(sh.ctr[STOP]):
            raise SystemExit(0)
        req = int(sh.ctr[REQ])
        if req == int(sh.ctr[self.ack]):
            return
        self.flush()  # answer with every queued update counted and the newest weights published
        if int(sh.ctr[REQ_KIND]) == STATE:  # atomic; a full disk raises DiskFull naming it
            buf = io.BytesIO()
            torch.save(self.learner.state_dict(), buf)
            write_atomic(self.state_path, buf.getvalue())
        stats = self.learner.stats.tolist()  # the only host sync of a learner, once per log point
        self.learner.stats.zero_()
        row = [self.learner.updates] + stats + [self.wait_s, time.perf_counter() - self.t0, self.lag_sum, self.lag_n]
        sh.stats[self.role].copy_(torch.tensor(row, dtype=torch.float64))
        sh.ctr[self.ack] = req
        sh.wake("actor")

    def run(self):
        sh = self.sh
        while True:
            if (self.pending is not None or self.published != self.learner.updates) and not self.ready():
                self.flush()  # before sleeping, publish what is queued: the others may be waiting on it
            self.wait_s += sh.wait(self.role, self.ready, self.service)
            self.service()
            self.seen_norm = sh.norm.load(norm_tensors(self.norm), self.seen_norm)
            self.seen_view = self.view_snap.load(net_tensors(self.view), self.seen_view)
            if self.fault is not None and self.learner.updates + 1 >= self.fault:
                raise RuntimeError("injected fault in %s at update %d" % (self.role, self.learner.updates + 1))
            self.learner.learn(self.replay, *bounds(self.replay, int(sh.ctr[ROWS])))  # queued, on a GPU
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

    def flush(self):
        if self.pending is not None:
            self.finish()
        if self.published != self.learner.updates:  # perf.publish_every > 1 left the newest weights unpublished
            self.own_snap.publish(net_tensors(self.own))
            self.published = self.learner.updates

    def finish(self):
        """Count the pending update as done: its gather (so the actor may overwrite those rows) and its snapshot
        copy must have finished. On a GPU the host waits on an event, not on the device: the next update is
        already queued behind it."""
        events, n, publish = self.pending
        self.pending = None
        for ev in events:
            ev.synchronize()
        if publish:
            self.own_snap.end()
            self.published = n
        self.lag_sum += n - self.published  # how many updates the readers' copy of our weights trails by
        self.lag_n += 1
        self.sh.ctr[self.counter] = n
        self.sh.wake("actor", "p_learner")  # the P-learner waits on critic updates (a policy update wakes it needlessly)


# ---------------------------------------------------------------- the actor (main process)


class GatedReplay:
    """What the actor writes through: wait for the gate, copy the rows in, then commit them."""

    def __init__(self, s, sh, trio):
        self.replay, self.sh, self.trio = s.replay, sh, trio
        self.learn = 0  # actor steps taken with at least learning_starts rows in replay (since start/resume)

    def add(self, *row):
        r, sh = self.replay, self.sh
        learn = self.learn + (min(r.rows + r.num_envs, r.capacity) >= sh.learning_starts)
        owed_c = sh.critic_due(max(learn - LAG, 0))
        owed_p = sh.policy_due(owed_c)
        self.trio.actor_wait += sh.wait(
            "actor", lambda: int(sh.ctr[CRITIC]) >= owed_c and int(sh.ctr[POLICY]) >= owed_p, self.trio.check)
        r.add(*row)
        wait_queued(r.device, row[0].device)  # rows are committed only once their bytes are in the replay
        sh.ctr[ROWS] = r.rows  # rows before learn: a learner reads learn first, then rows
        sh.ctr[LEARN] = self.learn = learn
        sh.wake("v_learner")


class Trio:
    def __init__(self, s, loop_cls=None):  # loop_cls: a LearnerLoop subclass, for tests
        self.s, cfg = s, s.cfg
        self.devices = {role: config_lib.normalise_device(getattr(cfg, role + "_device") or cfg.device) for role in ROLES}
        guard = LAG * s.env.num_envs
        if s.replay.capacity < guard + s.learning_starts:
            raise ValueError("algo.buffer_size=%d is too small for mode=trio with num_envs=%d: it needs at least "
                             "%d rows (learning_starts + %d rows kept clear of the actor's writes)"
                             % (cfg.algo.buffer_size, s.env.num_envs, guard + s.learning_starts, guard))
        ctx = mp.get_context("spawn")
        self.sh = sh = Shared(s, ctx, self.devices)
        sh.policy.publish(net_tensors(s.p_learner.actor))
        sh.critic.publish(net_tensors(s.v_learner.critic))
        sh.norm.publish(norm_tensors(s.norm))
        self.seen_policy = 1
        self.actor_wait, self.t0 = 0.0, time.perf_counter()
        self.last = {"t": self.t0, "steps": s.actor.steps, "actor": 0.0, "v_learner": [0.0] * 4, "p_learner": [0.0] * 4}
        self.gated = GatedReplay(s, sh, self)
        s.actor.replay = self.gated
        self.running = False
        self.fault = fault_at("actor")
        self.signal = None
        log_path = os.path.join(s.run.path, "train.log")
        # on the CPU: a child's optimiser state must be its own copy, not an IPC alias of the parent's mirror
        init = {"v_learner": to_host(s.v_learner.state_dict()), "p_learner": to_host(s.p_learner.state_dict())}
        self.procs = {}
        try:
            for role in ROLES[1:]:
                p = ctx.Process(target=learner_main, name=role, daemon=True,
                                args=(role, cfg, s.env.obs_dim, s.env.act_dim, sh, init[role], log_path, os.getpid(), loop_cls))
                p.start()
                self.procs[role] = p
                log.info("trio: %s is pid %d on %s", role, p.pid, self.devices[role])
        except BaseException:
            self.stop(graceful=False)
            raise
        self.running = True
        s.before_checkpoint = self.pull_state
        s.extra_metrics = self.metrics

    def on_signal(self, signum, frame):
        self.signal = signum  # raised at the next safe point: never inside a wait on a shared primitive

    def check(self):
        """Raise if a learner failed or died, or a stop signal came; cheap enough to call every actor step."""
        sh = self.sh
        if self.signal is not None:
            signum, self.signal = self.signal, None
            raise KeyboardInterrupt("signal %d" % signum)
        if int(sh.ctr[ERROR]) or not all(p.is_alive() for p in self.procs.values()):
            reasons = []
            while not sh.errors.empty():
                role, msg = sh.errors.get()
                reasons.append("%s failed: %s" % (role, msg))
            for role, p in self.procs.items():
                if not p.is_alive() and not any(r.startswith(role) for r in reasons):
                    reasons.append("%s process (pid %d) died with exit code %s" % (role, p.pid, p.exitcode))
            raise RoleFailed("; ".join(reasons) + " (traceback, if any, in train.log)")

    def request(self, kind):
        """Ask both learners for stats (and their state); wait until both answered."""
        sh = self.sh
        sh.ctr[REQ_KIND] = kind
        sh.ctr[REQ] += 1  # kind before the request number: a learner reads them in the other order
        req = int(sh.ctr[REQ])
        sh.wake("v_learner", "p_learner")
        self.actor_wait += sh.wait("actor", lambda: int(sh.ctr[ACK_V]) == req and int(sh.ctr[ACK_P]) == req, self.check)
        for role, mirror in (("v_learner", self.s.v_learner), ("p_learner", self.s.p_learner)):
            st = sh.stats[role].tolist()
            mirror.updates = int(st[0])
            mirror.stats.copy_(torch.tensor(st[1:4], dtype=mirror.stats.dtype))
            if kind == STATE:
                path = os.path.join(self.s.run.ckpt_dir, "." + role + ".pt")
                mirror.load_state_dict(torch.load(path, map_location=mirror.stats.device, weights_only=False))
        if kind == STATE:
            s = self.s
            s.counters["critic_owed"] = sh.critic_due.owed(self.gated.learn, s.v_learner.updates)
            s.counters["policy_owed"] = sh.policy_due.owed(s.v_learner.updates, s.p_learner.updates)

    def pull_state(self):
        if self.running:
            self.request(STATE)

    def metrics(self):
        """Per-role throughput and waiting since the last log point (learners' figures from the last request)."""
        now, last, steps = time.perf_counter(), self.last, self.s.actor.steps
        dt = max(now - last["t"], 1e-9)
        row = {"actor_steps_per_s": (steps - last["steps"]) / dt, "actor_wait_s": round(self.actor_wait, 3),
               "actor_wait_frac": (self.actor_wait - last["actor"]) / dt}
        for role, short in (("v_learner", "v"), ("p_learner", "p")):
            st = self.sh.stats[role].tolist()
            wait, busy, lag, n = st[4], st[5], st[6], st[7]
            row[short + "_wait_s"] = round(wait, 3)
            row[short + "_wait_frac"] = (wait - last[role][0]) / max(busy - last[role][1], 1e-9)
            # perf.publish_every's cost: by how many updates the others' copy of these weights trailed, on average
            row[short + "_snapshot_lag"] = (lag - last[role][2]) / max(n - last[role][3], 1)
            last[role] = [wait, busy, lag, n]
        last.update(t=now, actor=self.actor_wait, steps=steps)
        return row

    def stop(self, graceful):
        """Pull the learners' final state (graceful) and end both processes on every path."""
        sh, t0 = self.sh, time.perf_counter()
        try:
            if graceful and self.running:
                self.request(STATE)
        finally:
            log.info("trio: state pulled in %.2f s", time.perf_counter() - t0)
            self.running = False
            sh.ctr[STOP] = 1
            sh.wake(*ROLES)
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
            for role in ROLES[1:]:
                for path in (os.path.join(self.s.run.ckpt_dir, "." + role + ".pt"),):
                    if os.path.exists(path):
                        os.remove(path)
            log.info("trio: learners stopped in %.2f s", time.perf_counter() - t0)


def run(s, loop_cls=None):
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
            sh.norm.offer(norm_tensors(s.norm))  # on a GPU: announced a step later, once copied, never waited for
            if actor.steps % cfg.log.every_steps == 0:
                trio.request(STATS)
                s.log_point(time.monotonic())
        # pay what is owed for the steps taken, so the final counts are exactly sync mode's; a time budget
        # is a hard stop instead (owing LAG steps' updates may take long when learners are slow, and the
        # debt stays in the checkpoint's counters)
        if s.stop_reason != "max_time_s":
            owed_c = sh.critic_due(trio.gated.learn)
            owed_p = sh.policy_due(owed_c)
            trio.actor_wait += sh.wait("actor", lambda: int(sh.ctr[CRITIC]) >= owed_c and int(sh.ctr[POLICY]) >= owed_p,
                                       trio.check)
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
