import pytest
import torch

from pql_scaling import envs


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


# ---------------------------------------------------------------- the contract, for every installed backend

BACKENDS = [  # (backend, task, extra make() kwargs, import that must work)
    ("native", "pendulum", {}, None),
    ("native", "cartpole_swingup", {}, None),
    ("mujoco", "Hopper", {"max_episode_steps": 40}, "mujoco"),
    ("mjwarp", "Hopper", {"max_episode_steps": 40}, "mujoco_warp"),
    # Gymnasium's vector envs in the modes that give the contract as it is (tests/test_gymnasium_backend.py has
    # next_step, whose reset step is a transition of its own, marked invalid)
    ("gymnasium", "Pendulum-v1", {"max_episode_steps": 40}, "gymnasium"),
    ("gymnasium", "InvertedDoublePendulum-v5", {"max_episode_steps": 40}, "mujoco"),
    ("gymnasium", "Pendulum-v1", {"max_episode_steps": 40, "vectorization": "async"}, "gymnasium"),
    ("gymnasium", "Pendulum-v1", {"max_episode_steps": 40, "autoreset_mode": "disabled"}, "gymnasium"),
]


def _make(backend, task, kw, need, n=4, seed=0):
    if need is not None:
        pytest.importorskip(need)
    return envs.make(task, n, seed=seed, backend=backend, **kw)


IDS = [
    b[0] + "-" + b[1] + "".join("-" + str(v) for k, v in sorted(b[2].items()) if k != "max_episode_steps")
    for b in BACKENDS
]


@pytest.mark.parametrize("backend,task,kw,need", BACKENDS, ids=IDS)
def test_every_backend_honours_the_contract(backend, task, kw, need):
    """Shapes, dtypes and device; final_obs == next_obs where nothing ended and the new episode's first
    observation where something did; the time limit truncates (never terminates); actions outside [-1, 1] are
    clamped, not an error. Every backend's own time limit and auto-reset are checked the same way here."""
    from pql_scaling.envs.contract import Resumable, VecEnv

    env = _make(backend, task, kw, need)
    assert isinstance(env, VecEnv)
    obs = env.reset()
    n = env.num_envs
    assert (
        obs.shape == (n, env.obs_dim)
        and obs.dtype == torch.float32
        and obs.device == torch.device(env.device)
    )
    gen = torch.Generator().manual_seed(0)
    ended_at = torch.full((n,), -1)
    t_episode = torch.zeros(n, dtype=torch.long)
    for t in range(env.max_episode_steps + 2):
        action = (torch.rand((n, env.act_dim), generator=gen) * 4 - 2).to(env.device)  # beyond [-1, 1] too
        next_obs, reward, terminated, truncated, info = env.step(action)
        t_episode += 1
        assert next_obs.shape == (n, env.obs_dim) and next_obs.dtype == torch.float32
        assert reward.shape == (n,) and reward.dtype == torch.float32 and torch.isfinite(reward).all()
        assert terminated.dtype == torch.bool and truncated.dtype == torch.bool
        assert not (terminated & truncated).any()  # a time-out at a terminal state counts as terminal
        done = (terminated | truncated).cpu()
        final = info["final_obs"]
        assert final.shape == next_obs.shape
        assert torch.equal(final[~done.to(final.device)], next_obs[~done.to(next_obs.device)])
        if done.any():
            assert not torch.equal(final[done.to(final.device)], next_obs[done.to(next_obs.device)])
            ended_at[done & (ended_at < 0)] = t
        # truncation exactly at the limit (counted per episode), never before it
        assert bool((truncated.cpu() == (t_episode >= env.max_episode_steps) & ~terminated.cpu()).all()), t
        t_episode[done] = 0
    assert (ended_at >= 0).all(), "some env never ended within its time limit"
    if isinstance(env, Resumable):
        state = env.state_dict()
        a = (torch.rand((n, env.act_dim), generator=gen) * 2 - 1).to(env.device)
        first = env.step(a)[0].clone()
        env.load_state_dict(state)
        assert torch.allclose(env.step(a)[0], first, atol=1e-6)  # the same state steps the same way
    if hasattr(env, "close"):
        env.close()
