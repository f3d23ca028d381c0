"""What no CPU test can show: CUDA IPC in the trio, MJWarp on CUDA, compiled / CUDA-graphed updates on a GPU,
placement over one, two and three GPUs. Every test is marked `gpu` (skipped without CUDA; see conftest.py);
benchmarks/gpu_check.sh runs them on the first machine with a GPU.
"""
import multiprocessing

import pytest
import torch

import envs
from pql_scaling import trio
from pql_scaling import config as config_lib
from pql_scaling.runlog import RunDir
from pql_scaling.train import Session, train
from tests import test_compile
from tests.runs import rows, status
from tests.test_trio import SMALL, CheckingLoop, RowIdActor, assert_gone, expected_counts, learner_pids

pytestmark = pytest.mark.gpu


def gpus(n):
    return pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < n,
                              reason="needs %d CUDA GPUs" % n)


def _writer(snap, n, barrier):
    a, b = torch.zeros(1 << 20, device="cuda"), torch.zeros(10, 37, device="cuda")
    barrier.wait()
    for k in range(1, n + 1):
        a.fill_(k)
        b.fill_(k)
        snap.publish([a, b])


def _reader(snap, n, out, i, barrier):
    a, b = torch.zeros(1 << 20, device="cuda"), torch.zeros(10, 37, device="cuda")
    seen, loads, bad = 0, 0, 0
    barrier.wait()
    while seen < n:
        v = snap.load([a, b], seen)
        if v != seen:
            loads += 1  # whole: every element from the publish announced, never zeros, never older
            bad += int(not (bool((a == v).all()) and bool((b == v).all())) or v < seen)
            seen = v
    out[i], out[i + 1] = loads, bad


def test_cuda_ipc_snapshots_are_never_torn_or_zeroed():
    """A 4 MiB snapshot in CUDA memory of the main process (the producer, outliving both its consumers),
    written by one spawned process and read by two others over CUDA IPC."""
    ctx = multiprocessing.get_context("spawn")
    snap = trio.Snapshot([torch.zeros(1 << 20, device="cuda"), torch.zeros(10, 37, device="cuda")], "cuda")
    out = torch.zeros(4, dtype=torch.int64).share_memory_()
    n, barrier = 2000, ctx.Barrier(3)
    procs = [ctx.Process(target=_reader, args=(snap, n, out, 2 * i, barrier)) for i in range(2)]
    procs.append(ctx.Process(target=_writer, args=(snap, n, barrier)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
        assert p.exitcode == 0
    loads, bad = out[0::2].tolist(), out[1::2].tolist()
    assert bad == [0, 0], "torn or zeroed snapshots seen: %s" % bad
    assert min(loads) > 10, loads
    assert bool((snap.slots == n).any(1).all())  # the producer's memory is intact after its consumers left


class CudaCheckingLoop(CheckingLoop):
    def check(self, batch):
        ids = batch.reward
        for field, x in zip(batch._fields, batch):
            if not bool((x.reshape(len(ids), -1) == ids[:, None]).all()):
                raise AssertionError("torn row in %s: field %s" % (self.role, field))
        if not bool((ids < int(self.sh.ctr[trio.ROWS])).all()):
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
    cfg = config_lib.load(SMALL + devs + ["mode=trio", "num_envs=%d" % num_envs, "algo.buffer_size=56",
                                          "algo.batch_size=32", "algo.critic_updates_per_step=4",
                                          "algo.policy_updates_per_critic_update=1",
                                          "max_env_steps=%d" % (num_envs * steps), "log.every_steps=200"])
    env = envs.make("pendulum", num_envs, seed=0, device="cuda:0")
    run = RunDir(str(tmp_path))
    try:
        s = Session(cfg, run, env)
        s.actor = RowIdActor(num_envs, env.obs_dim, env.act_dim)
        trio.run(s, loop_cls=CudaCheckingLoop)
    finally:
        run.close()
    critic, policy = expected_counts(steps, num_envs, 32, 4, 1, nstep=1)
    assert (s.v_learner.updates, s.p_learner.updates) == (critic, policy)
    assert_gone(learner_pids(str(tmp_path)))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_trio_placement_over_gpus(tmp_path, n):
    """Actor, V-learner and P-learner on 1, 2 or 3 GPUs, compiled and CUDA-graphed updates: exact counts, clean exit."""
    if not torch.cuda.is_available() or torch.cuda.device_count() < n:
        pytest.skip("needs %d GPUs" % n)
    place = {1: ["device=cuda:0"],
             2: ["device=cuda:0", "v_learner_device=cuda:1"],
             3: ["device=cuda:0", "v_learner_device=cuda:1", "p_learner_device=cuda:2"]}[n]
    steps = 200
    path = train(SMALL + place + ["mode=trio", "max_env_steps=%d" % (16 * steps), "perf.compile=reduce-overhead",
                                  "perf.publish_every=2", "run_dir=%s" % (tmp_path / "run")], quiet=True)
    assert status(path)["status"] == "completed"
    last = rows(path)[-1]
    assert (last["critic_updates"], last["policy_updates"]) == expected_counts(steps, 16, 64, 2, 0.5)
    assert 0 <= last["v_snapshot_lag"] <= 1 and last["return_mean"] is not None
    assert_gone(learner_pids(path))


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
    torch._dynamo.reset()


def test_bf16_and_tf32_updates_stay_close_on_cuda():
    _, v0, _, replay = test_compile.make("pql", device="cuda")
    _, v1, _, _ = test_compile.make("pql", "perf.amp=bf16", "perf.tf32=true", "perf.compile=default", device="cuda")
    for step in range(2):
        torch.manual_seed(step)
        v0.learn(replay)
        torch.manual_seed(step)
        v1.learn(replay)
    assert all(p.dtype == torch.float32 for p in v1.critic.parameters())
    for a, b in zip(v0.critic.parameters(), v1.critic.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-2)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch._dynamo.reset()


@pytest.mark.parametrize("task,steps,rtol", [("HalfCheetah", 6, 2e-3), ("Hopper", 10, 1e-4), ("Ant", 6, 2e-3)])
def test_mjwarp_on_cuda_matches_mujoco_backend(task, steps, rtol):
    pytest.importorskip("mujoco_warp")
    ref = envs.make(task, 3, seed=0, backend="mujoco")
    env = envs.make(task, 3, seed=0, backend="mjwarp", device="cuda")
    ref.reset()
    qpos, qvel = ref.get_state()
    torch.testing.assert_close(env.set_state(qpos.cuda(), qvel.cuda()).cpu(), ref.set_state(qpos, qvel), rtol=1e-5, atol=1e-5)
    gen = torch.Generator().manual_seed(0)
    for t in range(steps):
        action = torch.rand((3, env.act_dim), generator=gen) * 2 - 1
        _, r_ref, te_ref, _, info_ref = ref.step(action)
        _, r, te, _, info = env.step(action.cuda())
        torch.testing.assert_close(info["final_obs"].cpu(), info_ref["final_obs"], rtol=rtol, atol=rtol, msg="t=%d" % t)
        torch.testing.assert_close(r.cpu(), r_ref, rtol=rtol, atol=rtol)
        assert torch.equal(te.cpu(), te_ref)
