"""Checkpoints of a run: the state of every role, the counters and the RNGs, written by the run directory
(atomically; a GPU replay's checkpoint on a background thread), and read back on resume."""

import threading
import time
from fractions import Fraction
from typing import Any, Callable, Dict, Optional

import torch

from pql_scaling.config import Config, ConfigError
from pql_scaling.envs.contract import VecEnv
from pql_scaling.rundir.disk import log, to_host
from pql_scaling.rundir.rundir import RunDir
from pql_scaling.runtime.clock import TrainingClock
from pql_scaling.runtime.roles import Roles


class BackgroundWriter:
    """One write job at a time on a thread; wait() joins it and re-raises what it raised (DiskFull names the
    path)."""

    def __init__(self) -> None:
        self.thread: Optional[threading.Thread] = None
        self.error: Optional[BaseException] = None

    def submit(self, job: Callable[[], None]) -> None:
        self.wait()

        def run() -> None:
            try:
                job()
            except BaseException as e:  # noqa: BLE001 - handed to the main thread by wait()
                self.error = e

        self.thread = threading.Thread(target=run, name="checkpoint-writer", daemon=True)
        self.thread.start()

    def wait(self) -> None:
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error


class Checkpointer:
    def __init__(
        self,
        cfg: Config,
        run: RunDir,
        env: VecEnv,
        roles: Roles,
        counters: Dict[str, Any],
        clock: TrainingClock,
    ) -> None:
        self.cfg, self.run, self.env, self.roles, self.clock = cfg, run, env, roles, clock
        self.counters = counters  # the Session's; saved as a plain dict inside each checkpoint
        self.writer = BackgroundWriter()
        self.last_ckpt = clock.process_start

    def due(self, now: float) -> bool:
        return now - self.last_ckpt >= self.cfg.log.checkpoint_every_s

    def checkpoint(
        self, before: Callable[[], None], now: Optional[float] = None, background: bool = False
    ) -> None:
        """Save the state (`before`: the runtime's hook that brings it here first); `background`: copy it to
        host memory now and write the files on a thread (the next checkpoint, and the end of the run, wait for
        that write first). The time the caller is blocked goes to the metrics as checkpoint_time_s
        (cumulative)."""
        t0 = time.perf_counter()
        self.writer.wait()  # the last background write first: segment, checkpoint, prune stay in that order
        before()
        self.counters["wall_time_s"] = self.clock.wall_time(now)
        store = self.roles.replay_store
        prev_rows = store.saved if store is not None else 0
        segment = store.take(self.roles.replay) if store is not None else None  # rows new since the last one
        state, position = self.state_dict(), self.run.position()
        if background:
            state = to_host(state)

        def write() -> None:
            if store is not None:
                store.write(segment)  # before the checkpoint that names its rows
            self.run.save_checkpoint(state, position)
            if store is not None:
                store.prune(prev_rows)  # prev.pt is now the checkpoint at prev_rows

        if background:
            self.writer.submit(write)
        else:
            write()
        blocked = time.perf_counter() - t0
        self.counters["checkpoint_time_s"] = self.counters.get("checkpoint_time_s", 0.0) + blocked
        self.last_ckpt = now or time.monotonic()

    def state_dict(self) -> Dict[str, Any]:
        r = self.roles
        state = {
            "v_learner": r.v_learner.state_dict(),
            "p_learner": r.p_learner.state_dict(),
            "norm": r.norm.state_dict(),
            "actor": r.actor.state_dict(),
            # weights-only loading takes plain types: the owed-update Fractions go as (numerator, denominator)
            "counters": {k: v for k, v in self.counters.items() if not isinstance(v, Fraction)},
            "fractions": {
                k: [v.numerator, v.denominator] for k, v in self.counters.items() if isinstance(v, Fraction)
            },
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
            "replay_rows": r.replay.rows,
            "replay_saved": r.replay_store is not None,
        }
        if hasattr(self.env, "state_dict"):
            state["env"] = self.env.state_dict()
        return state

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        r = self.roles
        check_critic_obs(s, r.norm, self.run.path)
        r.v_learner.load_state_dict(s["v_learner"])
        r.p_learner.load_state_dict(s["p_learner"])
        r.norm.load_state_dict(s["norm"])
        # The actor's saved observation and episode counters are only true of the simulator state they were
        # saved with: restore both, or (a simulator that cannot save its state, e.g. Isaac Gym) neither.
        env_restored = "env" in s and hasattr(self.env, "load_state_dict")
        if env_restored:
            self.env.load_state_dict(s["env"])
        else:
            log.warning(
                "backend %s cannot restore its simulator state: the resumed run starts new episodes "
                "(the unfinished ones at the checkpoint are dropped from the statistics)",
                getattr(self.env, "backend", self.cfg.backend or "native"),
            )
            if "env" in s and hasattr(self.env, "restore_counters"):  # what it can restore (gymnasium: seeds)
                self.env.restore_counters(s["env"])
        r.actor.load_state_dict(s["actor"], episodes=env_restored)
        self.counters.clear()  # the Session's dict, refilled in place: its parts hold it
        self.counters.update(s["counters"])
        self.counters.update({k: Fraction(n, d) for k, (n, d) in s["fractions"].items()})
        torch.set_rng_state(s["rng"]["torch"])
        if s["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(s["rng"]["cuda"])
        if s.get("replay_saved") and r.replay_store is not None:
            r.replay_store.load(r.replay, s["replay_rows"])
        else:
            log.info(
                "checkpoint holds no replay (save_replay=false): the replay refills before learning resumes"
            )


def check_critic_obs(s: Dict[str, Any], norm: Any, path: str) -> None:
    """Refuse a checkpoint whose critic read other observations than this env gives it (written before the
    env had privileged critic observations, or with other ones): its critic, normaliser and replay rows would
    not fit."""
    saved = s["norm"].get("critic.mean")
    had = 0 if saved is None else int(saved.shape[-1])
    has = 0 if norm.critic is None else int(norm.critic.mean.shape[-1])
    if had == has:
        return
    raise ConfigError(
        "%s: its checkpoint was written with %s, but this run's env gives %s; the critic, its normaliser and "
        "the replay cannot carry over: start a new run (another run_dir), or resume with the env it was "
        "written with (e.g. the same env_kwargs.privileged_critic)"
        % (path, _critic_kind(had), _critic_kind(has))
    )


def _critic_kind(dim: int) -> str:
    return "privileged critic observations (critic_obs_dim=%d)" % dim if dim else "no critic observation"
