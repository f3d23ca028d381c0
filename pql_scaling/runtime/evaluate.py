"""Periodic evaluation of the deterministic policy on its own env batch (the metric scaling laws are fitted on).

Training returns come from episodes under PQL's mixed exploration noise (std up to 0.8) and, when all
envs end together, in bursts. Every `eval.every_steps` env steps the trainer runs `eval.episodes`
noise-free episodes (one per eval env, the policy's mean action, observations normalised but never
added to the normaliser or the replay) on a separate batch of the same backend and task, seeded apart
from the training envs. The time it takes is logged as `eval_time_s` and kept out of `wall_time_s` and
the throughput figures. Isaac Gym allows one simulation per process, so there it is a ConfigError.
"""

import time
from typing import Any, Callable, Dict, List, Optional, Union

import torch

from pql_scaling import envs
from pql_scaling.config import ONE_SIM_PER_PROCESS, Config, ConfigError, env_options

EVAL_SEED_OFFSET = 1_000_003  # eval envs draw initial states from their own stream


class Evaluator:
    def __init__(
        self,
        cfg: Config,
        device: Union[str, torch.device],
        done_steps: int = 0,
        seeds: Optional[List[int]] = None,
    ) -> None:
        """`seeds`: a population's member seeds (runtime/population.py): `eval.episodes` eval envs per member,
        each member's seeded as its single run's, run by `run_members`."""
        e = cfg.eval
        backend = cfg.backend or envs.default_backend(cfg.task)
        if backend in ONE_SIM_PER_PROCESS:
            raise ConfigError(
                "eval.every_steps>0 is not available with backend=%s: %s allows one "
                "simulation per process, so there is no separate eval batch; set eval.every_steps=0 "
                "(the analysis then fits the training return_mean)" % (backend, ONE_SIM_PER_PROCESS[backend])
            )
        self.every, self.episodes, self.device = int(e.every_steps), int(e.episodes), torch.device(device)
        self.members = 1 if seeds is None else len(seeds)
        extra = (
            {} if seeds is None else {"members": self.members, "seeds": [s + EVAL_SEED_OFFSET for s in seeds]}
        )
        # the training envs' env_kwargs (and gymnasium.* modes)
        options = env_options(cfg, cfg.backend or envs.default_backend(cfg.task))
        self.env = envs.make(
            cfg.task,
            self.episodes * self.members,
            device=device,
            seed=cfg.seed + EVAL_SEED_OFFSET,
            backend=cfg.backend,
            **extra,
            **options,
        )
        self.max_steps = int(getattr(self.env, "max_episode_steps", None) or e.max_steps)
        self.sac = cfg.algo.name == "sac"
        self.next = (done_steps // self.every + 1) * self.every  # the next multiple of every_steps

    def due(self, env_steps: int) -> bool:
        return env_steps >= self.next

    @torch.no_grad()
    def run(
        self,
        policy: Callable[[torch.Tensor], torch.Tensor],
        norm: Callable[[torch.Tensor], torch.Tensor],
        env_steps: int,
    ) -> Dict[str, Any]:
        """One episode per eval env with the policy's deterministic action -> dict of eval_* metrics."""
        return self.run_members(policy, norm, env_steps)[0]

    @torch.no_grad()
    def run_members(
        self,
        policy: Callable[[torch.Tensor], torch.Tensor],
        norm: Callable[[torch.Tensor], torch.Tensor],
        env_steps: int,
    ) -> List[Dict[str, Any]]:
        """run(), a dict per member (one for a single run); eval_s is the time of all of them."""
        t0 = time.perf_counter()
        self.next = (env_steps // self.every + 1) * self.every
        env = self.env
        obs = env.reset().to(self.device)
        n_envs = self.episodes * self.members
        ret = torch.zeros(n_envs, device=self.device)
        finished = torch.zeros(n_envs, dtype=torch.bool, device=self.device)
        stopped: Dict[int, Any] = {}  # member -> its reset generator's state where its single run stops
        for t in range(self.max_steps + 1):
            action = policy(norm(obs))  # GaussianActor.forward is its mean action too
            obs, reward, terminated, truncated, info = env.step(action)
            obs = obs.to(self.device)
            live = ~finished
            if "valid" in info:
                live = live & info["valid"].to(self.device)
            ret += reward.to(self.device) * live
            finished |= (terminated | truncated).to(self.device)
            if t % 50 == 49:  # a host sync every 50 eval steps, outside training
                if bool(finished.all()):
                    break
                if self.members > 1:
                    self._note_stops(finished, stopped)
        for k, state in stopped.items():  # members done earlier continue as their single runs would
            env.generators[k].set_state(state)
        out = []
        for ret_k, fin_k in zip(ret.view(self.members, -1), finished.view(self.members, -1)):
            n = int(fin_k.sum())
            done = ret_k[fin_k]
            out.append(
                {
                    "eval_return_mean": float(done.mean()) if n else None,
                    "eval_return_std": float(done.std(unbiased=False)) if n else None,
                    "eval_episodes": n,
                }
            )
        eval_s = time.perf_counter() - t0
        return [dict(o, eval_s=eval_s) for o in out]

    def _note_stops(self, finished: torch.Tensor, stopped: Dict[int, Any]) -> None:
        """A member whose episodes have all ended would have stopped here as a single run; the steps the others
        still take must not move its env's reset generator (its next evaluation would start elsewhere)."""
        for k, done in enumerate(finished.view(self.members, -1).all(1).tolist()):
            if done and k not in stopped:
                stopped[k] = self.env.generators[k].get_state()

    def close(self) -> None:
        if hasattr(self.env, "close"):
            self.env.close()
