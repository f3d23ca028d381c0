"""Replay storage, its one sampler and the observation normaliser: all preallocated on one device.

The replay holds raw observations; learners normalise at sample time with the current statistics
(as PQL does), so old transitions stay valid as the statistics move. Every tensor is allocated once
and can be put in shared memory (CPU) or handed to another process over CUDA IPC (the trio).
An env with a privileged critic observation adds the fields `critic_obs` / `next_critic_obs`, normalised
by their own statistics (`Normalizer.critic`); without one, storage and draws are what they always were.
"""

from typing import Any, Dict, NamedTuple, Optional, Union

import torch
from torch import Tensor

from pql_scaling.core.losses import Batch
from pql_scaling.core.members import Streams

FIELDS = Batch._fields  # ("obs", "action", "reward", "next_obs", "discount", "weight", critic's two)
CRITIC_FIELDS = ("critic_obs", "next_critic_obs")


def alloc_storage(capacity, obs_dim, act_dim, device, critic_obs_dim=0):
    shapes = {
        "obs": (obs_dim,),
        "action": (act_dim,),
        "reward": (),
        "next_obs": (obs_dim,),
        "discount": (),
        "weight": (),
    }
    if critic_obs_dim:
        shapes.update({k: (critic_obs_dim,) for k in CRITIC_FIELDS})
    return {k: torch.zeros((capacity,) + s, dtype=torch.float32, device=device) for k, s in shapes.items()}


def critic_obs_dim(data: Dict[str, Tensor]) -> int:
    """The critic observation width of replay storage `data` (0: the critic reads the policy's)."""
    return data["critic_obs"].shape[-1] if "critic_obs" in data else 0


class Replay:
    """A ring of transitions written `num_envs` rows at a time.

    `capacity` is rounded down to a multiple of `num_envs`, so one actor step never wraps mid-write.
    The host knows how many rows were written (one actor step writes exactly `num_envs`), so the
    sampling bound is a plain int; it is copied into a device tensor so the sampler has static shapes.

    A population's replay (`members` = K) is K rings of `capacity` rows each, member-major in one storage
    (member k's ring: rows k*capacity ..): each actor step writes num_envs / K rows into every ring at the
    same offset, so `rows`, `size` and `capacity` count one member's ring, alike for all.
    """

    def __init__(
        self, capacity, obs_dim, act_dim, num_envs, device, storage=None, members=1, critic_obs_dim=0
    ):
        self.members = int(members)
        self.num_envs = int(num_envs) // self.members  # rows per member per write
        self.capacity = max(int(capacity) // self.num_envs, 1) * self.num_envs
        self.device = torch.device(device)
        self.data = (
            storage
            if storage is not None
            else alloc_storage(self.members * self.capacity, obs_dim, act_dim, self.device, critic_obs_dim)
        )
        self.rows = 0  # total rows ever written (per member)

    @property
    def size(self):
        return min(self.rows, self.capacity)

    def add(self, obs, action, reward, next_obs, discount, weight, critic_obs=None, next_critic_obs=None):
        start, n, k = self.rows % self.capacity, self.num_envs, self.members
        values = (obs, action, reward, next_obs, discount, weight, critic_obs, next_critic_obs)
        if (critic_obs is None) != ("critic_obs" not in self.data):
            raise ValueError("replay rows and storage disagree on critic observations")  # a wiring bug
        for key, value in zip(FIELDS, values[: len(self.data)]):
            if k == 1:
                self.data[key][start : start + n].copy_(value, non_blocking=True)
            else:
                ring = self.data[key].view((k, self.capacity) + tuple(value.shape[1:]))
                ring[:, start : start + n].copy_(
                    value.view((k, n) + tuple(value.shape[1:])), non_blocking=True
                )
        self.rows += n


class Window(NamedTuple):
    """Replay storage and the rows to sample: `size` rows from row `start` on, as host ints, or as 0-dim
    tensors on the storage's device (a compiled step gathers its batch itself, one graph for every size)."""

    data: Dict[str, Tensor]
    size: Any
    start: Any


def sample(
    data: Dict[str, Tensor], batch_size: int, size, start, members: int = 1, streams: Optional[Streams] = None
) -> Batch:
    """The one sampler: uniform over `size` rows of storage `data` from row `start` on, around the ring.
    The bounds are host ints, or 0-dim tensors on the storage's device (static shapes: one graph, no sync).
    A population's storage (`members` rings, member-major): batch_size rows from each ring, each member's
    uniforms from its own stream, member-major."""
    device = data["obs"].device
    u = (
        torch.rand(batch_size, device=device)
        if members == 1
        else streams.rand(members * batch_size, device=device)
    )
    idx = (u * size).long().clamp(max=size - 1).clamp(min=0)
    ring = data["obs"].shape[0] // members
    idx = (idx + start) % ring
    if members > 1:
        idx = idx + torch.arange(members, device=device).repeat_interleave(batch_size) * ring
    return Batch(*(data[k][idx] for k in FIELDS if k in data))


def to_device(batch: Batch, device: torch.device) -> Batch:
    """A batch's tensors on `device` (a symmetric critic's None fields stay None)."""
    return Batch(*(None if x is None else x.to(device, non_blocking=True) for x in batch))


def draw(
    rows: Union[Batch, Window],
    batch_size: int,
    norm: "Normalizer",
    device: torch.device,
    members: int = 1,
    streams: Optional[Streams] = None,
) -> Batch:
    """What a learner's update trains on: a uniform batch from a Window (or a batch sampled already), on the
    learner's `device`, its observations normalised with the current statistics (the replay keeps raw ones)."""
    if isinstance(rows, Window):
        batch = sample(rows.data, batch_size, rows.size, rows.start, members, streams)
    else:
        batch = rows
    if batch.obs.device != device:  # the replay lives on another device (trio placement)
        batch = to_device(batch, device)
    batch = batch._replace(obs=norm(batch.obs), next_obs=norm(batch.next_obs))
    if batch.critic_obs is None:
        return batch
    return batch._replace(
        critic_obs=norm.critic(batch.critic_obs), next_critic_obs=norm.critic(batch.next_critic_obs)
    )


class Normalizer(torch.nn.Module):
    """Running mean / variance of observations (parallel Welford merge), used with clamping. `critic_dim` > 0:
    `critic` is the privileged critic observation's own Normalizer (its buffers travel with these: checkpoints,
    the trio's snapshot, a compiled update's static inputs); else None."""

    def __init__(self, dim, device, clip=5.0, eps=1e-4, enabled=True, members=1, critic_dim=0):
        super().__init__()
        self.clip, self.enabled, self.members = clip, enabled, members
        self.critic = Normalizer(critic_dim, device, clip, eps, enabled, members) if critic_dim else None
        shape = (
            (dim,) if members == 1 else (members, 1, dim)
        )  # a population: one set of statistics per member
        self.register_buffer("mean", torch.zeros(shape, device=device))
        self.register_buffer("var", torch.ones(shape, device=device))
        self.register_buffer(
            "count", torch.tensor(eps, device=device)
        )  # alike for all: members step together

    @torch.no_grad()
    def update(self, x):
        if not self.enabled:
            return
        if (
            self.members > 1
        ):  # per member; float64 sums so a member's statistics do not depend on K (members.py)
            x = x.reshape(self.members, -1, x.shape[-1]).double()
        n = x.shape[-2]
        mean, var = x.mean(-2, keepdim=self.members > 1), x.var(-2, unbiased=False, keepdim=self.members > 1)
        mean, var = mean.float(), var.float()
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.var.copy_((self.var * self.count + var * n + delta**2 * self.count * n / total) / total)
        self.count.copy_(total)

    def forward(self, x):
        if not self.enabled:
            return x
        if self.members > 1:
            y = x.reshape(self.members, -1, x.shape[-1])
            return (
                ((y - self.mean) / torch.sqrt(self.var + 1e-8)).clamp(-self.clip, self.clip).reshape(x.shape)
            )
        return ((x - self.mean) / torch.sqrt(self.var + 1e-8)).clamp(-self.clip, self.clip)
