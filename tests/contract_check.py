"""The env contract's checks (envs/__init__.py, envs/contract.py), as one function any test runs on an env:
in process for every installed backend (test_envs_contract.py), and in a fresh interpreter for Isaac Gym's
stand-ins, which must be imported before torch."""

import torch

from pql_scaling.envs.contract import Resumable, VecEnv, critic_obs_dim


def check_contract(env, wild=False):
    """Shapes, dtypes and device; final_obs == next_obs where nothing ended and the new episode's first
    observation where something did; the time limit truncates (never terminates) exactly at the limit; actions
    outside [-1, 1] are clamped, not an error; a Resumable env steps the same way from a restored state.

    A backend with deferred resets (`env.deferred_resets`: Isaac Gym) is the contract's documented variant: the
    observation of an env that ended is its terminal one (final_obs == next_obs everywhere), the next step spans
    two episodes and says so (info["valid"] False exactly there), and its time limit counts the task's own
    progress buffer (checked by tests/test_isaacgym_adapter.py), so here only that time-outs come as truncation.
    `wild`: actions up to 3x the bounds, so some envs terminate too.

    A backend that sets `critic_obs_dim` > 0 (privileged critic observations) is checked for them too: `critic_obs`
    after reset() and every step, float32 (num_envs, critic_obs_dim) on the env's device, a tensor of its own
    (not overwritten by the next step), and info["final_critic_obs"] equal to it where nothing ended (everywhere
    with deferred resets), another one where an episode ended and was reset; a Resumable env restores it."""
    assert isinstance(env, VecEnv)
    deferred = bool(getattr(env, "deferred_resets", False))
    critic = critic_obs_dim(env)
    obs = env.reset()
    n = env.num_envs
    assert (
        obs.shape == (n, env.obs_dim)
        and obs.dtype == torch.float32
        and obs.device == torch.device(env.device)
    )
    cobs = kept = _check_critic_obs(env, n, critic).clone() if critic else None
    gen = torch.Generator().manual_seed(0)
    ended_at = torch.full((n,), -1)
    t_episode = torch.zeros(n, dtype=torch.long)
    prev_done = torch.zeros(n, dtype=torch.bool)
    scale = torch.linspace(0.5, 3.0, n)[:, None] if wild else 2.0
    for t in range(2 * env.max_episode_steps + 2 if deferred else env.max_episode_steps + 2):
        action = ((torch.rand((n, env.act_dim), generator=gen) * 2 - 1) * scale).to(
            env.device
        )  # beyond [-1, 1]
        next_obs, reward, terminated, truncated, info = env.step(action)
        t_episode += 1
        assert next_obs.shape == (n, env.obs_dim) and next_obs.dtype == torch.float32
        assert reward.shape == (n,) and reward.dtype == torch.float32 and torch.isfinite(reward).all()
        assert terminated.dtype == torch.bool and truncated.dtype == torch.bool
        assert not (terminated & truncated).any()  # a time-out at a terminal state counts as terminal
        done = (terminated | truncated).cpu()
        final = info["final_obs"]
        assert final.shape == next_obs.shape
        if deferred:
            assert torch.equal(final, next_obs)
            assert torch.equal(info["valid"].cpu(), ~prev_done)
        else:
            assert torch.equal(final[~done.to(final.device)], next_obs[~done.to(next_obs.device)])
            if done.any():
                assert not torch.equal(final[done.to(final.device)], next_obs[done.to(next_obs.device)])
            # truncation exactly at the limit (counted per episode), never before it
            assert bool(
                (truncated.cpu() == (t_episode >= env.max_episode_steps) & ~terminated.cpu()).all()
            ), t
        if critic:
            before, cobs = cobs, _check_critic_obs(env, n, critic)
            _check_final_critic_obs(info, cobs, done, deferred)
            assert torch.equal(before, kept)  # the last step's critic_obs is what it was: a tensor of its own
            kept = cobs.clone()
        ended_at[done & (ended_at < 0)] = t
        t_episode[done] = 0
        prev_done = done
    assert (ended_at >= 0).all(), "some env never ended within its time limit"
    if isinstance(env, Resumable):
        state = env.state_dict()
        a = (torch.rand((n, env.act_dim), generator=gen) * 2 - 1).to(env.device)
        first = env.step(a)[0].clone()
        first_critic = env.critic_obs.clone() if critic else None
        env.load_state_dict(state)
        if critic:  # the restored state's critic observation, not the one of the step since
            assert not torch.equal(env.critic_obs, first_critic)
        assert torch.allclose(env.step(a)[0], first, atol=1e-6)  # the same state steps the same way
        if critic:
            assert torch.allclose(env.critic_obs, first_critic, atol=1e-6)
    if hasattr(env, "close"):
        env.close()


def _check_critic_obs(env, n, dim):
    cobs = env.critic_obs
    assert cobs.shape == (n, dim) and cobs.dtype == torch.float32, (cobs.shape, cobs.dtype)
    assert cobs.device == torch.device(env.device)
    return cobs


def _check_final_critic_obs(info, cobs, done, deferred):
    final = info["final_critic_obs"]
    assert final.shape == cobs.shape and final.dtype == torch.float32
    if deferred:  # an ended env's critic observation is its terminal one, as its policy observation is
        assert torch.equal(final, cobs)
        return
    done = done.to(final.device)
    assert torch.equal(final[~done], cobs[~done])
    if done.any():
        assert not torch.equal(final[done], cobs[done])
