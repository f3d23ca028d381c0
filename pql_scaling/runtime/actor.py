"""The actor role: act in the batched env with the latest policy, fold n-step returns, fill replay.

Exploration is PQL's mixed noise: env i adds Gaussian noise of std linspace(std_min, std_max)[i],
so one batch of envs explores at many scales at once; the first `warmup_steps` actor steps take
uniform random actions. With `noise_corr` = rho > 0 the noise is AR(1) in time (each env's
eps <- rho eps + sqrt(1 - rho^2) N(0, 1), same std): white noise averages out over a few steps, so a
task whose reward needs a sustained push (mountaincar: a car must rock for ~100 steps before it
sees the goal) is almost never solved by it, and correlated noise finds the goal in most episodes.
SAC samples from its own stochastic policy instead. Episode statistics are accumulated on the device
and read only at log points. An env with a privileged critic observation (envs/contract.py): the actor acts
on the policy's observation only, and stores the critic's beside it (the n-step window keeps the two side by
side in one row, [policy | critic], which the replay splits).
"""

from typing import Dict, List, Optional

import torch

from pql_scaling.core.members import Streams
from pql_scaling.core.replay import Normalizer, Replay
from pql_scaling.envs.contract import critic_obs_dim


def episode_stats(s, sq, n, length):
    """(return_mean, return_std, episodes, length_mean) from sums over finished episodes."""
    if n == 0:
        return None, None, 0, None
    mean = s / n
    return mean, max(sq / n - mean * mean, 0.0) ** 0.5, int(n), length / n


class Gate:
    """What the actor's replay writes wait on. Open here: in sync mode every role lives in this process and
    the loop itself interleaves them. The trio's gate (trio/actor_side.py) holds each write until the
    learners have done the updates owed before it, then publishes the new rows to them."""

    def wait(self, replay: Replay) -> None:
        """Block until `replay` may take the next `num_envs` rows."""

    def commit(self, replay: Replay) -> None:
        """The rows just written are in `replay`: let its readers see them."""


class NStepFolder:
    """Folds 1-step transitions into n-step ones per env, never across an episode end.

    Keeps the last n steps of every env in a ring. After step t it emits, for every env, the
    transition that started at t - n + 1: its discounted reward sum up to the first episode end in
    the window (or n steps), the observation to bootstrap from (the true final observation when the
    episode ended, given by the env as final_obs), and its discount gamma^k * (1 - terminated).
    One row per env per step: static shapes, no branching on data. The first n - 1 steps emit
    nothing (rows flagged invalid by `ready`).
    """

    def __init__(self, n, gamma, num_envs, obs_dim, act_dim, device):
        self.n, self.gamma, self.t = int(n), float(gamma), 0
        z = lambda *s: torch.zeros((self.n, num_envs) + s, dtype=torch.float32, device=device)
        self.obs, self.action, self.next_obs = z(obs_dim), z(act_dim), z(obs_dim)
        self.reward, self.terminated, self.done, self.valid = z(), z(), z(), z()
        self.gammas = self.gamma ** torch.arange(self.n, dtype=torch.float32, device=device)

    @property
    def ready(self):
        return self.t >= self.n

    def push(self, obs, action, reward, next_obs, terminated, done, valid):
        """Store step t; return the n-step transition that starts at t - n + 1 (meaningful once `ready`)."""
        i = self.t % self.n
        self.obs[i], self.action[i], self.next_obs[i] = obs, action, next_obs
        self.reward[i], self.terminated[i], self.done[i], self.valid[i] = (
            reward,
            terminated.float(),
            done.float(),
            valid.float(),
        )
        self.t += 1
        order = torch.arange(self.t, self.t + self.n, device=self.gammas.device) % self.n  # oldest first
        done, term = self.done[order], self.terminated[order]
        # alive[k] = 1 while no episode ended before step k of the window
        alive = torch.cumprod(torch.cat([torch.ones_like(done[:1]), 1.0 - done[:-1]]), dim=0)
        last = torch.zeros_like(done)
        last[-1] = 1.0
        end = alive * torch.maximum(done, last)  # one-hot: the step the transition ends on
        reward = (alive * self.gammas[:, None] * self.reward[order]).sum(0)
        discount = (end * (self.gammas[:, None] * self.gamma) * (1.0 - term)).sum(0)
        next_obs = (end[..., None] * self.next_obs[order]).sum(0)
        first = (
            self.t % self.n
        )  # order[0] as a host int: indexing with a 0-dim device tensor would sync (.item())
        return self.obs[first], self.action[first], reward, next_obs, discount, self.valid[first]


class ActorRole:
    """Acts, steps the env, folds n-step transitions and writes them into `replay` through `gate` (set by the
    runtime before the first step: the trio's shared memory is allocated from the roles this one is part of)."""

    def __init__(
        self,
        cfg,
        env,
        replay: Replay,
        normalizer: Normalizer,
        device,
        gate: Optional[Gate] = None,
        streams: Optional[Streams] = None,
        vary: Optional[Dict[str, List[float]]] = None,
    ):
        self.cfg, self.env, self.norm = cfg, env, normalizer
        self.replay, self.gate = replay, gate or Gate()
        self.device = torch.device(device)
        # a population's members own num_envs / K envs each (member-major rows), each its own random stream
        self.streams = streams or Streams([cfg.seed], self.device)
        self.members = k = self.streams.members
        a, n, vary = cfg.algo, env.num_envs, vary or {}
        self.num_envs, self.act_dim = n, env.act_dim
        self.sac = a.name == "sac"
        self.reward_scale = a.reward_scale
        lo = vary.get("algo.noise_std_min", [a.noise_std_min] * k)
        hi = vary.get("algo.noise_std_max", [a.noise_std_max] * k)
        std = [torch.linspace(lo[m], hi[m], n // k, device=self.device) for m in range(k)]
        self.noise_std = (std[0] if k == 1 else torch.cat(std))[:, None]
        self.noise_corr = a.noise_corr
        self.noise = self.streams.randn(n, env.act_dim)  # the AR(1) state (unused when white)
        self.obs_dim, self.critic_dim = env.obs_dim, critic_obs_dim(env)
        width = env.obs_dim + self.critic_dim
        self.folder = NStepFolder(a.nstep, a.gamma, n, width, env.act_dim, self.device)
        self.steps = 0  # actor steps taken (each is num_envs transitions)
        self.ep_return = torch.zeros(n, device=self.device)
        self.ep_length = torch.zeros(n, device=self.device)
        # return sum, sum of squares, episodes, sum of lengths (per member in a population)
        self.stats = torch.zeros((4,) if k == 1 else (k, 4), device=self.device)
        self.obs = env.reset().to(self.device)
        self.norm.update(self.obs)
        self.critic_obs = self._critic_obs()
        if self.critic_obs is not None:
            self.norm.critic.update(self.critic_obs)

    def _critic_obs(self):
        """The env's privileged critic observation (None without one), checked once against its contract."""
        if not self.critic_dim:
            return None
        cobs = getattr(self.env, "critic_obs", None)
        want = (self.num_envs, self.critic_dim)
        if self.steps == 0 and (not isinstance(cobs, torch.Tensor) or tuple(cobs.shape) != want):
            raise ValueError(
                "%s sets critic_obs_dim=%d but its critic_obs is %s: the env contract (envs/contract.py) wants "
                "a float32 %s tensor matching the last policy observation"
                % (type(self.env).__name__, self.critic_dim, getattr(cobs, "shape", cobs), want)
            )
        return cobs.to(self.device, torch.float32)

    @torch.no_grad()
    def act(self, policy, obs):
        if self.steps < self.cfg.algo.warmup_steps:
            return self.streams.rand(self.num_envs, self.act_dim) * 2 - 1
        if self.sac:
            return policy.sample(self.norm(obs))[0]
        action = policy(self.norm(obs))
        if self.noise_corr:
            rho = self.noise_corr
            self.noise.mul_(rho).add_(self.streams.randn_like(action), alpha=(1 - rho * rho) ** 0.5)
            return (action + self.noise * self.noise_std).clamp(-1.0, 1.0)
        return (action + self.streams.randn_like(action) * self.noise_std).clamp(-1.0, 1.0)

    @torch.no_grad()
    def step(self, policy):
        obs = self.obs
        action = self.act(policy, obs)
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        done = terminated | truncated
        valid = info.get("valid", torch.ones_like(done))
        final_obs = info["final_obs"]
        if self.critic_dim:  # one window row per step: [policy | critic], split again for the replay
            obs = torch.cat([obs, self.critic_obs], dim=1)
            final_obs = torch.cat([final_obs, self._final_critic_obs(info)], dim=1)
        row = self.folder.push(obs, action, reward * self.reward_scale, final_obs, terminated, done, valid)
        if self.folder.ready:
            self.gate.wait(self.replay)
            self.replay.add(*self._split(row))
            self.gate.commit(self.replay)
        self.norm.update(next_obs)
        if self.critic_dim:
            self.critic_obs = self._critic_obs()
            self.norm.critic.update(self.critic_obs)
        self._track(reward, done, valid, info)
        self.obs = next_obs
        self.steps += 1

    def _final_critic_obs(self, info):
        final = info.get("final_critic_obs")
        if final is None:
            raise ValueError(
                "%s sets critic_obs_dim but its step() info has no 'final_critic_obs': the env contract "
                "(envs/contract.py) wants the true last critic observation of every env there"
                % type(self.env).__name__
            )
        return final.to(self.device, torch.float32)

    def _split(self, row):
        """The window's transition as the replay's fields: [policy | critic] observations split apart."""
        if not self.critic_dim:
            return row
        obs, action, reward, next_obs, discount, valid = row
        p = self.obs_dim
        return obs[:, :p], action, reward, next_obs[:, :p], discount, valid, obs[:, p:], next_obs[:, p:]

    def _track(self, reward, done, valid, info):
        """Accumulate returns in the task's own units (before reward scaling)."""
        if "episode_return" in info:  # a simulator that keeps its own episode accounting
            ret, length = info["episode_return"], info["episode_length"]
        else:
            self.ep_return += reward * valid
            self.ep_length += valid
            ret, length = self.ep_return, self.ep_length
        d = done.float()
        if self.members == 1:
            self.stats += torch.stack([(ret * d).sum(), (ret**2 * d).sum(), d.sum(), (length * d).sum()])
        else:
            per = torch.stack([ret * d, ret**2 * d, d, length * d], dim=-1)  # (K*n, 4)
            self.stats += per.reshape(self.members, -1, 4).double().sum(1).float()  # float64: core/members.py
        self.ep_return *= 1.0 - d
        self.ep_length *= 1.0 - d

    def pop_stats(self):
        """(return_mean, return_std, episodes, length_mean) since the last call; syncs with the device."""
        s, sq, n, length = self.stats.tolist()
        self.stats.zero_()
        return episode_stats(s, sq, n, length)

    def member_stats(self):
        """pop_stats per member of a population (one read of the device)."""
        out = [episode_stats(*row) for row in self.stats.tolist()]
        self.stats.zero_()
        return out

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
            **({"critic_obs": self.critic_obs} if self.critic_dim else {}),
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
        if self.critic_dim:
            self.critic_obs = s["critic_obs"].to(self.device)
        self.noise.copy_(s["noise"])
        for k, v in s["folder"].items():
            setattr(self.folder, k, v if k == "t" else v.to(self.device))
