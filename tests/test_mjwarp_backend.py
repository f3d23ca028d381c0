"""backend=mjwarp without a GPU: a clear error for CUDA, and MJWarp on Warp's CPU device against backend=mujoco.

Measured agreement (float32 physics against float64): HalfCheetah (Euler), Hopper and Walker2d before
landing, and Humanoid (every derived field: cinert, cvel, qfrc_actuator, cfrc_ext; MJWarp solves with
Newton where the XML asks for PGS) to ~1e-5 over 10 env steps. Ant is left out: from the same state, MuJoCo
Warp 4.0 and MuJoCo C 4.0 differ in Ant's qvel by ~0.7 after 15 RK4 physics steps (by ~0.01 with the Euler
integrator), a simulator difference the adapter cannot remove.
"""

import pytest
import torch

from pql_scaling import envs

pytest.importorskip("mujoco")


def test_mjwarp_cuda_request_without_gpu_is_explained():
    try:
        import mujoco_warp  # noqa: F401
        import warp  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install"):
            envs.make("HalfCheetah", 4, backend="mjwarp", device="cuda")
        return
    import warp as wp

    if wp.is_cuda_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="backend=mujoco"):
        envs.make("HalfCheetah", 4, backend="mjwarp", device="cuda")


@pytest.mark.parametrize(
    "task,steps,rtol", [("HalfCheetah", 6, 2e-3), ("Hopper", 10, 1e-4), ("Humanoid", 4, 1e-4)]
)
def test_mjwarp_on_cpu_matches_mujoco_backend(task, steps, rtol):
    pytest.importorskip("mujoco_warp")
    ref = envs.make(task, 3, seed=0, backend="mujoco")
    env = envs.make(task, 3, seed=0, backend="mjwarp", device="cpu")
    ref.reset()
    qpos, qvel = ref.get_state()
    torch.testing.assert_close(env.set_state(qpos, qvel), ref.set_state(qpos, qvel), rtol=1e-6, atol=1e-6)
    q2, v2 = env.get_state()
    torch.testing.assert_close(q2, qpos, rtol=0, atol=1e-6)
    gen = torch.Generator().manual_seed(0)
    for t in range(steps):
        action = torch.rand((3, env.act_dim), generator=gen) * 2 - 1
        _, r_ref, te_ref, _, info_ref = ref.step(action)
        _, r, te, _, info = env.step(action)
        torch.testing.assert_close(
            info["final_obs"], info_ref["final_obs"], rtol=rtol, atol=rtol, msg="t=%d" % t
        )
        torch.testing.assert_close(r, r_ref, rtol=rtol, atol=rtol)
        assert torch.equal(te, te_ref)


def test_mjwarp_autoreset_on_cpu():
    pytest.importorskip("mujoco_warp")
    env = envs.make("Hopper", 2, seed=0, backend="mjwarp", device="cpu", max_episode_steps=3)
    obs0 = env.reset()
    for t in range(3):
        obs, reward, terminated, truncated, info = env.step(torch.zeros(2, env.act_dim))
    assert truncated.all() and not terminated.any() and (env.t == 0).all()
    assert not torch.allclose(info["final_obs"], obs)
    assert torch.allclose(obs[:, 0], obs0[:, 0], atol=1e-2)  # back near the initial height (noise 5e-3)
