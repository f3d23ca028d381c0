"""Native tasks: physics against Gymnasium where it has the same system, and the env contract for all.

Reference comparisons re-sync Gymnasium to our state before every step, so each check is one
transition from an identical state (no drift accumulates from float32 vs float64 arithmetic).
Tolerances are float32-level: our tasks compute in float32 (eps 1.2e-7), Gymnasium in float64 (or
float32 with different rounding for mountain car), so one step agrees to a few ulps of the largest
intermediate; RK4 over Acrobot's 0.2 s step with velocities up to 9 pi compounds that a little more.
"""

import math

import numpy as np
import pytest
import torch

from pql_scaling import envs
from pql_scaling.tasks import NATIVE_TASKS, load_native

gym = pytest.importorskip("gymnasium")

ALL = sorted(NATIVE_TASKS)


def _gym(env_id):
    env = gym.make(env_id).unwrapped  # no TimeLimit / checker wrappers: we step single transitions
    env.reset(seed=0)
    return env


def _random_actions(steps, n, act_dim, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((steps, n, act_dim), generator=g) * 2 - 1


# --- exact matches: same task in Gymnasium -----------------------------------------------------------


def test_pendulum_matches_gymnasium():
    n, steps = 8, 300
    env = envs.make("pendulum", n, seed=3)
    starts = torch.tensor(
        [
            [math.pi, 0.0],
            [0.0, 0.0],
            [3.0, 7.9],
            [-3.0, -7.9],
            [1.0, 2.0],
            [-0.5, 8.0],
            [10.0, -3.0],
            [0.1, 0.0],
        ]
    )
    env.set_state(starts)
    ref = [_gym("Pendulum-v1") for _ in range(n)]
    actions = _random_actions(steps, n, 1, seed=0)
    for t in range(steps):
        state = env.get_state().double().numpy()
        _, reward, terminated, truncated, info = env.step(actions[t])
        for i, g in enumerate(ref):
            g.state = state[i].copy()
            obs, r, term, _, _ = g.step(np.array([2.0 * actions[t, i, 0].item()], dtype=np.float32))
            np.testing.assert_allclose(info["final_obs"][i].numpy(), obs, rtol=1e-5, atol=1e-5)
            assert reward[i].item() == pytest.approx(r, rel=1e-5, abs=1e-5)
            assert bool(terminated[i]) == term


def test_mountaincar_matches_gymnasium():
    n, steps = 8, 400
    env = envs.make("mountaincar", n, seed=3)
    # valley, left wall moving left (inelastic clip), speed limits, and three just short of the goal
    starts = torch.tensor(
        [
            [-0.5, 0.0],
            [-0.4, 0.0],
            [-1.19, -0.07],
            [-1.2, 0.0],
            [0.0, 0.07],
            [0.44, 0.02],
            [0.449, 0.001],
            [0.4, -0.03],
        ]
    )
    env.set_state(starts)
    ref = [_gym("MountainCarContinuous-v0") for _ in range(n)]
    actions = _random_actions(steps, n, 1, seed=1)
    actions[:20, 5:7] = 1.0  # push the near-goal cars over: exercises the +100 / termination branch
    n_term = 0
    for t in range(steps):
        state = env.get_state().numpy()
        _, reward, terminated, _, info = env.step(actions[t])
        for i, g in enumerate(ref):
            g.state = state[i].astype(np.float32)  # Gymnasium keeps float32 state after a step
            obs, r, term, _, _ = g.step(actions[t, i].numpy().astype(np.float32))
            np.testing.assert_allclose(info["final_obs"][i].numpy(), obs, rtol=1e-5, atol=1e-6)
            assert reward[i].item() == pytest.approx(r, rel=1e-5, abs=1e-6)
            assert bool(terminated[i]) == term
            n_term += term
    assert n_term >= 2


def test_mountaincar_limit_is_gymnasium_registration():
    assert (
        load_native("mountaincar").max_episode_steps
        == gym.spec("MountainCarContinuous-v0").max_episode_steps
        == 999
    )
    assert load_native("pendulum").max_episode_steps == gym.spec("Pendulum-v1").max_episode_steps
    assert load_native("acrobot_swingup").max_episode_steps == gym.spec("Acrobot-v1").max_episode_steps


# --- same physics as Gymnasium; rewards differ by design --------------------------------------------


def test_cartpole_swingup_physics_matches_gymnasium_cartpole():
    n, steps = 8, 300
    env = envs.make("cartpole_swingup", n, seed=3, x_threshold=1e6)  # no resets: follow the physics
    g = torch.Generator().manual_seed(2)
    starts = torch.rand((n, 4), generator=g) * torch.tensor([4.0, 6.0, 2 * math.pi, 12.0]) - torch.tensor(
        [2.0, 3.0, math.pi, 6.0]
    )
    env.set_state(starts)
    ref = _gym("CartPole-v1")
    actions = _random_actions(steps, n, 1, seed=2)
    actions[:, 0] = torch.sign(actions[:, 0])  # also full-force steps
    for t in range(steps):
        state = env.get_state().double().numpy()
        env.step(actions[t])
        ours = env.get_state().double().numpy()
        for i in range(n):
            a = actions[t, i, 0].item()
            ref.state = state[i].copy()
            ref.steps_beyond_terminated = None  # Gymnasium would warn about stepping past its 12-degree limit
            ref.force_mag = 10.0 * abs(a)  # Gymnasium pushes +-force_mag; make that our 10 * a
            ref.step(1 if a >= 0 else 0)
            x, x_dot, th, th_dot = ref.state
            np.testing.assert_allclose(ours[i, [0, 1, 3]], [x, x_dot, th_dot], rtol=1e-5, atol=1e-5)
            assert abs(math.remainder(ours[i, 2] - th, 2 * math.pi)) < 1e-5  # ours wraps the angle


def test_acrobot_swingup_physics_matches_gymnasium_acrobot():
    n, steps = 8, 200
    env = envs.make("acrobot_swingup", n, seed=3)
    g = torch.Generator().manual_seed(4)
    # wide start states, up to the velocity limits, so the wrap and clip branches run
    starts = (torch.rand((n, 4), generator=g) * 2 - 1) * torch.tensor(
        [math.pi, math.pi, 4 * math.pi, 9 * math.pi]
    )
    env.set_state(starts)
    ref = _gym("Acrobot-v1")
    actions = torch.randint(-1, 2, (steps, n, 1), generator=g).float()  # Gymnasium's torques -1, 0, +1
    for t in range(steps):
        state = env.get_state().double().numpy()
        _, _, _, _, info = env.step(actions[t])
        for i in range(n):
            ref.state = state[i].copy()
            obs, _, _, _, _ = ref.step(int(actions[t, i, 0].item()) + 1)
            np.testing.assert_allclose(info["final_obs"][i].numpy(), obs, rtol=1e-4, atol=1e-4)


# --- double cart-pole: no reference simulator, so check the mechanics from first principles ----------


def _lagrangian_accel(task, q, qd, force):
    """q'' from autograd of L = T - V built from link kinematics (independent of the task's M and r)."""
    lc1, lc2 = task.l1 / 2, task.l2 / 2

    def com1(q):
        return torch.stack([q[0] + lc1 * torch.sin(q[1]), lc1 * torch.cos(q[1])])

    def com2(q):
        return torch.stack(
            [
                q[0] + task.l1 * torch.sin(q[1]) + lc2 * torch.sin(q[2]),
                task.l1 * torch.cos(q[1]) + lc2 * torch.cos(q[2]),
            ]
        )

    def lagrangian(q, qd):
        v1 = torch.autograd.functional.jvp(com1, q, qd, create_graph=True)[1]  # COM velocities = J(q) qd
        v2 = torch.autograd.functional.jvp(com2, q, qd, create_graph=True)[1]
        kin = 0.5 * task.m0 * qd[0] ** 2 + 0.5 * task.m1 * (v1**2).sum() + 0.5 * task.m2 * (v2**2).sum()
        kin = (
            kin + 0.5 * task.m1 * task.l1**2 / 12 * qd[1] ** 2 + 0.5 * task.m2 * task.l2**2 / 12 * qd[2] ** 2
        )
        pot = task.g * (task.m1 * com1(q)[1] + task.m2 * com2(q)[1])
        return kin - pot

    hess = torch.autograd.functional.hessian(lagrangian, (q, qd))
    mass, mixed = hess[1][1], hess[1][0]  # d2L/dqd2, d2L/dqd dq
    dl_dq = torch.autograd.functional.jacobian(lambda q: lagrangian(q, qd), q)
    gen_force = torch.tensor([force, 0.0, 0.0], dtype=q.dtype)
    return torch.linalg.solve(mass, dl_dq - mixed @ qd + gen_force)


def test_double_cartpole_equations_match_autograd_lagrangian():
    task = load_native("double_cartpole_swingup")("cpu")
    g = torch.Generator().manual_seed(5)
    for _ in range(10):
        q = (torch.rand(3, generator=g, dtype=torch.float64) * 2 - 1) * torch.tensor(
            [2.0, math.pi, math.pi], dtype=torch.float64
        )
        qd = torch.randn(3, generator=g, dtype=torch.float64) * 4
        force = float(torch.randn((), generator=g)) * 10
        ours = task.accel(q[None], qd[None], torch.tensor([force], dtype=torch.float64))[0]
        torch.testing.assert_close(ours, _lagrangian_accel(task, q, qd, force), rtol=1e-9, atol=1e-9)


def test_double_cartpole_conserves_energy_without_force():
    task = load_native("double_cartpole_swingup")("cpu")
    task.x_threshold = 1e6
    g = torch.Generator().manual_seed(6)
    s = torch.zeros(64, 6)
    s[:, 1:3] = torch.rand((64, 2), generator=g) * 2 * math.pi
    s[:, 3:] = torch.randn((64, 3), generator=g)
    e0 = task.energy(s)
    for _ in range(250):  # 5 s
        s, _, _ = task.dynamics(s, torch.zeros(64, 1))
    assert (task.energy(s) - e0).abs().max() < 0.01  # joules; swinging both poles up takes ~2 J


# --- the env contract, for every task ----------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_shapes_and_dtypes(name):
    env = envs.make(name, 16, seed=0)
    obs = env.reset()
    assert obs.shape == (16, env.obs_dim) and obs.dtype == torch.float32
    next_obs, reward, terminated, truncated, info = env.step(torch.zeros(16, env.act_dim))
    assert next_obs.shape == (16, env.obs_dim) and next_obs.dtype == torch.float32
    assert reward.shape == (16,) and reward.dtype == torch.float32
    assert terminated.shape == truncated.shape == (16,)
    assert terminated.dtype == truncated.dtype == torch.bool
    assert info["final_obs"].shape == next_obs.shape and info["final_obs"].dtype == torch.float32
    assert env.get_state().shape == (16, env.task.state_dim)


@pytest.mark.parametrize("name", ALL)
def test_deterministic_for_a_seed(name):
    def rollout(seed):
        env = envs.make(
            name, 32, seed=seed, max_episode_steps=20
        )  # short limit: resets draw from the generator too
        out = [env.reset()]
        for a in _random_actions(50, 32, env.act_dim, seed=7):
            next_obs, reward, _, _, _ = env.step(a)
            out += [next_obs, reward[:, None]]
        return torch.cat(out, 1)

    assert torch.equal(rollout(1), rollout(1))
    assert not torch.equal(rollout(1), rollout(2))


@pytest.mark.parametrize("name", ALL)
def test_autoreset_returns_final_obs(name):
    env = envs.make(name, 64, seed=0, max_episode_steps=7)
    env.reset()
    ended = 0
    for t, a in enumerate(_random_actions(30, 64, env.act_dim, seed=8)):
        next_obs, _, terminated, truncated, info = env.step(a)
        done = terminated | truncated
        ended += int(done.sum())
        # envs that carried on: final_obs is next_obs; envs that ended: next_obs is the new episode's start
        assert torch.equal(info["final_obs"][~done], next_obs[~done])
        assert torch.equal(next_obs, env.task.observe(env.get_state()))
        assert torch.equal(env.t[done], torch.zeros_like(env.t[done]))
        assert not torch.isclose(info["final_obs"][done], next_obs[done]).all(dim=1).any()
    assert ended >= 64 * 4


@pytest.mark.parametrize("name", ALL)
def test_truncation_at_limit(name):
    env = envs.make(name, 8, seed=0, max_episode_steps=5)
    env.reset()
    for t in range(5):
        # hold the start state so terminating tasks cannot end early: truncation must come from the limit
        start = env.get_state()
        _, _, terminated, truncated, _ = env.step(torch.zeros(8, env.act_dim))
        assert not terminated.any()
        assert truncated.all() == (t == 4) and truncated.any() == (t == 4)
        if t < 4:
            env.set_state(start)
            env.t.fill_(t + 1)


# One state per terminating task that ends on the next step with action +1.
TERMINAL = {
    "mountaincar": [0.449, 0.07],
    "cartpole_swingup": [2.399, 5.0, math.pi, 0.0],
    "double_cartpole_swingup": [2.399, math.pi, math.pi, 5.0, 0.0, 0.0],
}


def test_terminating_tasks_are_listed():
    # pendulum and acrobot_swingup never terminate; every other task needs a TERMINAL entry here
    assert set(ALL) - set(TERMINAL) == {"pendulum", "acrobot_swingup"}


@pytest.mark.parametrize("name", sorted(TERMINAL))
def test_termination_is_not_truncation(name):
    # terminal on the last allowed step: terminated, not truncated; the env still resets
    env = envs.make(name, 2, seed=0, max_episode_steps=1)
    env.set_state(torch.tensor([TERMINAL[name]] * 2))
    _, reward, terminated, truncated, info = env.step(torch.tensor([[1.0], [1.0]]))
    assert terminated.all() and not truncated.any()
    assert not torch.equal(info["final_obs"], env.task.observe(env.get_state()))
    if name == "mountaincar":
        assert torch.allclose(reward, torch.full((2,), 100.0 - 0.1))


@pytest.mark.parametrize("name", ALL)
def test_actions_outside_range_are_clamped(name):
    env = envs.make(name, 4, seed=0)
    state = env.get_state()
    big = torch.tensor([[5.0], [-7.0], [1.0], [-1.0]]).expand(4, env.act_dim)
    edge = big.clamp(-1, 1)
    out_big = env.step(big)
    env.set_state(state)
    env.t.zero_()
    out_edge = env.step(edge)
    for x, y in zip(out_big[:4], out_edge[:4]):
        assert torch.equal(x, y)


@pytest.mark.parametrize("name", ALL)
def test_many_envs(name):
    env = envs.make(name, 4096, seed=0)
    obs = env.reset()
    for a in _random_actions(10, 4096, env.act_dim, seed=9):
        obs, reward, _, _, _ = env.step(a)
    assert torch.isfinite(obs).all() and torch.isfinite(reward).all()


@pytest.mark.parametrize("name", ALL)
def test_long_random_rollout_stays_finite(name):
    # bang-bang actions half the time: the most violent inputs the task can get
    env = envs.make(name, 128, seed=0)
    env.reset()
    g = torch.Generator().manual_seed(10)
    lo, hi = float("inf"), -float("inf")
    for t in range(1000):  # >= 1 full episode of every task (the longest limit is 1000)
        a = torch.rand((128, env.act_dim), generator=g) * 2 - 1
        if t % 2:
            a = torch.sign(a)
        obs, reward, _, _, info = env.step(a)
        assert (
            torch.isfinite(obs).all()
            and torch.isfinite(info["final_obs"]).all()
            and torch.isfinite(reward).all()
        )
        lo, hi = min(lo, float(reward.min())), max(hi, float(reward.max()))
    if name in ("cartpole_swingup", "acrobot_swingup", "double_cartpole_swingup"):
        assert 0.0 <= lo and hi <= 1.0  # the documented per-step reward range


@pytest.mark.parametrize("name", ["cartpole_swingup", "double_cartpole_swingup", "acrobot_swingup"])
def test_swingup_reward_is_one_upright_at_rest_and_zero_hanging(name):
    env = envs.make(name, 2, seed=0)
    up = {
        "cartpole_swingup": [0.0] * 4,
        "double_cartpole_swingup": [0.0] * 6,
        "acrobot_swingup": [math.pi, 0.0, 0.0, 0.0],
    }[name]
    down = {
        "cartpole_swingup": [0, 0, math.pi, 0],
        "double_cartpole_swingup": [0, math.pi, math.pi, 0, 0, 0],
        "acrobot_swingup": [0.0] * 4,
    }[name]
    _, reward, _ = env.task.dynamics(torch.tensor([up, down]), torch.zeros(2, 1))
    assert reward[0] == pytest.approx(1.0, abs=1e-3) and reward[1] == pytest.approx(0.0, abs=1e-3)
