"""The batched-environment contract every backend honours, as a typed Protocol (the prose is envs/__init__.py's).

Checked for every installed backend by tests/test_envs_contract.py; pql_scaling uses envs through this contract
only. Python 3.8 has typing.Protocol, so the training path may annotate with it.
"""

from typing import Any, Dict, Tuple

try:
    from typing import Protocol, runtime_checkable
except ImportError:  # pragma: no cover - Python < 3.8 is not supported; kept importable for tools
    Protocol, runtime_checkable = object, (lambda cls: cls)

import torch

StepResult = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Dict[str, Any]]


@runtime_checkable
class VecEnv(Protocol):
    """`num_envs` environments stepped as one batch, tensors on `device`, auto-reset inside step().

    step(action) with action in [-1, 1]^(num_envs, act_dim) returns (next_obs, reward, terminated, truncated,
    info): float32 (num_envs, obs_dim) observations (an ended env's next_obs is already its next episode's first),
    float32 rewards in the task's own units, bool terminated (bootstrap with 0) and truncated (the time limit:
    bootstrap through it), info["final_obs"] the true last observation of every env (equal to next_obs where
    nothing ended), optional info["valid"] (bool: False on a transition that spans two episodes, never learned
    from), optional info["episode_return"] / ["episode_length"] (a simulator's own accounting). A backend whose
    resets are deferred (Isaac Gym) says so with `deferred_resets = True`: there an ended env's next_obs is its
    terminal observation, and the following step, which starts the new episode, comes with valid=False.

    Privileged critic observations (asymmetric actor-critic: Isaac Lab's "critic" group, IsaacGymEnvs' states):
    a backend that has them sets an int attribute `critic_obs_dim` > 0 (absent or 0: the critic sees the policy
    observation) and exposes `critic_obs`, a float32 (num_envs, critic_obs_dim) tensor on `device` that matches
    the policy observation most recently returned by reset() or step() (for an env that was just auto-reset:
    its new episode's first); step()'s info then carries info["final_critic_obs"], the true last critic
    observation of every env (equal to `critic_obs` where nothing ended), exactly as info["final_obs"] does for
    the policy. The replay keeps both; the critic learns from its own, the actor acts on the policy's."""

    num_envs: int
    obs_dim: int
    act_dim: int
    device: Any
    max_episode_steps: int

    def reset(self) -> torch.Tensor: ...

    def step(self, action: torch.Tensor) -> StepResult: ...


@runtime_checkable
class Resumable(Protocol):
    """A backend that can save and restore its simulator state (resume continues the same episodes)."""

    def state_dict(self) -> Dict[str, Any]: ...

    def load_state_dict(self, state: Dict[str, Any]) -> None: ...


def critic_obs_dim(env: Any) -> int:
    """The env's privileged critic observation size, 0 when the critic sees the policy observation."""
    dim = getattr(env, "critic_obs_dim", 0) or 0
    if not isinstance(dim, int) or dim < 0:
        raise ValueError(
            "%s.critic_obs_dim=%r: the env contract wants an int >= 0 (0 or absent: no critic observation)"
            % (type(env).__name__, dim)
        )
    return dim


def time_limit(t: torch.Tensor, max_episode_steps: int, terminated: torch.Tensor) -> torch.Tensor:
    """The contract's truncation: an episode that reached its step limit without terminating (a time-out at a
    terminal state counts as terminal). The backends that count steps themselves (native, mujoco, mjwarp) use
    this; tests/contract_check.py pins it for every backend."""
    return (t >= max_episode_steps) & ~terminated


def member_rows(num_envs: int, members: int, k: int) -> slice:
    """A population member's envs: rows [k * n, (k + 1) * n) of every per-env tensor of a backend that steps
    the K members' envs as one batch (n = num_envs / members). Every population backend slices by this."""
    per = num_envs // members
    return slice(k * per, (k + 1) * per)
