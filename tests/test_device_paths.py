"""The GPU path's logic, checked on the CPU: device names normalised once, checkpoints loaded to the CPU, no host
sync in an actor step or an update, GPU replay checkpoints written off the actor's thread. What needs CUDA itself
is in tests/test_gpu.py (run by benchmarks/gpu_check.sh)."""

import os
import threading

import pytest
import torch

from pql_scaling import config as config_lib
from pql_scaling import envs
from pql_scaling.core.replay import Replay
from pql_scaling.rundir import disk as runlog
from pql_scaling.rundir.replay_store import ReplayStore
from pql_scaling.rundir.rundir import RunDir
from pql_scaling.runtime import trio
from pql_scaling.runtime.syncaudit import HostSyncs
from pql_scaling.runtime.train import Session, train
from tests.runs import rows, status
from tests.test_trio import SMALL


def fake_cuda(monkeypatch, current=1, count=2):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_cuda_without_an_index_is_normalised_once_where_the_config_is_resolved(monkeypatch):
    """torch.cuda.set_device(torch.device("cuda")) raises (every trio learner called it); `cuda` and `cuda:0`
    in one device list doubled the events and synchronisations."""
    fake_cuda(monkeypatch, current=1)
    cfg = config_lib.load(["task=pendulum", "device=cuda", "actor_device=cuda", "v_learner_device=cuda:0"])
    assert (cfg.device, cfg.actor_device, cfg.v_learner_device, cfg.p_learner_device) == (
        "cuda:1",
        "cuda:1",
        "cuda:0",
        None,
    )
    assert config_lib.normalise_device("cpu") == "cpu" and config_lib.normalise_device(None) is None
    assert config_lib.normalise_device("cuda:3") == "cuda:3"
    # the GPU defaults are still the ones picked (tasks/gpu/), from the normalised name too
    assert config_lib.defaults_for([], cfg).endswith(os.path.join("gpu", "pendulum.yaml"))


def test_without_a_gpu_cuda_is_left_for_check_devices_to_explain(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert config_lib.normalise_device("cuda") == "cuda"


def test_resume_loads_the_checkpoint_to_the_cpu(tmp_path, monkeypatch):
    """map_location=cfg.device moved the RNG ByteTensors to CUDA and set_rng_state raised TypeError on every GPU
    resume: the checkpoint is read to the CPU and each role moves what it owns."""
    path = train(SMALL + ["mode=sync", "max_env_steps=320", "run_dir=%s" % (tmp_path / "r")], quiet=True)
    seen = []
    real = RunDir.load_checkpoint

    def spy(self, map_location):
        seen.append(str(map_location))
        return real(self, map_location)

    monkeypatch.setattr(RunDir, "load_checkpoint", spy)
    train(["resume=%s" % path, "max_env_steps=480"], quiet=True)
    assert seen == ["cpu"] and status(path)["status"] == "completed"


def session(tmp_path, *extra):
    cfg = config_lib.load(SMALL + ["mode=sync", "max_env_steps=100000"] + list(extra))
    env = envs.make("pendulum", cfg.num_envs, seed=0)
    return Session(cfg, RunDir(str(tmp_path)), env)


@pytest.mark.parametrize("algo", ["pql", "sac"])
def test_an_actor_step_and_an_update_make_no_host_sync(tmp_path, algo):
    """NStepFolder.push indexed its ring with a 0-dim device tensor: three .item() calls, three host syncs per actor
    step on a GPU. The dispatcher sees them on the CPU as _local_scalar_dense."""
    s = session(tmp_path, "algo=%s" % algo, "algo.warmup_steps=2")
    for _ in range(8):  # past warm-up and the n-step window, with learning possible
        s.actor.step(s.p_learner.actor)
    with HostSyncs(stacks=True) as syncs:
        for _ in range(4):
            s.actor.step(s.p_learner.actor)
    assert syncs.count == 0, syncs.where
    with HostSyncs(stacks=True) as syncs:
        for _ in range(3):
            s.v_learner.learn(s.replay)
            s.p_learner.learn(s.replay)
    assert syncs.count == 0, syncs.where
    with HostSyncs() as syncs:  # the audit itself sees a sync where there is one
        s.v_learner.pop_stats()
        int(s.actor.stats[2])
    assert syncs.count >= 1
    s.run.close()


def test_snapshot_offer_announces_only_finished_copies():
    """The actor's normaliser publish no longer waits for its copy on a GPU (offer); on the CPU it is publish()."""
    a = torch.zeros(5)
    snap = trio.Snapshot([a], "cpu")
    out = torch.zeros(5)
    for k in range(1, 4):
        a.fill_(k)
        snap.offer([a])
        assert snap.load([out]) == k and bool((out == k).all())
    assert snap.pending is None
    state = snap.__getstate__()
    assert state["pending"] is None and state["reader"] is None  # nothing process-local travels to a learner


def test_replay_segments_are_taken_now_and_written_later(tmp_path):
    """take() copies the new rows out of the ring at once (the actor may overwrite them right after), write()
    puts exactly those rows on disk, whatever the ring holds by then; a wrapped range is taken in two pieces."""
    r = Replay(40, 3, 1, 8, "cpu")
    store = ReplayStore(str(tmp_path), r.capacity)

    def add(k):
        for _ in range(k):
            ids = torch.arange(r.rows, r.rows + 8, dtype=torch.float32)
            r.add(ids[:, None].expand(-1, 3), ids[:, None], ids, ids[:, None].expand(-1, 3), ids, ids)

    add(3)
    seg = store.take(r)
    add(4)  # overwrites ring slots the segment came from
    store.write(seg)
    add(2)  # 72 rows written; the next segment is the last 40 (rows 32..71: ring slots 32..39, then 0..31)
    seg2 = store.take(r)
    assert seg2[:2] == (32, 72) and seg2[2]["reward"].tolist() == list(range(32, 72))
    store.write(seg2)
    data = runlog.read_checkpoint(os.path.join(store.dir, "seg-%015d-%015d.pt" % (0, 24)), stamped=False)[
        "data"
    ]
    assert data["reward"].tolist() == list(range(24)) and data["obs"].shape == (24, 3)


def test_a_background_checkpoint_holds_the_state_at_its_time(tmp_path):
    """A GPU replay's periodic checkpoint is written on a thread: what it holds is the state when it was taken, even
    though training goes on while it is written, and the time the actor was blocked is logged."""
    s = session(tmp_path, "save_replay=true")
    for _ in range(12):
        s.actor.step(s.p_learner.actor)
    s.v_learner.learn(s.replay)
    gate = threading.Event()
    real = s.run.save_checkpoint

    def slow(state, position=None):
        gate.wait(30)
        real(state, position)

    s.run.save_checkpoint = slow
    expected = [p.detach().clone() for p in s.v_learner.critic.parameters()]
    steps = s.actor.steps
    s.checkpoint(background=True)
    for _ in range(3):  # training goes on while the writer waits
        s.actor.step(s.p_learner.actor)
        s.v_learner.learn(s.replay)
    gate.set()
    s.writer.wait()
    ck = runlog.read_checkpoint(s.run.checkpoint_path)
    assert ck["actor"]["steps"] == steps
    for p, e in zip(ck["v_learner"]["critic"].values(), expected):
        assert torch.equal(p, e)
    assert s.counters["checkpoint_time_s"] > 0
    s.run.close()


def test_a_failed_background_write_surfaces_at_the_next_checkpoint(tmp_path):
    s = session(tmp_path)

    def full(state, position=None):
        raise runlog.DiskFull("no space left (test)")

    s.run.save_checkpoint = full
    s.checkpoint(background=True)
    with pytest.raises(runlog.DiskFull, match="no space left"):
        s.checkpoint()
    s.run.close()


def test_checkpoint_time_is_in_the_metrics(tmp_path):
    path = train(
        SMALL
        + ["mode=sync", "max_env_steps=640", "log.checkpoint_every_s=0", "run_dir=%s" % (tmp_path / "r")],
        quiet=True,
    )
    m = rows(path)
    assert all(r["checkpoint_time_s"] > 0 for r in m)
    assert [r["checkpoint_time_s"] for r in m] == sorted(r["checkpoint_time_s"] for r in m)  # cumulative
