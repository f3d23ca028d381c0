"""Replay storage, n-step folding and the observation normaliser: all preallocated on one device.

The replay holds raw observations; learners normalise at sample time with the current statistics
(as PQL does), so old transitions stay valid as the statistics move. Every tensor is allocated once
and can be put in shared memory (CPU) or handed to another process over CUDA IPC (the trio).
"""

import torch

from pql_scaling.core.losses import Batch

FIELDS = Batch._fields  # ("obs", "action", "reward", "next_obs", "discount", "weight")


def alloc_storage(capacity, obs_dim, act_dim, device):
    shapes = {
        "obs": (obs_dim,),
        "action": (act_dim,),
        "reward": (),
        "next_obs": (obs_dim,),
        "discount": (),
        "weight": (),
    }
    return {k: torch.zeros((capacity,) + s, dtype=torch.float32, device=device) for k, s in shapes.items()}


class Replay:
    """A ring of transitions written `num_envs` rows at a time.

    `capacity` is rounded down to a multiple of `num_envs`, so one actor step never wraps mid-write.
    The host knows how many rows were written (one actor step writes exactly `num_envs`), so the
    sampling bound is a plain int; it is copied into a device tensor so the sampler has static shapes.
    """

    def __init__(self, capacity, obs_dim, act_dim, num_envs, device, storage=None):
        self.num_envs = int(num_envs)
        self.capacity = max(int(capacity) // self.num_envs, 1) * self.num_envs
        self.device = torch.device(device)
        self.data = (
            storage if storage is not None else alloc_storage(self.capacity, obs_dim, act_dim, self.device)
        )
        self.rows = 0  # total rows ever written

    @property
    def size(self):
        return min(self.rows, self.capacity)

    def add(self, obs, action, reward, next_obs, discount, weight):
        start = self.rows % self.capacity
        for key, value in zip(FIELDS, (obs, action, reward, next_obs, discount, weight)):
            self.data[key][start : start + self.num_envs].copy_(value, non_blocking=True)
        self.rows += self.num_envs

    def sample(self, batch_size, size=None, generator=None, start=0):
        """Uniform over `size` rows from row `start` on, around the ring (default: all filled rows)."""
        size = self.size if size is None else size
        u = torch.rand(batch_size, device=self.device, generator=generator)
        idx = (u * size).long().clamp_(max=max(size - 1, 0))
        if start:
            idx = (idx + start) % self.capacity
        return Batch(*(self.data[k][idx] for k in FIELDS))


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


class Normalizer(torch.nn.Module):
    """Running mean / variance of observations (parallel Welford merge), used with clamping."""

    def __init__(self, dim, device, clip=5.0, eps=1e-4, enabled=True):
        super().__init__()
        self.clip, self.enabled = clip, enabled
        self.register_buffer("mean", torch.zeros(dim, device=device))
        self.register_buffer("var", torch.ones(dim, device=device))
        self.register_buffer("count", torch.tensor(eps, device=device))

    @torch.no_grad()
    def update(self, x):
        if not self.enabled:
            return
        n = x.shape[0]
        mean, var = x.mean(0), x.var(0, unbiased=False)
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.var.copy_((self.var * self.count + var * n + delta**2 * self.count * n / total) / total)
        self.count.copy_(total)

    def forward(self, x):
        if not self.enabled:
            return x
        return ((x - self.mean) / torch.sqrt(self.var + 1e-8)).clamp(-self.clip, self.clip)
