import pytest
import torch

import envs


def test_unknown_task_lists_valid_names():
    with pytest.raises(ValueError, match="pendulum"):
        envs.make("no_such_task", 2)


def test_unknown_backend_lists_valid_names():
    with pytest.raises(ValueError, match="native"):
        envs.make("pendulum", 2, backend="no_such_backend")


def test_autoreset_returns_final_obs_and_truncates_at_limit():
    env = envs.make("pendulum", 8, seed=1)
    obs = env.reset()
    assert obs.shape == (8, env.obs_dim) and obs.dtype == torch.float32
    for t in range(env.max_episode_steps):
        next_obs, reward, terminated, truncated, info = env.step(torch.zeros(8, env.act_dim))
        done = terminated | truncated
        if t < env.max_episode_steps - 1:
            assert not done.any()
            assert torch.equal(info["final_obs"], next_obs)
    assert truncated.all() and not terminated.any()
    assert not torch.allclose(info["final_obs"], next_obs)  # next_obs is a fresh episode's first obs
