"""The actor role: act in the batched env with the latest policy, fold n-step returns, fill replay.

Exploration is PQL's mixed noise: env i adds Gaussian noise of std linspace(std_min, std_max)[i],
so one batch of envs explores at many scales at once; the first `warmup_steps` actor steps take
uniform random actions. With `noise_corr` = rho > 0 the noise is AR(1) in time (each env's
eps <- rho eps + sqrt(1 - rho^2) N(0, 1), same std): white noise averages out over a few steps, so a
task whose reward needs a sustained push (mountaincar: a car must rock for ~100 steps before it
sees the goal) is almost never solved by it, and correlated noise finds the goal in most episodes.
SAC samples from its own stochastic policy instead. Episode statistics are accumulated on the device
and read only at log points.
"""

from typing import Any

import torch

from pql_scaling.core.replay import NStepFolder


class ActorRole:
    def __init__(self, cfg, env, replay, normalizer, device):
        self.cfg, self.env, self.norm = cfg, env, normalizer
        self._replay = replay
        self.device = torch.device(device)
        a, n = cfg.algo, env.num_envs
        self.num_envs, self.act_dim = n, env.act_dim
        self.sac = a.name == "sac"
        self.reward_scale = a.reward_scale
        self.noise_std = torch.linspace(a.noise_std_min, a.noise_std_max, n, device=self.device)[:, None]
        self.noise_corr = a.noise_corr
        self.noise = torch.randn(n, env.act_dim, device=self.device)  # the AR(1) state (unused when white)
        self.folder = NStepFolder(a.nstep, a.gamma, n, env.obs_dim, env.act_dim, self.device)
        self.steps = 0  # actor steps taken (each is num_envs transitions)
        self.ep_return = torch.zeros(n, device=self.device)
        self.ep_length = torch.zeros(n, device=self.device)
        self.stats = torch.zeros(4, device=self.device)  # sum, sum of squares, count, sum of lengths
        self.obs = env.reset().to(self.device)
        self.norm.update(self.obs)

    @property
    def replay(self) -> Any:
        """Where this role's rows go (anything with `add(*row)`): the replay it was built with, or a runtime's
        gate in front of that replay (the trio's GatedReplay waits for the learners, then writes into it),
        set before the first step."""
        return self._replay

    @replay.setter
    def replay(self, sink: Any) -> None:
        self._replay = sink

    @torch.no_grad()
    def act(self, policy, obs):
        if self.steps < self.cfg.algo.warmup_steps:
            return torch.rand(self.num_envs, self.act_dim, device=self.device) * 2 - 1
        if self.sac:
            return policy.sample(self.norm(obs))[0]
        action = policy(self.norm(obs))
        if self.noise_corr:
            rho = self.noise_corr
            self.noise.mul_(rho).add_(torch.randn_like(action), alpha=(1 - rho * rho) ** 0.5)
            return (action + self.noise * self.noise_std).clamp(-1.0, 1.0)
        return (action + torch.randn_like(action) * self.noise_std).clamp(-1.0, 1.0)

    @torch.no_grad()
    def step(self, policy):
        obs = self.obs
        action = self.act(policy, obs)
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        done = terminated | truncated
        valid = info.get("valid", torch.ones_like(done))
        final_obs = info["final_obs"]
        row = self.folder.push(obs, action, reward * self.reward_scale, final_obs, terminated, done, valid)
        if self.folder.ready:
            self.replay.add(*row)
        self.norm.update(next_obs)
        self._track(reward, done, valid, info)
        self.obs = next_obs
        self.steps += 1

    def _track(self, reward, done, valid, info):
        """Accumulate returns in the task's own units (before reward scaling)."""
        if "episode_return" in info:  # a simulator that keeps its own episode accounting
            ret, length = info["episode_return"], info["episode_length"]
        else:
            self.ep_return += reward * valid
            self.ep_length += valid
            ret, length = self.ep_return, self.ep_length
        d = done.float()
        self.stats += torch.stack([(ret * d).sum(), (ret**2 * d).sum(), d.sum(), (length * d).sum()])
        self.ep_return *= 1.0 - d
        self.ep_length *= 1.0 - d

    def pop_stats(self):
        """(return_mean, return_std, episodes, length_mean) since the last call; syncs with the device."""
        s, sq, n, length = self.stats.tolist()
        self.stats.zero_()
        if n == 0:
            return None, None, 0, None
        mean = s / n
        return mean, max(sq / n - mean * mean, 0.0) ** 0.5, int(n), length / n

    def state_dict(self):
        f = self.folder
        window = ("t", "obs", "action", "next_obs", "reward", "terminated", "done", "valid")
        return {
            "steps": self.steps,
            "ep_return": self.ep_return,
            "ep_length": self.ep_length,
            "obs": self.obs,
            "noise": self.noise,
            "folder": {k: getattr(f, k) for k in window},
        }

    def load_state_dict(self, s, episodes=True):
        """episodes=False: the env could not restore its simulator state, so keep the fresh episodes it
        started (this role's obs, counters and n-step window from `env.reset()`) and only continue the step
        count."""
        self.steps = s["steps"]
        if not episodes:
            return
        self.ep_return.copy_(s["ep_return"])
        self.ep_length.copy_(s["ep_length"])
        self.obs = s["obs"].to(self.device)
        self.noise.copy_(s["noise"])
        for k, v in s["folder"].items():
            setattr(self.folder, k, v if k == "t" else v.to(self.device))
