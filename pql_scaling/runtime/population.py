"""`population.size=K > 1`: K agents trained as one batch in one process, each member its own run directory.

The roles hold the members stacked (core/members.py: K x num_envs envs, K replay rings, member-stacked nets,
one random stream per member) and the sync loop (sync.py) or the trio (trio/: the V-learner updates the K
critics as one batch, the P-learner the K actors, at the trio's exact ratios, alike for every member) drives
them exactly as it drives one run: a member's update is its own loss, gradients, clip and AdamW step on its
own batch, so nothing flows between members.

Each member writes an ordinary run directory (population_dir/m<k>-s<seed>): config.yaml is the single run's
config it reproduces (its seed, its values of population.vary, population.size=1), run.json adds the population
(id, size, index) and the cost accounting, metrics.jsonl one row per log point from the member's own statistics,
status.json its own outcome, and checkpoints/ the member's slice of the state, in a single run's checkpoint
format. FLOPs are the member's own; wall_time_s is the population's clock (every member trains for all of it,
side by side). A member whose loss turns non-finite fails alone (status failed, reason named); the others go on.
"""

import json
import os
import signal
import time
import uuid
from typing import Any, Dict, List, Optional

import torch
from omegaconf import OmegaConf

from pql_scaling import config as config_lib
from pql_scaling import envs
from pql_scaling.config import Config
from pql_scaling.core import nets
from pql_scaling.envs.contract import critic_obs_dim
from pql_scaling.rundir import schema
from pql_scaling.rundir.console_lines import population_line as console_line
from pql_scaling.rundir.disk import log
from pql_scaling.rundir.display import Display
from pql_scaling.rundir.rundir import RunDir
from pql_scaling.runtime import resources, sync, trio
from pql_scaling.runtime.clock import TrainingClock
from pql_scaling.runtime.metrics import Diverged, MetricsLogger
from pql_scaling.runtime.population_ckpt import checkpoint_at, env_restorable, load_member_state, member_state
from pql_scaling.runtime.population_wandb import finish as finish_wandb
from pql_scaling.runtime.population_wandb import mirror as mirror_wandb
from pql_scaling.runtime.roles import Roles, build_roles, describe
from pql_scaling.runtime.session import Runtime


def member_config(cfg: Config, k: int, seeds: List[int], values: Dict[str, list], path: str) -> Config:
    """The single run member k is: its seed and varied values, population.size=1, its run directory."""
    m = OmegaConf.create(OmegaConf.to_container(cfg))
    m.seed, m.run_dir = seeds[k], path
    m.population = {"size": 1, "seeds": None, "vary": {}, "run_dirs": None}
    for key, vals in values.items():
        OmegaConf.update(m, key, vals[k])
    return m


class _Actor:
    """Member k's face of the actor, as MetricsLogger reads it."""

    def __init__(self, pop: "Population", k: int) -> None:
        self.pop, self.k = pop, k

    @property
    def steps(self) -> int:
        return self.pop.roles.actor.steps

    def pop_stats(self):
        return self.pop.stats["actor"][self.k]


class _Learner:
    def __init__(self, pop: "Population", role: str, k: int) -> None:
        self.pop, self.role, self.k = pop, role, k

    @property
    def updates(self) -> int:
        return getattr(self.pop.roles, self.role).updates

    def pop_stats(self) -> Dict[str, float]:
        return self.pop.stats[self.role][self.k]


class _Eval:
    """Member k's face of the population's evaluator: one evaluation of every member per log point that is
    due, each member's row given its own returns."""

    def __init__(self, pop: "Population", k: int, every: int) -> None:
        self.pop, self.k, self.every = pop, k, every
        self.next = every

    def due(self, env_steps: int) -> bool:
        return env_steps >= self.next

    def run(self, policy, norm, env_steps: int) -> Dict[str, Any]:
        self.next = (env_steps // self.every + 1) * self.every
        if self.pop.evals[0] != env_steps:
            self.pop.evals = (env_steps, self.pop.evaluator.run_members(policy, norm, env_steps))
        return dict(self.pop.evals[1][self.k])


class _Env:
    """A member's share of the env, as the metrics and the facts read it."""

    def __init__(self, num_envs: int, env: Any = None) -> None:
        self.num_envs = num_envs
        self.obs_dim, self.act_dim = getattr(env, "obs_dim", None), getattr(env, "act_dim", None)
        self.critic_obs_dim = critic_obs_dim(env) if env is not None else 0


class Member:
    """One member's run directory, clock and metrics logger (over its slice of the population's statistics)."""

    def __init__(self, pop: "Population", k: int, cfg: Config, flops: tuple) -> None:
        self.k, self.cfg = k, cfg
        self.run = RunDir(cfg.run_dir)
        self.clock = TrainingClock(cfg, pop.clock.process_start)
        self.counters: Dict[str, Any] = {"wall_time_s": 0.0, "run_id": uuid.uuid4().hex[:12]}
        view = Roles(
            None, None, None, None, None, _Learner(pop, "v_learner", k), _Learner(pop, "p_learner", k),
            _Actor(pop, k), pop.roles.actor_device, pop.roles.learning_starts, flops[0], flops[1],
        )  # fmt: skip
        view.p_learner.actor, view.norm = pop.roles.actor_net, pop.roles.norm  # what an evaluation runs
        ev = _Eval(pop, k, int(cfg.eval.every_steps)) if cfg.eval.every_steps else None
        self.metrics = MetricsLogger(cfg, self.run, _Env(pop.n), view, self.clock, self.counters, ev)
        self.status: Optional[str] = None  # set once the member is done: completed / failed
        self.reason: Optional[str] = None
        self.rewind_to: Optional[int] = None  # resumed: the W&B step its log points were superseded back to


class Population:
    """What sync.run drives (the Session's face: roles, counters, started, should_stop, log_point) for K
    members."""

    def __init__(self, cfg: Config, root: str, started: float, resuming: bool = False) -> None:
        self.cfg, self.root = cfg, root
        self.seeds, values = config_lib.member_seeds(cfg), config_lib.member_values(cfg)
        self.k, self.n = len(self.seeds), cfg.num_envs
        self.backend = cfg.backend or envs.default_backend(cfg.task)
        self.env = envs.make(
            cfg.task, self.k * self.n, device=cfg.device, seed=self.seeds[0], backend=self.backend,
            members=self.k, seeds=self.seeds, **config_lib.env_options(cfg, self.backend),
        )  # fmt: skip
        # Isaac Gym: one simulation seeded with the first member's seed draws every member's reset states, so a
        # member's envs are not those of a single run with its seed (run.json: population.envs_seeded_apart)
        self.envs_seeded_apart = bool(getattr(self.env, "members_seeded_apart", True))
        if not self.envs_seeded_apart:
            log.warning(
                "backend=%s: the %d members' envs are one simulation seeded with the first seed (%d), so a member "
                "is not reproducible as the single run with its seed (its envs' reset states differ); networks, "
                "replay, normalisers, the learners' random streams and checkpoints are each member's own",
                self.backend, self.k, self.seeds[0],
            )  # fmt: skip
        # the population keeps no replay segments: a member's checkpoint is a single run's, without replay
        self.roles = build_roles(_without_replay_store(cfg), self.env, None)
        self.learning_starts = self.roles.learning_starts
        self.counters: Dict[str, Any] = {"wall_time_s": 0.0}
        self.clock = TrainingClock(cfg, started)
        # the trio's hooks (Session.attach_runtime): its learners' state before a checkpoint, its metrics; the
        # learners log to the population's train.log and leave their state in its checkpoints/ for the actor
        self.runtime = Runtime()
        self.run, self.pulled = _PopulationDir(root), -1
        self.last_ckpt = time.monotonic()
        # the console (train(quiet=False)): the population's line beside a live bar on a terminal, else printed
        # every log.console_every_s
        self.display: Optional[Display] = None
        self.latest: Dict[str, Dict[int, float]] = {"return_mean": {}, "eval_return_mean": {}}
        self.signal: Optional[int] = None
        self.stats: Dict[str, list] = {}
        self.evaluator, self.evals = None, (None, [])  # evals: (env steps, each member's eval row)
        if cfg.eval.every_steps:
            from pql_scaling.runtime.evaluate import Evaluator

            self.evaluator = Evaluator(cfg, self.roles.actor_device, seeds=self.seeds)
        pid = uuid.uuid4().hex[:12]
        self.members: List[Member] = []
        for k, seed in enumerate(self.seeds):
            dirs = cfg.population.run_dirs
            path = dirs[k] if dirs is not None else os.path.join(root, "m%02d-s%d" % (k, seed))
            mcfg = member_config(cfg, k, self.seeds, values, path)
            bs = int(mcfg.algo.batch_size)
            with torch.random.fork_rng(devices=[]):
                a1, c1 = nets.build(mcfg, self.env.obs_dim, self.env.act_dim, critic_obs_dim(self.env))
            member = Member(self, k, mcfg, nets.update_flops(a1, c1, bs))
            self.members.append(member)
            if resuming:
                st = schema.read_status(os.path.join(member.run.path, schema.STATUS)) or {}
                # ended on its own (completed, diverged); not a member the population's failure ended (a
                # crash, a trio role killed: `population_failed`, or the trio's V-learner's `detected_by`)
                own = not (st.get("population_failed") or st.get("detected_by"))
                if st.get("status") in (schema.COMPLETED, schema.FAILED) and own:
                    member.status, member.reason = st["status"], st.get("reason")
                continue
            facts = describe(mcfg, _Env(self.n, self.env), _facts_roles(a1, c1, member, self.roles))
            facts.update(
                backend=self.backend,
                population={
                    "id": pid,
                    "size": self.k,
                    "index": k,
                    "dir": root,
                    "seeds": self.seeds,
                    "envs_seeded_apart": self.envs_seeded_apart,  # False: not the single run with its seed
                },
                wall_time_accounting="wall_time_s is the population's clock: all %d members trained side by "
                "side for all of it (a member's share of the machine is 1/%d of it)" % (self.k, self.k),
            )
            member.run.write_config(mcfg, facts)
            member.run.set_status("running")
        if not resuming:  # a member can always be resumed, even if the population dies at once
            for member in self.members:
                self.checkpoint(member)
        log.info("population of %d in %s: seeds %s", self.k, root, self.seeds)

    # ------------------------------------------------------------ sync.run's face of a Session

    @property
    def actor(self):
        return self.roles.actor

    @property
    def v_learner(self):
        return self.roles.v_learner

    @property
    def p_learner(self):
        return self.roles.p_learner

    @property
    def replay(self):
        return self.roles.replay

    @property
    def env_steps(self) -> int:  # per member
        return self.roles.actor.steps * self.n

    @property
    def norm(self):
        return self.roles.norm

    @property
    def status_dirs(self) -> List[str]:  # the trio's V-learner marks these failed if the actor dies
        return [m.run.path for m in self.members]

    def attach_runtime(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def stop_reason(self) -> Optional[str]:
        """Why the trio stops (max_time_s: a hard stop, owed updates are not paid)."""
        reasons = [m.clock.stop_reason for m in self.live()]
        return "max_time_s" if "max_time_s" in reasons else next((r for r in reasons if r), None)

    def live(self) -> List[Member]:
        return [m for m in self.members if m.status is None]

    def started(self) -> None:
        now = time.monotonic()
        for m in self.members:
            startup = m.clock.begin(now, self.actor.steps)
            m.metrics.restart(now)
            m.run.update_facts(startup_s=startup)
        self.clock.begin(now, self.actor.steps)

    def interrupt(self, signum: int) -> None:
        self.signal = signum  # raised by should_stop(), between two steps (Session.interrupt)

    def should_stop(self) -> bool:
        if self.signal is not None:
            signum, self.signal = self.signal, None
            raise KeyboardInterrupt("signal %d" % signum)
        stopping = [m for m in self.live() if m.clock.should_stop(self.env_steps, self.actor.steps)]
        if self.cfg.mode == "trio" and stopping and len(stopping) == len(self.live()):
            return True  # the trio's end: it pays the updates owed first, then end() logs and finishes them
        if any(m.metrics.unlogged_progress() for m in stopping):  # their last steps get a row, as a run's do
            self.log_point(time.monotonic())
        for m in stopping:
            if m.status is None:
                self._finish(m, "completed", m.clock.stop_reason)
        return not self.live()

    def log_point(self, now: float) -> None:
        """One metrics row per live member, from one read of the device; a member whose statistics are not
        finite fails alone."""
        self.stats = {
            "actor": self.actor.member_stats(),
            "v_learner": self.v_learner.member_stats(),
            "p_learner": self.p_learner.member_stats(),
        }
        extra = self.runtime.extra_metrics()  # the trio's per-role rates and waits, alike for every member
        due = now - self.last_ckpt >= self.cfg.log.checkpoint_every_s
        for m in self.live():
            try:
                row, _ = m.metrics.log_point(now, lambda: dict(extra))
                for key in ("return_mean", "eval_return_mean"):
                    if row.get(key) is not None:
                        self.latest[key][m.k] = row[key]
            except Diverged as e:
                log.error("member %d (seed %d): %s", m.k, self.seeds[m.k], e)
                self._finish(m, "failed", str(e))
            else:
                if due:
                    self.checkpoint(m)
                if m.clock.stop_reason is not None:  # target_return
                    self._finish(m, "completed", m.clock.stop_reason)
        if due:
            self.last_ckpt = now
        if self.display is not None:
            line = console_line(
                self.env_steps,
                self.cfg.max_env_steps,
                self.latest,
                len(self.live()),
                self.clock.wall_time(now),
            )
            self.display.show(line, self.env_steps, now)

    def end(self) -> None:
        """The trio's end (it has paid what was owed and brought its learners' last state here): the members'
        last rows and checkpoints, each ended for its own reason."""
        if any(m.metrics.unlogged_progress() for m in self.live()):
            self.log_point(time.monotonic())
        for m in self.live():
            self._finish(m, "completed", m.clock.stop_reason)

    def checkpoint(self, m: Member) -> None:
        """Member m's checkpoint (its slice of the state) into its own run directory."""
        t0 = time.perf_counter()
        if self.pulled != self.actor.steps:  # the trio: its learners' state into the mirrors, once a step, so
            self.runtime.before_checkpoint()  # members checkpointed at one step hold the same counts
            self.pulled = self.actor.steps
        m.run.save_checkpoint(member_state(self, m))
        m.counters["checkpoint_time_s"] = m.counters.get("checkpoint_time_s", 0.0) + time.perf_counter() - t0

    def _finish(self, m: Member, status: str, reason: Optional[str], **extra: Any) -> None:
        m.status, m.reason = status, reason
        if status != "failed":  # a diverged member keeps its last good checkpoint
            self.checkpoint(m)
        m.run.set_status(status, reason, env_steps=self.env_steps, **extra)

    def close(self, status: str, reason: Optional[str]) -> None:
        for m in self.live():  # the population's own end: a failure leaves every live member resumable
            self._finish(m, status, reason, **({"population_failed": True} if status == "failed" else {}))
        for m in self.members:
            m.run.close()
        self.env.close()
        if self.evaluator is not None:
            self.evaluator.close()


class _PopulationDir:
    """The population's directory as the trio reads a run's: train.log there, the learners' state files in
    checkpoints/ (removed when the trio stops)."""

    def __init__(self, root: str) -> None:
        self.path, self.ckpt_dir = root, os.path.join(root, "checkpoints")
        os.makedirs(self.ckpt_dir, exist_ok=True)


def _without_replay_store(cfg: Config) -> Config:
    c = OmegaConf.create(OmegaConf.to_container(cfg))
    c.save_replay = False
    return c


def _facts_roles(actor_net, critic, member: Member, roles: Roles) -> Roles:
    return Roles(
        actor_net, critic, None, None, None, None, None, None, roles.actor_device, roles.learning_starts,
        member.metrics.roles.flops_critic, member.metrics.roles.flops_policy,
    )  # fmt: skip


POPULATION = "population.json"  # in a population's directory: its config, size, seeds and member directories


def is_population(path: Optional[str]) -> bool:
    return bool(path) and os.path.exists(os.path.join(path, POPULATION))


def resolve_resume(overrides: List[str]) -> Config:
    """The config of `resume=POPULATION_DIR`: the population's own, under the command line's other keys."""
    pairs = dict(config_lib.parse_overrides(overrides))
    with open(os.path.join(pairs["resume"], POPULATION)) as f:
        base = json.load(f)["config"]
    rest = [o for o in overrides if not o.startswith("resume=")]
    return config_lib.load(rest, base=base)


def train(cfg: Config, root: str, quiet: bool, started: float, resuming: bool = False) -> str:
    """Train a population (population.size > 1, mode=sync or trio) into `root`, or continue the one there;
    returns `root`."""
    if is_population(root) and not resuming:
        raise config_lib.ConfigError(
            "run_dir=%s already holds a population; pick another run_dir, or continue it with resume=%s"
            % (root, root)
        )
    os.makedirs(root, exist_ok=True)
    resources.check_devices(cfg)
    torch.manual_seed(config_lib.member_seeds(cfg)[0])
    if resuming:
        pop = resume(cfg, root, started)
    else:
        pop = Population(cfg, root, started)
        record = {
            "size": pop.k,
            "seeds": pop.seeds,
            "members": [m.run.path for m in pop.members],
            "config": config_lib.to_dict(cfg),
        }
        with open(os.path.join(root, POPULATION), "w") as f:
            json.dump(record, f, indent=1)
    mirror_wandb(pop)  # each member its own W&B run (wandb.mode online / offline)
    if not quiet:
        pop.display = Display(
            cfg.log.live, cfg.max_env_steps, cfg.task, cfg.max_time_s, cfg.log.console_every_s
        )
    old = signal.signal(signal.SIGTERM, lambda signum, frame: pop.interrupt(signum))
    status, reason = "failed", None
    try:
        if cfg.mode == "trio":
            trio.run(pop)  # returns once every live member stops, the owed updates paid
            pop.end()
        else:
            sync.run(pop)  # returns once every member has ended (should_stop logs and finishes each)
        status = "completed"
    except KeyboardInterrupt as e:
        status, reason = "stopped", "interrupted (%s)" % (e or "Ctrl-C")
    except Exception as e:
        reason = "%s: %s" % (type(e).__name__, e)
        raise
    finally:
        signal.signal(signal.SIGTERM, old)
        try:
            pop.close(status, reason)
            finish_wandb(pop)
        finally:
            if pop.display is not None:  # the last line: beside the bar as it ends, or printed
                live, wall = len(pop.live()), pop.clock.wall_time()
                last = console_line(pop.env_steps, cfg.max_env_steps, pop.latest, live, wall)
                pop.display.close(last)
    if not quiet:
        for m in pop.members:
            print("member %d (seed %d): %s %s" % (m.k, pop.seeds[m.k], m.status, m.run.path), flush=True)
        print("look further: pql-scale runs %s" % root, flush=True)
    return root


def resume(cfg: Config, root: str, started: float) -> "Population":
    """The population in `root`, its live members from their checkpoints at one common step (a kill between
    two members' checkpoints leaves some a checkpoint ahead: those take their previous one), each member's
    log points past its checkpoint superseded (one timeline each)."""
    pop = Population(cfg, root, started, resuming=True)
    live = pop.live()
    if not live:
        raise config_lib.ConfigError("population %s: every member has ended; nothing to resume" % root)
    newest = [m.run.load_checkpoint(map_location="cpu") for m in live]
    steps = min(state["actor"]["steps"] for state in newest)
    if not env_restorable(pop.env, newest[0]):
        log.warning(
            "backend %s cannot restore its simulator state: the resumed members start new episodes (the "
            "unfinished ones at the checkpoint are dropped from the statistics)",
            pop.backend,
        )
    for m, last in zip(live, newest):
        state = checkpoint_at(m.run, last, steps)
        load_member_state(pop, m, state)
        moved, last_kept = m.run.supersede(state.get("metrics_rows"), state["actor"]["steps"] * pop.n)
        if moved:  # W&B rewinds to the same step, as a resumed single run's does
            m.rewind_to = -1 if last_kept is None else last_kept
        m.clock.time_offset = m.counters["wall_time_s"]
        if m.metrics.evaluator is not None:
            m.metrics.evaluator.next = (
                steps * pop.n // m.metrics.evaluator.every + 1
            ) * m.metrics.evaluator.every
        m.run.set_status("running")
    pop.roles.replay.rows = 0  # members' checkpoints hold no replay: it refills before learning resumes
    log.info(
        "population %s resumed at %d env steps per member (%d members live)", root, steps * pop.n, len(live)
    )
    return pop
