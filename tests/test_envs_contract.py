import pytest
import torch

from pql_scaling import envs
from tests.contract_check import check_contract


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
    # privileged critic observations (envs/contract.py): the policy's, the true state and the time-limit fraction
    ("native", "pendulum", {"privileged_critic": 1}, None),
    ("native", "double_cartpole_swingup", {"privileged_critic": 1}, None),
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
    """tests/contract_check.py's checks (shapes, dtypes, device, final_obs, the time limit, clamping, resume)
    on every installed backend."""
    check_contract(_make(backend, task, kw, need))


@pytest.mark.parametrize("task,states", [("Ant", 0), ("ShadowHand", 0), ("ShadowHand", 3)])
def test_isaacgym_stand_in_honours_the_contract(task, states):
    """The same checks on backend=isaacgym, through the stand-ins of tests/fakes in a fresh interpreter (Isaac
    Gym is imported before torch): its deferred resets are the contract's documented variant (valid=False on
    the step that spans two episodes)."""
    from tests.test_isaacgym_adapter import run

    run(
        prelude=True,
        code="""
    from tests.contract_check import check_contract
    env = envs.make(%r, 8, seed=0, backend="isaacgym",
                    cfg={"task": {"env": {"episodeLength": 12, "numStates": %d}}})
    assert env.critic_obs_dim == %d  # IsaacGymEnvs' states are the critic's privileged observation
    check_contract(env, wild=True)
    """
        % (task, states, states),
    )
