"""`mode=trio`: PQL's actor, V-learner and P-learner as three processes sharing memory.

The main process owns the simulator and runs the actor (Isaac Gym wants the sim in the main process);
the V-learner (critic) and the P-learner (policy) run in two spawned processes. Nothing is copied per
step through pipes or the host: every shared tensor is allocated once (shared memory on CPU, CUDA IPC
on GPU) and the roles talk through it. This module is the protocol; the learners' side is
`learner_proc.py`, the actor's side (and `run`) is `actor_side.py`.

Shared state
    ctr       int64 CPU counters (`Counters`, named views over one tensor): rows committed to replay,
              learn steps, critic / policy updates, stop / error flags, and a request / acknowledge pair
              per learner (stats or state)
    replay    the replay storage, on the V-learner's device (the actor copy_'s its rows into it)
    policy    a double-buffered snapshot of the policy (log_alpha included), written by the P-learner,
              read by the actor and the V-learner
    critic    a double-buffered snapshot of the critic, written by the V-learner, read by the P-learner
    norm      a double-buffered snapshot of the observation normaliser (and the privileged critic
              observation's own, where the env has one), written by the actor
    stats     float64 per learner (`LearnerStats`): loss sums, wait and busy seconds, filled on request at
              log points

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

import time
from fractions import Fraction
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import torch

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from multiprocessing.context import BaseContext

    from pql_scaling.core.replay import Normalizer, Replay
    from pql_scaling.runtime.session import Session

LAG = 2  # actor steps the actor may run ahead of what both learners have consumed
ROLES = ("actor", "v_learner", "p_learner")
Device = Union[str, torch.device]
STATS, STATE = 1, 2  # request kinds (Counters.req_kind)


def _slot(i: int, doc: str) -> property:
    def get(self: "Counters") -> int:
        return int(self.t[i])

    def put(self: "Counters", value: int) -> None:
        self.t[i] = value

    return property(get, put, doc=doc)


class Counters:
    """Named views of the shared int64 counters: one CPU tensor in shared memory, laid out as below.

    Each getter is one load (`int(t[i])`) and each setter one store (`t[i] = v`), so the order of a
    role's reads and writes stays the order written at the call site: the wrap-safety argument and the
    request protocol depend on it (e.g. the actor stores `rows` before `learn`, a learner loads `learn`
    before `rows`)."""

    ROWS, LEARN, CRITIC, POLICY, STOP, ERROR, REQ, REQ_KIND, ACK_V, ACK_P = range(10)  # the layout
    SIZE = 10
    _UPDATES = {"v_learner": CRITIC, "p_learner": POLICY}
    _ACK = {"v_learner": ACK_V, "p_learner": ACK_P}

    def __init__(self, tensor: Optional[torch.Tensor] = None) -> None:
        self.t = torch.zeros(self.SIZE, dtype=torch.int64).share_memory_() if tensor is None else tensor

    rows = _slot(ROWS, "rows committed to replay (stored before `learn`)")
    learn = _slot(LEARN, "actor steps taken with at least learning_starts rows in replay")
    critic_updates = _slot(CRITIC, "V-learner updates done (whose gathers have finished)")
    policy_updates = _slot(POLICY, "P-learner updates done")
    stop = _slot(STOP, "1: the main process tells the learners to leave")
    error = _slot(ERROR, "nonzero: ROLES.index of a learner that failed")
    req = _slot(REQ, "the main process's request number")
    req_kind = _slot(REQ_KIND, "STATS or STATE (stored before `req`)")
    ack_v = _slot(ACK_V, "the last request the V-learner answered")
    ack_p = _slot(ACK_P, "the last request the P-learner answered")

    def set_updates(self, role: str, n: int) -> None:
        """Store `role`'s update count (critic_updates or policy_updates)."""
        self.t[self._UPDATES[role]] = n

    def acked(self, role: str) -> int:
        return int(self.t[self._ACK[role]])

    def acknowledge(self, role: str, req: int) -> None:
        self.t[self._ACK[role]] = req


class LearnerStats(NamedTuple):
    """A learner's answer to a request, as its float64 shared row:
    [updates, losses (the learner's 3 stats sums; a population's 3 per member, member-major), wait_s, busy_s,
    lag_sum, lag_n]."""

    updates: float
    losses: List[float]
    wait_s: float  # seconds waited at the gate, cumulative
    busy_s: float  # seconds since the learner loop started
    lag_sum: float  # updates the readers' copy of its weights trailed by, summed over updates
    lag_n: float  # updates counted in lag_sum

    def to_tensor(self) -> torch.Tensor:
        row = [self.updates] + list(self.losses) + [self.wait_s, self.busy_s, self.lag_sum, self.lag_n]
        return torch.tensor(row, dtype=torch.float64)

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> "LearnerStats":
        st = t.tolist()
        return cls(st[0], st[1:-4], st[-4], st[-3], st[-2], st[-1])


def stats_size(members: int = 1) -> int:
    """LearnerStats.to_tensor's length for a population of `members` (1: a single run)."""
    return 5 + 3 * members


STATS_SIZE = stats_size()


class Schedule:
    """base + floor(owed + ratio * (x - origin)) in integers: how many updates are due at x > origin; at the
    origin only `base`. A resumed run's whole-update debts (`owed` >= 1: the updates the learners still owed
    when the checkpoint was taken) thus fall due with the first step after it, as sync mode pays them: a
    learner runs only once that step is in replay, so the debt never waits on rows the actor may not write."""

    def __init__(
        self, base: int, owed: Union[int, Fraction], ratio: Union[float, Fraction], origin: int = 0
    ) -> None:
        owed, ratio = Fraction(owed), Fraction(str(ratio))
        self.base, self.origin, self.den = int(base), int(origin), owed.denominator * ratio.denominator
        self.c0, self.c1 = owed.numerator * ratio.denominator, ratio.numerator * owed.denominator

    def __call__(self, x: int) -> int:
        if x <= self.origin:
            return self.base
        return self.base + (self.c0 + self.c1 * (x - self.origin)) // self.den

    def owed(self, x: int, done: int) -> Fraction:
        """The exact debt at x with `done` updates, as sync mode keeps it (a Fraction)."""
        return Fraction(self.c0 + self.c1 * (x - self.origin), self.den) - (done - self.base)


def wait_queued(*devices: Device) -> None:
    """Wait (on the host) for the work queued so far on these devices' current streams: an event each,
    never a device-wide synchronize, so work on a side stream (a snapshot read) or still queued elsewhere
    is not waited for. CPU devices need nothing: a CPU copy_ is done when it returns."""
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
    announces it, or with offer() does not wait at all and announces the copy on a later call once it is
    done. A reader copies the slot into a staging buffer on a side stream, waits for that copy alone (not
    for the update its compute stream may still be running), validates, and then queues staging -> tensors
    on its compute stream, where stream order puts it after the work already queued and before the next."""

    # seq layout: publishes, sequence of slot 0, of slot 1, version held by slot 0, by slot 1
    PUBLISHES, SEQ, VERSION = 0, 1, 3  # SEQ + i, VERSION + i: slot i's

    def __init__(self, tensors: Sequence[torch.Tensor], device: Device) -> None:
        sizes = [t.numel() for t in tensors]
        self.device = torch.device(device)
        self.slots = torch.zeros(2, sum(sizes), device=self.device, dtype=tensors[0].dtype)
        self.seq = torch.zeros(5, dtype=torch.int64)
        if self.device.type == "cpu":
            self.slots.share_memory_()
        self.seq.share_memory_()
        self.sizes = sizes
        self.pending = None  # offer(): the event of a queued copy not yet announced
        self.reader = None  # CUDA readers: (side stream, 2 staging buffers, 2 "consumed" events), per process

    def __getstate__(self) -> Dict[str, Any]:
        # what the learner processes receive: no events, streams or buffers of ours
        state = dict(self.__dict__)
        state["pending"] = state["reader"] = None
        return state

    def _views(self, i: int, tensors: Sequence[torch.Tensor]) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        return zip(tensors, self.slots[i].split(self.sizes))

    def publish(self, tensors: Sequence[torch.Tensor]) -> None:
        self.begin(tensors)
        wait_queued(self.device, tensors[0].device)  # the bytes must be there before we say so
        self.end()

    def offer(self, tensors: Sequence[torch.Tensor]) -> None:
        """publish() without waiting on a GPU: announce the copy queued by the last offer if it is done, then
        queue a new one (none while the last is still copying). On the CPU the same as publish()."""
        if self.pending is not None:
            if not self.pending.query():
                return
            self.pending = None
            self.end()
        if self.device.type != "cuda" or tensors[0].device != self.device:
            self.publish(tensors)
            return
        self.begin(tensors)
        self.pending = torch.cuda.Event()
        self.pending.record()

    def begin(self, tensors: Sequence[torch.Tensor]) -> None:
        """Mark the older slot odd and queue the copy into it; end() (once the copy is done) makes it
        current."""
        p = int(self.seq[self.PUBLISHES])
        i = p % 2  # the older slot; readers are pointed at the other one
        self.seq[self.SEQ + i] += 1  # odd: being written
        with torch.no_grad():
            for t, view in self._views(i, tensors):
                view.copy_(t.reshape(-1))

    def end(self) -> None:
        p = int(self.seq[self.PUBLISHES])
        i = p % 2
        self.seq[self.VERSION + i] = p + 1
        self.seq[self.SEQ + i] += 1  # even: whole
        self.seq[self.PUBLISHES] = p + 1

    def load(self, tensors: Sequence[torch.Tensor], seen: int = -1) -> int:
        """Copy the newest whole snapshot into `tensors`; returns its version (no copy if it is `seen`)."""
        cuda = tensors[0].device.type == "cuda" or self.device.type == "cuda"
        while True:
            p = int(self.seq[self.PUBLISHES])
            if p == seen:
                return p
            i = (p - 1) % 2
            s = int(self.seq[self.SEQ + i])
            if s % 2:
                continue  # the writer has already moved on to rewrite this slot: take the newer one
            if cuda:
                staged = self._stage(i, tensors[0].device)
            else:
                with torch.no_grad():
                    for t, view in self._views(i, tensors):
                        t.copy_(view.view_as(t))
            version = int(self.seq[self.VERSION + i])
            if int(self.seq[self.SEQ + i]) == s:
                if cuda:
                    self._unstage(staged, tensors)
                return version

    def _stage(self, i: int, device: torch.device) -> int:
        """Copy slot i into a staging buffer on a side stream and wait for that copy only; returns the
        buffer's index."""
        if self.reader is None:
            with torch.cuda.device(device):
                side = torch.cuda.Stream()
            staging = [
                torch.empty(self.slots.shape[1], dtype=self.slots.dtype, device=device) for _ in range(2)
            ]
            self.reader = [side, staging, [None, None], 0]
        side, staging, consumed, j = self.reader
        with torch.cuda.stream(side), torch.no_grad():
            if consumed[j] is not None:
                # a device-side wait: the last unstage from this buffer was queued
                side.wait_event(consumed[j])
            staging[j].copy_(self.slots[i])
            done = torch.cuda.Event()
            done.record(side)
        done.synchronize()  # the copy must be finished before we validate it
        return j

    def _unstage(self, j: int, tensors: Sequence[torch.Tensor]) -> None:
        side, staging, consumed, _ = self.reader
        with torch.no_grad():
            for t, view in zip(tensors, staging[j].split(self.sizes)):
                t.copy_(view.view_as(t))
        consumed[j] = torch.cuda.Event()
        consumed[j].record()  # on the compute stream, after the copies just queued
        self.reader[3] = 1 - j


def net_tensors(module: torch.nn.Module) -> List[torch.Tensor]:
    return [p.data for p in module.parameters()]


def norm_tensors(norm: "Normalizer") -> List[torch.Tensor]:
    """The statistics the actor publishes: the policy observation's, then the critic observation's own."""
    own = [norm.mean, norm.var, norm.count.view(1)]
    return own if norm.critic is None else own + norm_tensors(norm.critic)


def bounds(replay: "Replay", rows: int) -> Tuple[int, int]:
    """(size, start) of the rows a learner may sample: the committed ones, less the LAG*num_envs that may
    be rewritten."""
    guard = LAG * replay.num_envs
    size = min(rows, replay.capacity - guard)
    start = max(rows + guard - replay.capacity, 0) % replay.capacity
    return size, start


class Doorbell:
    """A wake-up for one waiting role: ring() never blocks (multiprocessing.Event.set would wait for every
    sleeper to wake), and rings that came while nobody waited are drained by clear()."""

    def __init__(self, ctx: "BaseContext") -> None:
        self.sem = ctx.Semaphore(0)

    def ring(self) -> None:
        self.sem.release()

    def clear(self) -> None:
        while self.sem.acquire(False):
            pass

    def wait(self, timeout: float) -> None:
        self.sem.acquire(True, timeout)


class Shared:
    """Everything the three roles share; built once by the main process and passed to the learners."""

    def __init__(self, s: "Session", ctx: "BaseContext", devices: Dict[str, str]) -> None:
        a = s.cfg.algo
        self.devices = devices
        self.ctr = Counters()
        members = s.v_learner.members  # a population's learners update K members as one batch
        self.stats = {
            r: torch.zeros(stats_size(members), dtype=torch.float64).share_memory_() for r in ROLES[1:]
        }
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
        # the checkpoint's debts, whole updates included (up to LAG steps' worth, more after a time stop): paid
        # from the first learning step on (Schedule), so the counts stay exactly sync mode's across resume
        critic_owed = Fraction(s.counters.get("critic_owed", 0))
        policy_owed = Fraction(s.counters.get("policy_owed", 0))
        self.critic_due = Schedule(u0, critic_owed, a.critic_updates_per_step)
        self.policy_due = Schedule(p0, policy_owed, a.policy_updates_per_critic_update, u0)
        # num_envs: all the envs (K x num_envs in a population); the replay rings hold num_envs / K rows a step
        self.learning_starts, self.num_envs = s.learning_starts, s.env.num_envs
        # where the V-learner says the actor died (nobody else is left to): the run, or each population member
        self.status_dirs = list(getattr(s, "status_dirs", None) or [s.run.path])
        self.ctr.critic_updates, self.ctr.policy_updates = u0, p0

    def paid(self, critic: int, policy: int) -> bool:
        """Have both learners done at least these many updates? (critic's count read first)"""
        return self.ctr.critic_updates >= critic and self.ctr.policy_updates >= policy

    def wake(self, *roles: str) -> None:
        for r in roles:
            self.events[r].ring()

    def wait(self, role: str, ready: Callable[[], bool], service: Callable[[], None]) -> float:
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
