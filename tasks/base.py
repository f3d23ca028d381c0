"""What a native torch task is: pure batched dynamics on tensors.

A task is a *stateless* description of one control problem. The state of every env lives in one
tensor owned by the env wrapper (`envs.native.NativeVecEnv`), and every method below is a pure
function of its inputs, so the same code runs on CPU or CUDA, for 1 or 65536 envs, and a whole
step can be captured in a CUDA graph (no data-dependent Python control flow, no host sync).

Subclasses set the class attributes and implement `initial_state`, `observe` and `dynamics`.
Actions reach `dynamics` already in the task's native units (the wrapper maps [-1, 1] linearly
onto [action_low, action_high]); rewards are the task's own, unscaled.
"""

import abc
from typing import Optional, Sequence, Tuple

import torch


class Task(abc.ABC):
    name = "task"
    obs_dim = 0
    act_dim = 0
    state_dim = 0
    max_episode_steps = 1000
    action_low: Sequence[float] = ()
    action_high: Sequence[float] = ()
    # the mean episode return that counts as "solved" (benchmarks, studies: tasks.solved_return), and
    # where the number comes from; returns are the task's own units, logged from training episodes
    solved_return: Optional[float] = None
    solved_source = ""
    # 1: an asymmetric critic (env_kwargs.privileged_critic=1): the critic also sees the true state and the
    # elapsed fraction of the time limit, which the policy does not (envs.native.NativeVecEnv.critic_obs)
    privileged_critic = 0

    def __init__(self, device: torch.device):
        self.device = torch.device(device)

    @abc.abstractmethod
    def initial_state(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """A (n, state_dim) batch of start states drawn with `generator`."""

    @abc.abstractmethod
    def observe(self, state: torch.Tensor) -> torch.Tensor:
        """(n, state_dim) -> (n, obs_dim) float32 observations."""

    @abc.abstractmethod
    def dynamics(
        self, state: torch.Tensor, action: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step: (state, native action) -> (next_state, reward (n,), terminated (n,) bool)."""

    def uniform(self, n: int, low, high, generator: torch.Generator) -> torch.Tensor:
        """(n, len(low)) uniform samples in [low, high) on this task's device: a helper for resets.

        The bounds become device tensors once and are cached: a host-to-device copy per step would
        stall the GPU pipeline and break CUDA-graph capture."""
        key = (tuple(low), tuple(high))
        cache = self.__dict__.setdefault("_bounds", {})
        if key not in cache:
            cache[key] = (
                torch.as_tensor(low, dtype=torch.float32, device=self.device),
                torch.as_tensor(high, dtype=torch.float32, device=self.device),
            )
        low, high = cache[key]
        u = torch.rand((n, low.numel()), generator=generator, device=self.device)
        return low + u * (high - low)


def angle_normalize(x: torch.Tensor) -> torch.Tensor:
    """Wrap angles to [-pi, pi), as Gymnasium does."""
    return torch.remainder(x + torch.pi, 2 * torch.pi) - torch.pi
