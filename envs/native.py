"""The embedded default backend: batched native torch tasks behind the env contract.

Holds the state of all envs in one tensor and applies what every task shares: action scaling from
[-1, 1] to native units, the time limit, and auto-reset with `final_obs`. Resets are done with
`torch.where` over all envs, never by indexing with a data-dependent list, so a step has static
shapes and no host sync. With the task parameter `privileged_critic=1` the env also gives the critic its
own observation (the env contract's `critic_obs` and `info["final_critic_obs"]`): the policy's, the true
state and the elapsed fraction of the time limit.
"""

import torch

from pql_scaling.envs.contract import member_rows, time_limit
from pql_scaling.tasks import load_native


class NativeVecEnv:
    """`members` > 1 (a population): num_envs / members envs per member, member-major, each member's resets
    drawn from its own generator seeded with `seeds[k]`, so a member's episodes do not depend on the others."""

    def __init__(self, task, num_envs, device="cpu", seed=0, members=1, seeds=None, **overrides):
        self.device = torch.device(device)
        self.task = load_native(task)(self.device)
        for key, value in overrides.items():  # e.g. max_episode_steps=500, or a physics constant
            if not hasattr(self.task, key):
                raise ValueError("task %r has no parameter %r" % (task, key))
            setattr(self.task, key, type(getattr(self.task, key))(value))
        self.num_envs = int(num_envs)
        self.obs_dim, self.act_dim = self.task.obs_dim, self.task.act_dim
        self.max_episode_steps = self.task.max_episode_steps
        if self.task.privileged_critic not in (0, 1):
            raise ValueError(
                "task %r: privileged_critic=%r; 0 (the critic sees the policy observation) or 1 (it also sees "
                "the true state and the time-limit fraction)" % (task, self.task.privileged_critic)
            )
        # the contract's privileged critic observation (envs/contract.py): policy obs + state + t / limit
        self.critic_obs_dim = (self.obs_dim + self.task.state_dim + 1) * self.task.privileged_critic
        self.members = int(members)
        seeds = [int(seed)] if seeds is None else [int(x) for x in seeds]
        if len(seeds) != self.members or self.num_envs % self.members:
            raise ValueError(
                "%d seeds and %d envs for %d members" % (len(seeds), self.num_envs, self.members)
            )
        self.generators = [torch.Generator(device=self.device).manual_seed(x) for x in seeds]
        self.generator = self.generators[0]
        low = torch.tensor(self.task.action_low, dtype=torch.float32, device=self.device)
        high = torch.tensor(self.task.action_high, dtype=torch.float32, device=self.device)
        self._act_scale, self._act_bias = (high - low) / 2, (high + low) / 2
        self.state = self._initial()
        self.t = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self.critic_obs = self._critic_obs(self.task.observe(self.state))

    def _critic_obs(self, obs, state=None, t=None):
        """The critic's observation of `obs` (default: of the current state and step count); None without."""
        if not self.critic_obs_dim:
            return None
        state, t = (self.state, self.t) if state is None else (state, t)
        return torch.cat([obs, state.float(), (t.float() / self.max_episode_steps)[:, None]], dim=1)

    def _initial(self):
        if self.members == 1:
            return self.task.initial_state(self.num_envs, self.generator)
        n = self.num_envs // self.members
        return torch.cat([self.task.initial_state(n, g) for g in self.generators])

    def reset(self):
        self.state = self._initial()
        self.t.zero_()
        obs = self.task.observe(self.state)
        self.critic_obs = self._critic_obs(obs)
        return obs

    def step(self, action):
        action = action.to(self.device, torch.float32).clamp(-1.0, 1.0)
        state, reward, terminated = self.task.dynamics(self.state, action * self._act_scale + self._act_bias)
        self.t += 1
        truncated = time_limit(self.t, self.max_episode_steps, terminated)
        done = terminated | truncated
        final_obs, final_t = self.task.observe(state), self.t  # the where below makes a new self.t
        fresh = self._initial()
        self.state = torch.where(done[:, None], fresh, state)
        self.t = torch.where(done, torch.zeros_like(self.t), self.t)
        next_obs = torch.where(done[:, None], self.task.observe(self.state), final_obs)
        info = {"final_obs": final_obs}
        if self.critic_obs_dim:
            info["final_critic_obs"] = self._critic_obs(final_obs, state, final_t)
            self.critic_obs = self._critic_obs(next_obs)
        return next_obs, reward.float(), terminated, truncated, info

    # Batched state access, for tests against reference simulators and for evaluation.
    def get_state(self):
        return self.state.clone()

    def set_state(self, state):
        self.state = (
            torch.as_tensor(state, dtype=torch.float32, device=self.device).reshape(self.num_envs, -1).clone()
        )
        obs = self.task.observe(self.state)
        self.critic_obs = self._critic_obs(obs)
        return obs

    # Checkpointing: the runtime saves this so a resumed run continues the same episodes and RNG stream.
    def state_dict(self):
        s = {"state": self.state.clone(), "t": self.t.clone(), "generator": self.generator.get_state()}
        if self.members > 1:
            s["generators"] = [g.get_state() for g in self.generators]
        return s

    def _member_rows(self, k):
        return member_rows(self.num_envs, self.members, k)

    def member_state_dict(self, k):
        """Member k's envs as a single run with its seed checkpoints them (a population member's checkpoint)."""
        rows = self._member_rows(k)
        return {
            "state": self.state[rows].clone(),
            "t": self.t[rows].clone(),
            "generator": self.generators[k].get_state(),
        }

    def load_member_state_dict(self, k, s):
        rows = self._member_rows(k)
        self.state[rows] = s["state"].to(self.device)
        self.t[rows] = s["t"].to(self.device)
        self.generators[k].set_state(s["generator"])
        self.critic_obs = self._critic_obs(self.task.observe(self.state))

    def load_state_dict(self, s):
        self.state = s["state"].to(self.device)
        self.t = s["t"].to(self.device)
        self.generator.set_state(s["generator"])
        for g, state in zip(self.generators[1:], s.get("generators", [])[1:]):
            g.set_state(state)
        self.critic_obs = self._critic_obs(self.task.observe(self.state))

    def close(self):
        pass
