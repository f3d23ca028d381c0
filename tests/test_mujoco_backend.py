"""backend=mujoco against Gymnasium's own v5 envs, plus the env contract (auto-reset, determinism)."""

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco")
gym = pytest.importorskip("gymnasium")

import envs  # noqa: E402

TASKS = ["Ant", "HalfCheetah", "Hopper", "Walker2d", "Humanoid"]
SEGMENTS, SEGMENT_STEPS = 4, 25  # 100 compared steps per env; both sides re-synced per segment
# Differences come only from the constraint solver's warm start (Gymnasium carries it across env
# steps, MuJoCo's rollout starts each call from zero) and float32 observations; they stay at the
# solver tolerance for a segment, where chaotic dynamics (HalfCheetah after ~100 steps) would let them grow.
OBS_TOL = dict(rtol=1e-3, atol=1e-4)
REW_TOL = dict(rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("task", TASKS)
def test_matches_gymnasium_v5(task):
    n = 2
    env = envs.make(task, n, seed=3, backend="mujoco")
    refs = [gym.make(task + "-v5").unwrapped for _ in range(n)]
    low, high = refs[0].action_space.low, refs[0].action_space.high
    assert env.obs_dim == refs[0].observation_space.shape[0] and env.act_dim == low.shape[0]
    gen = torch.Generator().manual_seed(0)
    terminations = 0
    for segment in range(SEGMENTS):
        obs = env.reset()
        qpos, qvel = env.get_state()
        for i, ref in enumerate(refs):
            ref.reset(seed=segment)
            ref.set_state(qpos[i].numpy(), qvel[i].numpy())
            np.testing.assert_allclose(obs[i].numpy(), ref._get_obs(), **OBS_TOL)  # first obs (cfrc_ext = 0)
        alive = np.ones(n, bool)
        for t in range(SEGMENT_STEPS):
            action = torch.rand((n, env.act_dim), generator=gen) * 2 - 1
            _, reward, terminated, truncated, info = env.step(action)
            assert not truncated.any()
            for i, ref in enumerate(refs):
                if not alive[i]:
                    continue
                native = low + (action[i].double().numpy() + 1) / 2 * (high - low)
                ref_obs, ref_reward, ref_term, _, _ = ref.step(native)
                np.testing.assert_allclose(
                    info["final_obs"][i].numpy(), ref_obs, **OBS_TOL, err_msg="t=%d" % t
                )
                np.testing.assert_allclose(reward[i].item(), ref_reward, **REW_TOL, err_msg="t=%d" % t)
                assert bool(terminated[i]) == ref_term, "t=%d" % t
                if ref_term:
                    alive[i] = False
                    terminations += 1
    if task in ("Hopper", "Walker2d"):  # random actions topple them within a segment
        assert terminations > 0


def test_autoreset_final_obs_and_time_limit():
    env = envs.make("HalfCheetah", 3, seed=0, backend="mujoco", max_episode_steps=5)
    env.reset()
    for t in range(5):
        next_obs, reward, terminated, truncated, info = env.step(torch.zeros(3, env.act_dim))
        assert next_obs.dtype == torch.float32 and reward.shape == (3,)
        if t < 4:
            assert not (terminated | truncated).any() and torch.equal(info["final_obs"], next_obs)
    assert truncated.all() and not terminated.any()
    assert not torch.allclose(info["final_obs"], next_obs)
    assert (env.t == 0).all()


def test_termination_resets_only_ended_envs():
    env = envs.make("Hopper", 8, seed=0, backend="mujoco")
    env.reset()
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        obs, reward, terminated, truncated, info = env.step(
            torch.rand((8, env.act_dim), generator=gen) * 2 - 1
        )
        if terminated.any() and not terminated.all():
            break
    assert terminated.any() and not terminated.all()
    keep = ~terminated
    assert torch.equal(info["final_obs"][keep], obs[keep])
    assert not torch.allclose(info["final_obs"][terminated], obs[terminated])
    # the new episodes start near the initial pose (reset noise 5e-3): z = qpos[1] ~ 1.25
    qpos, _ = env.get_state()
    assert torch.allclose(qpos[terminated, 1], torch.full_like(qpos[terminated, 1], 1.25), atol=6e-3)


@pytest.mark.parametrize("task", ["Ant", "Walker2d"])
def test_deterministic_for_a_seed_and_threads_do_not_matter(task):
    def run(seed, nthread):
        env = envs.make(task, 6, seed=seed, backend="mujoco", nthread=nthread)
        out = [env.reset()]
        gen = torch.Generator().manual_seed(1)
        for _ in range(30):
            out.extend(env.step(torch.rand((6, env.act_dim), generator=gen) * 2 - 1)[:2])
        env.close()
        return torch.cat([o.reshape(-1) for o in out])

    a = run(0, 2)
    assert torch.equal(a, run(0, 1)) and torch.equal(a, run(0, 2))
    assert not torch.equal(a, run(1, 2))


def test_get_set_state_round_trip_and_overrides():
    env = envs.make("Ant", 4, seed=0, backend="mujoco", include_cfrc_ext_in_observation=False)
    assert env.obs_dim == 27
    env.reset()
    qpos, qvel = env.get_state()
    qpos[:, 0] += 1.0
    obs = env.set_state(qpos, qvel)
    q2, v2 = env.get_state()
    assert torch.equal(q2, qpos) and torch.equal(v2, qvel)
    assert torch.allclose(obs[:, :13], qpos[:, 2:].float())
    with pytest.raises(ValueError, match="no parameter"):
        envs.make("Ant", 1, backend="mujoco", not_a_knob=1)


def test_actions_are_clamped_and_scaled_to_ctrlrange():
    env = envs.make("Humanoid", 2, seed=0, backend="mujoco")
    ctrl = env.task.action_to_ctrl(torch.tensor([[5.0] * 17, [-1.0] * 17]))
    assert torch.allclose(ctrl[0], torch.full((17,), 0.4, dtype=torch.float64))
    assert torch.allclose(ctrl[1], torch.full((17,), -0.4, dtype=torch.float64))
