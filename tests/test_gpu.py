"""What no CPU test can show: CUDA IPC in the trio, MJWarp on CUDA, compiled / CUDA-graphed updates on a GPU,
placement over one, two and three GPUs. Every test is marked `gpu` (skipped without CUDA; see conftest.py);
benchmarks/gpu_check.sh runs them on the first machine with a GPU.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import torch

from pql_scaling import config as config_lib
from pql_scaling import envs
from pql_scaling.rundir.rundir import RunDir
from pql_scaling.runtime import trio
from pql_scaling.runtime.learner import set_tf32
from pql_scaling.runtime.syncaudit import HostSyncs
from pql_scaling.runtime.train import Session, train
from tests import test_compile
from tests.runs import rows, status
from tests.test_trio import (
    SMALL,
    CheckingLoop,
    RowIdActor,
    assert_gone,
    expected_counts,
    learner_pids,
    snapshot_stress,
)

pytestmark = pytest.mark.gpu


compiled = (
    pytest.mark.compiled
)  # compiles through inductor: benchmarks/gpu_check.sh runs these after the eager ones


@pytest.fixture(autouse=True)
def fresh_state():
    """Each test starts with no compiled code and TF32 off, whatever the test before it did or how it failed (dynamo's
    per-code-object cache would otherwise pass the recompile limit and run later "compiled" tests eagerly)."""
    try:
        yield
    finally:
        torch._dynamo.reset()
        set_tf32(False)


def test_cuda_ipc_snapshots_are_never_torn_or_zeroed():
    """A 4 MiB snapshot in CUDA memory of the main process (the producer, outliving both its consumers), written by
    one spawned process and read by two others over CUDA IPC: the CPU test's harness on CUDA."""
    snapshot_stress("cuda", 2000, [(1 << 20,), (10, 37)], min_loads=10, timeout=180)


def test_snapshots_never_synchronize_the_device(monkeypatch):
    """publish waits on an event for its own copy, offer not at all, load on a side stream for its copy alone:
    no torch.cuda.synchronize, so a learner's load does not wait for the update it has in flight."""
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: calls.append(a))
    a = torch.zeros(1 << 16, device="cuda")
    snap, out = trio.Snapshot([a], "cuda"), torch.zeros(1 << 16, device="cuda")
    for k in range(1, 6):
        a.fill_(k)
        snap.publish([a])
        assert snap.load([out]) == k
        assert bool((out == k).all())
    for k in range(6, 60):  # offers: each announced on a later call, once its copy is done
        a.fill_(k)
        snap.offer([a])
    v = snap.load([out])
    assert 6 <= v <= 59 and bool((out == v).all())
    assert calls == []


class CudaCheckingLoop(CheckingLoop):
    def check(self, batch):
        ids = batch.reward
        for field, x in zip(batch._fields, batch):
            if not bool((x.reshape(len(ids), -1) == ids[:, None]).all()):
                raise AssertionError("torn row in %s: field %s" % (self.role, field))
        if not bool((ids < self.sh.ctr.rows).all()):
            raise AssertionError("sampled an uncommitted row")
        self.learner.stats += torch.tensor([float(len(ids)), 0.0, 1.0], device=self.learner.stats.device)
        self.learner.updates += 1


@pytest.mark.parametrize("placement", [1, 2])
def test_cuda_replay_rows_are_whole_under_concurrent_wrapping_writes(tmp_path, placement):
    """The CPU test of the same name with the replay in CUDA memory shared over IPC (and, with two GPUs,
    the P-learner gathering across devices)."""
    if torch.cuda.device_count() < placement:
        pytest.skip("needs %d GPUs" % placement)
    num_envs, steps = 8, 600
    devs = ["device=cuda:0"] + (["v_learner_device=cuda:1"] if placement == 2 else [])
    cfg = config_lib.load(
        SMALL
        + devs
        + [
            "mode=trio",
            "num_envs=%d" % num_envs,
            "algo.buffer_size=56",
            "algo.batch_size=32",
            "algo.critic_updates_per_step=4",
            "algo.policy_updates_per_critic_update=1",
            "max_env_steps=%d" % (num_envs * steps),
            "log.every_steps=200",
        ]
    )
    env = envs.make("pendulum", num_envs, seed=0, device="cuda:0")
    run = RunDir(str(tmp_path))
    try:
        s = Session(cfg, run, env)
        s.actor = RowIdActor(num_envs, env.obs_dim, env.act_dim, s.replay)
        trio.run(s, loop_cls=CudaCheckingLoop)
    finally:
        run.close()
    critic, policy = expected_counts(steps, num_envs, 32, 4, 1, nstep=1)
    assert (s.v_learner.updates, s.p_learner.updates) == (critic, policy)
    assert_gone(learner_pids(str(tmp_path)))


@pytest.mark.parametrize("mode", ["trio", "sync"])
def test_device_cuda_trains_as_users_write_it(tmp_path, mode):
    """`device=cuda`, no index, as README, the GPU task defaults, every sweep launcher and both GPU studies pass it:
    every trio run died at learner start (torch.cuda.set_device needs an index). Eager updates."""
    steps = 200
    path = train(
        SMALL
        + [
            "device=cuda",
            "mode=%s" % mode,
            "max_env_steps=%d" % (16 * steps),
            "run_dir=%s" % (tmp_path / "run"),
        ],
        quiet=True,
    )
    assert status(path)["status"] == "completed"
    last = rows(path)[-1]
    assert (last["critic_updates"], last["policy_updates"]) == expected_counts(steps, 16, 64, 2, 0.5)
    with open(os.path.join(path, "config.yaml")) as f:
        assert "device: cuda:%d" % torch.cuda.current_device() in f.read()
    if mode == "trio":
        assert_gone(learner_pids(path))


@pytest.mark.parametrize("mode", ["trio", "sync"])
def test_gpu_run_killed_then_resumed(tmp_path, mode):
    """Train on the GPU in a subprocess, SIGKILL it after a checkpoint, resume: every GPU resume raised TypeError
    (RNG states mapped to CUDA). The resumed run completes and continues the counters."""
    path = str(tmp_path / "run")
    cmd = (
        [sys.executable, "-m", "pql_scaling.cli", "train"]
        + SMALL
        + [
            "device=cuda",
            "mode=%s" % mode,
            "max_env_steps=400000",
            "log.checkpoint_every_s=0",
            "save_replay=true",
            "run_dir=%s" % path,
        ]
    )
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 150
    try:
        while time.monotonic() < deadline and p.poll() is None:
            if os.path.exists(os.path.join(path, "metrics.jsonl")) and len(rows(path)) >= 3:
                break
            time.sleep(0.5)
        assert p.poll() is None and len(rows(path)) >= 3, "the run did not get going"
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    done = rows(path)[-1]["env_steps"]
    train(["resume=%s" % path, "max_env_steps=%d" % (done + 16 * 100)], quiet=True)
    assert status(path)["status"] == "completed"
    assert rows(path)[-1]["env_steps"] == done + 16 * 100


def test_no_host_sync_in_an_actor_step_or_an_update_on_cuda():
    """What tests/test_device_paths.py checks with the dispatcher, here with CUDA's own sync debug mode as well."""
    from tests.test_device_paths import session

    s = session(tempfile.mkdtemp(), "device=cuda")
    for _ in range(8):
        s.actor.step(s.p_learner.actor)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with HostSyncs(stacks=True) as syncs:
            for _ in range(4):
                s.actor.step(s.p_learner.actor)
                s.v_learner.learn(s.replay)
                s.p_learner.learn(s.replay)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert syncs.count == 0, syncs.where
    s.run.close()


@compiled
@pytest.mark.parametrize("n", [1, 2, 3])
def test_trio_placement_over_gpus(tmp_path, n):
    """Actor, V-learner and P-learner on 1, 2 or 3 GPUs, compiled and CUDA-graphed updates: exact counts, clean exit."""
    if not torch.cuda.is_available() or torch.cuda.device_count() < n:
        pytest.skip("needs %d GPUs" % n)
    place = {
        1: ["device=cuda:0"],
        2: ["device=cuda:0", "v_learner_device=cuda:1"],
        3: ["device=cuda:0", "v_learner_device=cuda:1", "p_learner_device=cuda:2"],
    }[n]
    steps = 200
    path = train(
        SMALL
        + place
        + [
            "mode=trio",
            "max_env_steps=%d" % (16 * steps),
            "perf.compile=reduce-overhead",
            "perf.publish_every=2",
            "run_dir=%s" % (tmp_path / "run"),
        ],
        quiet=True,
    )
    assert status(path)["status"] == "completed"
    last = rows(path)[-1]
    assert (last["critic_updates"], last["policy_updates"]) == expected_counts(steps, 16, 64, 2, 0.5)
    assert 0 <= last["v_snapshot_lag"] <= 1 and last["return_mean"] is not None
    assert_gone(learner_pids(path))


@compiled
@pytest.mark.parametrize("kind", list(test_compile.KINDS))
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_and_graphed_updates_match_eager_on_cuda(kind, mode):
    """Inductor's CUDA kernels (and their CUDA graph) against eager from the same state and random stream."""
    import torch._inductor.config as inductor_config

    _, v0, p0, replay = test_compile.make(kind, device="cuda")
    _, v1, p1, _ = test_compile.make(kind, "perf.compile=%s" % mode, device="cuda")
    with inductor_config.patch(fallback_random=True):
        for step in range(4):  # cudagraph trees record on the 2nd-3rd call: check past it
            for a, b in ((v0, v1), (p0, p1)):
                torch.manual_seed(20 + step)
                a.learn(replay)
                torch.manual_seed(20 + step)
                b.learn(replay)
    for a, b in zip(test_compile.state(v0, p0), test_compile.state(v1, p1)):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
    if mode == "reduce-overhead":  # really graphed: cudagraph trees skipped nothing
        from torch._dynamo.utils import counters

        assert not counters["inductor"]["cudagraph_skips"], dict(counters["inductor"])


@compiled
def test_compiled_bf16_update_on_cuda_takes_the_fp32_step():
    """perf.compile=default + perf.amp=bf16 + TF32 against a true fp32 reference (TF32 off while it runs): one
    update's step, bounded as the CPU bf16 test bounds it (Adam's first step is ~lr * sign(grad), so a flipped sign
    moves a weight by 2 lr; the old atol of 1e-2 was more than two steps can move, so it could not fail)."""
    _, v1, _, _ = test_compile.make(
        "pql", "perf.amp=bf16", "perf.tf32=true", "perf.compile=default", device="cuda"
    )
    set_tf32(False)  # v1's learner turned it on for the process: the reference must not run in TF32
    cfg, v0, _, replay = test_compile.make("pql", device="cuda")
    test_compile.assert_bf16_step_close(v0, v1, replay, cfg.algo.critic_lr, before_v1=lambda: set_tf32(True))


@pytest.mark.parametrize(
    "task,steps,rtol", [("HalfCheetah", 6, 2e-3), ("Hopper", 10, 1e-4), ("Ant", 6, 2e-3)]
)
def test_mjwarp_on_cuda_matches_mujoco_backend(task, steps, rtol):
    pytest.importorskip("mujoco_warp")
    ref = envs.make(task, 3, seed=0, backend="mujoco")
    env = envs.make(task, 3, seed=0, backend="mjwarp", device="cuda")
    ref.reset()
    qpos, qvel = ref.get_state()
    torch.testing.assert_close(
        env.set_state(qpos.cuda(), qvel.cuda()).cpu(), ref.set_state(qpos, qvel), rtol=1e-5, atol=1e-5
    )
    gen = torch.Generator().manual_seed(0)
    for t in range(steps):
        action = torch.rand((3, env.act_dim), generator=gen) * 2 - 1
        _, r_ref, te_ref, _, info_ref = ref.step(action)
        _, r, te, _, info = env.step(action.cuda())
        torch.testing.assert_close(
            info["final_obs"].cpu(), info_ref["final_obs"], rtol=rtol, atol=rtol, msg="t=%d" % t
        )
        torch.testing.assert_close(r.cpu(), r_ref, rtol=rtol, atol=rtol)
        assert torch.equal(te.cpu(), te_ref)
