"""Log points: one metrics row (metrics.jsonl, W&B, the live display) from the roles' statistics, with the
divergence check, the periodic evaluation and the target_return stop."""

import math
from typing import Any, Callable, Dict, NamedTuple, Tuple

from pql_scaling.config import Config
from pql_scaling.envs.contract import VecEnv
from pql_scaling.rundir.rundir import RunDir
from pql_scaling.runtime.clock import TrainingClock
from pql_scaling.runtime.roles import Roles


class Diverged(RuntimeError):
    pass


class Mark(NamedTuple):
    """Where the last log point left off: its time and counts (the rates are taken since)."""

    t: float
    env_steps: int
    critic: int
    policy: int


class MetricsLogger:
    def __init__(
        self,
        cfg: Config,
        run: RunDir,
        env: VecEnv,
        roles: Roles,
        clock: TrainingClock,
        counters: Dict[str, Any],
        evaluator: Any = None,
    ) -> None:
        self.cfg, self.run, self.env, self.roles, self.clock = cfg, run, env, roles, clock
        self.counters = counters  # the Session's: eval_time_s and checkpoint_time_s are logged cumulative
        self.evaluator = evaluator  # an Evaluator, or None (eval.every_steps=0)
        self.last = self.mark(clock.process_start)
        self.logged = False
        self.wandb: Any = None  # a WandbMirror, once mirror_to() is called
        self.display: Any = None  # a Display

    def mirror_to(self, wandb: Any, display: Any) -> None:
        """Send each row to W&B and the live display too."""
        self.wandb, self.display = wandb, display

    @property
    def env_steps(self) -> int:
        return self.roles.actor.steps * self.env.num_envs

    def mark(self, t: float) -> Mark:
        return Mark(t, self.env_steps, self.roles.v_learner.updates, self.roles.p_learner.updates)

    def restart(self, now: float) -> None:
        """The training clock started: rates are taken from now."""
        self.last = self.last._replace(t=now)

    def unlogged_progress(self) -> bool:
        """Did steps or updates happen since the last log point? (trio learners may still have paid owed
        updates after the actor's last log point)"""
        roles = self.roles
        return (self.env_steps, roles.v_learner.updates, roles.p_learner.updates) != (
            self.last.env_steps,
            self.last.critic,
            self.last.policy,
        )

    def log_point(self, now: float, extra: Callable[[], Dict[str, Any]]) -> Tuple[Dict[str, Any], float]:
        """Write one metrics row (`extra`: the runtime's own metrics for it); returns the row and `now` moved
        past the time an evaluation took."""
        roles, env_steps = self.roles, self.env_steps
        mean, std, episodes, length = roles.actor.pop_stats()
        v_stats, p_stats = roles.v_learner.pop_stats(), roles.p_learner.pop_stats()
        self._check_finite(v_stats, p_stats, env_steps)
        dt = max(now - self.last.t, 1e-9)
        cu, pu = roles.v_learner.updates, roles.p_learner.updates
        row = {
            "env_steps": env_steps,
            "actor_steps": roles.actor.steps,
            "critic_updates": cu,
            "policy_updates": pu,
            "utd": cu / max(env_steps, 1),
            "flops": cu * roles.flops_critic + pu * roles.flops_policy,
            "wall_time_s": round(self.clock.wall_time(now), 4),
            "return_mean": mean,
            "return_std": std,
            "episodes": episodes,
            "episode_length": length,
            "env_steps_per_s": (env_steps - self.last.env_steps) / dt,
            "critic_updates_per_s": (cu - self.last.critic) / dt,
            "policy_updates_per_s": (pu - self.last.policy) / dt,
        }
        if not self.logged and self.clock.startup_s is not None:
            row["startup_s"] = self.clock.startup_s  # the first row of each process: how much was start-up
        self.logged = True
        row.update(v_stats)
        row.update(p_stats)
        row.update(extra())
        if "checkpoint_time_s" in self.counters:
            # the actor's share: the time it was blocked
            row["checkpoint_time_s"] = round(self.counters["checkpoint_time_s"], 4)
        self.last = Mark(now, env_steps, cu, pu)
        if self.evaluator is not None and self.evaluator.due(env_steps):
            now = self._evaluate(row, now, env_steps)
        if self.cfg.target_return is not None and mean is not None and mean >= self.cfg.target_return:
            self.clock.stop("target_return")
        self.run.append_metrics(row)
        if self.wandb is not None:
            self.wandb.log(row)
        if self.display is not None:
            self.display.update(row)
        return row, now

    def _check_finite(self, v_stats: Dict[str, float], p_stats: Dict[str, float], env_steps: int) -> None:
        for key, value in list(v_stats.items()) + list(p_stats.items()):
            if not math.isfinite(value):
                raise Diverged(
                    "%s became %s at env step %d: training diverged. Lower algo.critic_lr / algo.actor_lr, "
                    "lower algo.reward_scale, or keep algo.grad_clip > 0; the last good checkpoint is %s; "
                    "continue from it with resume=%s"
                    % (key, value, env_steps, self.run.checkpoint_path, self.run.path)
                )

    def _evaluate(self, row: Dict[str, Any], now: float, env_steps: int) -> float:
        ev = self.evaluator.run(self.roles.p_learner.actor, self.roles.norm, env_steps)
        self.clock.pause(ev["eval_s"])  # evaluation is not training: out of wall_time_s and the rates
        self.last = self.last._replace(t=self.last.t + ev["eval_s"])
        now += ev["eval_s"]
        self.counters["eval_time_s"] = self.counters.get("eval_time_s", 0.0) + ev.pop("eval_s")
        row.update(ev, eval_time_s=round(self.counters["eval_time_s"], 4))
        return now
