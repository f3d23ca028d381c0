"""mode=trio: exact ratios, no torn data under concurrency, lifecycle (crash, kill, SIGTERM, resume).

Every full run here spawns two learner processes (a few seconds each on 2 cores, mostly importing
torch), so runs are short and shared between checks where one run can show several things.
"""

import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from pql_scaling import config as config_lib
from pql_scaling import envs
from pql_scaling.core.replay import sample
from pql_scaling.rundir.rundir import RunDir
from pql_scaling.runtime import trio
from pql_scaling.runtime.actor import Gate
from pql_scaling.runtime.train import Session, train
from tests.runs import rows, status

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = [
    "task=pendulum",
    "num_envs=16",
    "algo.batch_size=64",
    "net.actor_hidden=[32,32]",
    "net.critic_hidden=[32,32]",
    "algo.critic_updates_per_step=2",
    "algo.policy_updates_per_critic_update=0.5",
    "log.every_steps=20",
    "threads=1",
]
SYNC_KEYS = {
    "env_steps",
    "actor_steps",
    "critic_updates",
    "policy_updates",
    "utd",
    "flops",
    "wall_time_s",
    "return_mean",
    "return_std",
    "episodes",
    "episode_length",
    "env_steps_per_s",
    "critic_updates_per_s",
    "policy_updates_per_s",
}
TRIO_KEYS = {
    "actor_steps_per_s",
    "actor_wait_s",
    "actor_wait_frac",
    "v_wait_s",
    "v_wait_frac",
    "p_wait_s",
    "p_wait_frac",
}


def checkpoint(path):
    return torch.load(os.path.join(path, "checkpoints", "last.pt"), map_location="cpu", weights_only=False)


def learner_pids(path):
    with open(os.path.join(path, "train.log")) as f:
        return [int(p) for p in re.findall(r"trio: \w+ is pid (\d+)", f.read())]


def assert_gone(pids, within=120.0):
    """The learners are gone (not even zombies). (No /dev/shm check: torch's default file_descriptor sharing
    unlinks its segments at creation, so a leak would never show there.)"""
    deadline = time.monotonic() + within
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if os.path.exists("/proc/%d" % p)]
        time.sleep(0.05)
    assert not alive, "orphaned learner processes: %s" % alive


def expected_counts(actor_steps, num_envs, batch, critic_per_step, policy_per_critic, nstep=3):
    """Sync mode's exact counts: updates are owed from the first step with >= batch rows in replay."""
    first = next(k for k in range(1, actor_steps + 1) if num_envs * max(0, k - nstep + 1) >= batch)
    critic = int(critic_per_step * (actor_steps - first + 1))
    return critic, int(policy_per_critic * critic)


# ---------------------------------------------------------------- primitives under stress


def _snapshot_writer(snap, n, barrier, shapes, device):
    a, b = (torch.zeros(shape, device=device) for shape in shapes)
    barrier.wait()
    for k in range(1, n + 1):
        a.fill_(k)
        b.fill_(k)
        snap.publish([a, b])


def _snapshot_reader(snap, n, out, i, barrier, shapes, device):
    a, b = (torch.zeros(shape, device=device) for shape in shapes)
    seen, loads, bad = 0, 0, 0
    barrier.wait()
    while seen < n:
        v = snap.load([a, b], seen)
        if v != seen:
            loads += 1
            # a whole snapshot: every element of both tensors comes from the same publish, the one announced
            bad += int(not (bool((a == v).all()) and bool((b == v).all())) or v < seen)
            seen = v
    out[i], out[i + 1] = loads, bad


def snapshot_stress(device, n, shapes, min_loads, timeout):
    """One spawned writer publishes n versions of two tensors while two spawned readers load them; the snapshot
    lives in the main process (on CUDA: the producer, outliving its consumers, as in the trio). Checks that no
    reader ever sees a torn, zeroed or older snapshot, that both really ran alongside the writer, and that the
    producer's slots are intact afterwards: after n publishes they hold versions n - 1 and n, each slot whole."""
    ctx = multiprocessing.get_context("spawn")
    snap = trio.Snapshot([torch.zeros(shape, device=device) for shape in shapes], device)
    out = torch.zeros(4, dtype=torch.int64).share_memory_()
    barrier = ctx.Barrier(3)
    procs = [
        ctx.Process(target=_snapshot_reader, args=(snap, n, out, 2 * i, barrier, shapes, device))
        for i in range(2)
    ]
    procs.append(ctx.Process(target=_snapshot_writer, args=(snap, n, barrier, shapes, device)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
        assert p.exitcode == 0
    loads, bad = out[0::2].tolist(), out[1::2].tolist()
    assert bad == [0, 0], "torn snapshots seen: %s" % bad
    assert min(loads) > min_loads, loads  # the readers really ran concurrently with the writer
    slots = snap.slots.cpu()
    assert sorted(slots[:, 0].tolist()) == [n - 1, n], slots[:, 0]
    assert all(bool((row == row[0]).all()) for row in slots)


def test_snapshot_readers_never_see_a_torn_snapshot():
    snapshot_stress("cpu", 20000, [(1000,), (10, 37)], min_loads=100, timeout=120)


class RowIdActor:
    """Writes rows whose every field equals the row's id, through the trio's gate (ActorRole's seam)."""

    def __init__(self, num_envs, obs_dim, act_dim, replay):
        self.n, self.obs_dim, self.act_dim, self.steps = num_envs, obs_dim, act_dim, 0
        self.replay, self.gate = replay, Gate()

    def step(self, policy):
        base = self.replay.rows
        ids = torch.arange(base, base + self.n, dtype=torch.float32)
        col = ids[:, None]
        self.gate.wait(self.replay)
        critic = self.replay.data.get("critic_obs")  # an asymmetric critic's fields: the same ids
        extra = () if critic is None else (col.expand(-1, critic.shape[1]),) * 2
        self.replay.add(
            col.expand(-1, self.obs_dim),
            col.expand(-1, self.act_dim),
            ids,
            col.expand(-1, self.obs_dim),
            ids,
            ids,
            *extra,
        )
        self.gate.commit(self.replay)
        self.steps += 1

    def pop_stats(self):
        return None, None, 0, None

    def state_dict(self):
        return {"steps": self.steps}


class CheckingLoop(trio.LearnerLoop):
    """The real learner loop (gate, sampling window, requests), with an update that checks the batch."""

    def __init__(self, *args):
        super().__init__(*args)
        self.learner.update = self.check

    def check(self, window):
        batch = sample(window.data, self.learner.batch_size, window.size, window.start)  # the learner's draw
        ids = batch.reward
        for field, x in zip(batch._fields, batch):
            if x is None:  # no critic observation
                continue
            if not bool((x.reshape(len(ids), -1) == ids[:, None]).all()):
                raise AssertionError(
                    "torn row in %s: field %s, ids %s, values %s"
                    % (self.role, field, ids.tolist(), x.tolist())
                )
        if not bool((ids < self.sh.ctr.rows).all()):
            raise AssertionError("sampled an uncommitted row")
        self.learner.stats += torch.tensor([float(len(ids)), 0.0, 1.0])
        self.learner.updates += 1


@pytest.mark.parametrize("critic", [0, 1], ids=["policy_obs", "critic_obs"])
def test_replay_rows_are_whole_under_concurrent_wrapping_writes(tmp_path, critic):
    """A ring of 56 rows rewritten ~140 times while both learners sample it with the real gate and window (with
    privileged critic observations: their two fields too)."""
    num_envs, steps = 8, 1000
    cfg = config_lib.load(
        SMALL
        + [
            "mode=trio",
            "num_envs=%d" % num_envs,
            "algo.buffer_size=56",
            "algo.batch_size=32",
            "algo.critic_updates_per_step=4",
            "algo.policy_updates_per_critic_update=1",
            "max_env_steps=%d" % (num_envs * steps),
            "log.every_steps=500",
        ]
    )
    env = envs.make("pendulum", num_envs, seed=0, privileged_critic=critic)
    run = RunDir(str(tmp_path))
    try:
        s = Session(cfg, run, env)
        assert ("critic_obs" in s.replay.data) == bool(critic)
        s.actor = RowIdActor(num_envs, env.obs_dim, env.act_dim, s.replay)
        trio.run(s, loop_cls=CheckingLoop)
    finally:
        run.close()
    assert s.replay.rows == num_envs * steps and s.replay.capacity == 56
    critic, policy = expected_counts(
        steps, num_envs, 32, 4, 1, nstep=1
    )  # rows are written from the first step
    assert (s.v_learner.updates, s.p_learner.updates) == (critic, policy)
    assert_gone(learner_pids(str(tmp_path)))


# ---------------------------------------------------------------- full runs


def test_trio_exact_ratios_same_run_dir_as_sync_and_resume(tmp_path):
    steps = 300
    path = train(
        SMALL
        + [
            "mode=trio",
            "max_env_steps=%d" % (16 * steps),
            "run_dir=%s" % (tmp_path / "trio"),
            "log.checkpoint_every_s=0",
        ],
        quiet=True,
    )
    assert_gone(learner_pids(path))
    assert status(path)["status"] == "completed"
    m = rows(path)
    last = m[-1]
    critic, policy = expected_counts(steps, 16, 64, 2, 0.5)
    assert (last["critic_updates"], last["policy_updates"]) == (critic, policy)
    # the logged (realised) UTD counts the steps before learning starts too, as sync mode does
    assert last["utd"] == last["critic_updates"] / last["env_steps"]
    first = next(k for k in range(1, steps + 1) if 16 * max(0, k - 2) >= 64)
    assert last["critic_updates"] == 2 * (steps - first + 1)  # exact over the steps that owe updates
    for r in m[:-1]:  # along the run: never ahead of what is owed, never more than LAG steps behind
        owed = 2 * max(r["actor_steps"] - first + 1, 0)
        assert owed - 2 * trio.LAG <= r["critic_updates"] <= owed, r
        assert r["critic_updates"] // 2 - trio.LAG <= r["policy_updates"] <= owed // 2, r
    assert TRIO_KEYS | SYNC_KEYS <= set(last) and last["actor_steps_per_s"] is not None
    assert not any(f.startswith(".") for f in os.listdir(os.path.join(path, "checkpoints")))

    sync = train(SMALL + ["mode=sync", "max_env_steps=640", "run_dir=%s" % (tmp_path / "sync")], quiet=True)
    assert sorted(os.listdir(sync)) == sorted(os.listdir(path))
    assert SYNC_KEYS <= set(rows(sync)[-1]) and not TRIO_KEYS & set(rows(sync)[-1])
    ck_trio, ck_sync = checkpoint(path), checkpoint(sync)
    assert set(ck_trio) == set(ck_sync)
    for part in ("v_learner", "p_learner"):
        assert set(ck_trio[part]) == set(ck_sync[part])
    assert ck_trio["v_learner"]["updates"] == critic and ck_trio["p_learner"]["updates"] == policy

    # resume in trio mode: appends to the same metrics and continues every counter
    train(["resume=%s" % path, "max_env_steps=%d" % (16 * (steps + 100))], quiet=True)
    m2 = rows(path)
    assert m2[: len(m)] == m and len(m2) > len(m)
    assert m2[-1]["env_steps"] == 16 * (steps + 100) and m2[-1]["critic_updates"] > critic
    assert m2[len(m)]["wall_time_s"] >= last["wall_time_s"]
    assert status(path)["status"] == "completed"
    # with the replay not saved it refills first; then 2 updates per step again, up to what is owed
    resumed = checkpoint(path)
    assert critic < resumed["v_learner"]["updates"] <= critic + 2 * 100
    assert resumed["p_learner"]["updates"] == policy + (resumed["v_learner"]["updates"] - critic) // 2

    # across modes: a sync run continues in trio mode from the same checkpoint layout
    before = checkpoint(sync)
    train(["resume=%s" % sync, "mode=trio", "max_env_steps=%d" % (640 + 16 * 40)], quiet=True)
    after = checkpoint(sync)
    assert after["actor"]["steps"] == before["actor"]["steps"] + 40
    assert (
        before["v_learner"]["updates"]
        < after["v_learner"]["updates"]
        <= before["v_learner"]["updates"] + 2 * 40
    )
    assert status(sync)["status"] == "completed" and rows(sync)[-1]["env_steps"] == 640 + 16 * 40


@pytest.mark.parametrize("role", ["v_learner", "p_learner", "actor"])
def test_a_crash_in_any_role_fails_the_run_with_its_traceback(tmp_path, monkeypatch, role):
    monkeypatch.setenv("PQL_TRIO_FAULT", "%s:%d" % (role, 150))
    run_dir = str(tmp_path / role)
    with pytest.raises(
        Exception, match="injected fault in %s" % role
    ):  # max_time_s: a missed fault ends loudly
        train(
            SMALL
            + [
                "mode=trio",
                "max_env_steps=100000",
                "max_time_s=600",
                "run_dir=%s" % run_dir,
                "log.checkpoint_every_s=0",
            ],
            quiet=True,
        )
    st = status(run_dir)
    assert st["status"] == "failed" and role in st["reason"] and "injected fault" in st["reason"], st
    with open(os.path.join(run_dir, "train.log")) as f:
        text = f.read()
    assert "Traceback" in text and "RuntimeError: injected fault in %s" % role in text
    assert_gone(learner_pids(run_dir))
    ck = checkpoint(run_dir)  # the last checkpoint is whole
    assert ck["actor"]["steps"] > 0


def _start_cli(run_dir, *extra):
    cmd = (
        [
            sys.executable,
            "-m",
            "pql_scaling.cli",
            "train",
            "mode=trio",
            "max_env_steps=10000000",
            "run_dir=%s" % run_dir,
            "log.checkpoint_every_s=0",
        ]
        + SMALL
        + list(extra)
    )
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_rows(proc, run_dir, n, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(os.path.join(run_dir, "metrics.jsonl")) and len(rows(run_dir)) >= n:
            return
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("no metrics after %ds" % timeout)


def test_sigkill_of_a_learner_stops_the_run_within_seconds(tmp_path):
    run_dir = str(tmp_path / "killed")
    proc = _start_cli(run_dir)
    _wait_for_rows(proc, run_dir, 2)
    pids = learner_pids(run_dir)
    os.kill(pids[0], signal.SIGKILL)  # the V-learner
    proc.wait(120)  # the deadline (TimeoutExpired); how fast it stops is for benchmarks, not a unit test
    assert proc.returncode != 0
    st = status(run_dir)
    assert st["status"] == "failed" and "v_learner" in st["reason"] and "-9" in st["reason"], st
    assert_gone(pids + [proc.pid])
    checkpoint(run_dir)


def test_sigterm_stops_gracefully_with_a_final_checkpoint(tmp_path):
    run_dir = str(tmp_path / "term")
    proc = _start_cli(run_dir, "log.checkpoint_every_s=1000")
    _wait_for_rows(proc, run_dir, 2)
    pids = learner_pids(run_dir)
    proc.send_signal(signal.SIGTERM)
    proc.wait(120)
    assert proc.returncode == 0, proc.stderr.read().decode()
    st = status(run_dir)
    assert st["status"] == "stopped" and "resume=" in st["reason"], st
    assert_gone(pids + [proc.pid])
    ck = checkpoint(run_dir)  # written at the stop, with the learners' own state
    assert ck["v_learner"]["updates"] >= rows(run_dir)[-1]["critic_updates"] > 0
    assert ck["actor"]["steps"] * 16 == st["env_steps"]


def test_resume_pays_the_checkpoints_whole_owed_updates_exactly_as_sync_mode(tmp_path):
    """A checkpoint owing whole updates (as a trio checkpoint taken while the learners trail the actor, or
    after a max_time_s stop, does): resumed in trio mode, the learners pay that debt from the first step on,
    and the final counts equal sync mode's resumed from the very same checkpoint (nothing dropped)."""
    import shutil

    from pql_scaling.rundir import disk

    a = str(tmp_path / "sync")
    train(SMALL + ["mode=sync", "max_env_steps=%d" % (16 * 60), "run_dir=" + a], quiet=True)
    last = os.path.join(a, "checkpoints", "last.pt")
    ck = disk.read_checkpoint(last)
    u0, p0 = ck["v_learner"]["updates"], ck["p_learner"]["updates"]
    ck["fractions"]["critic_owed"], ck["fractions"]["policy_owed"] = [9, 2], [5, 2]  # 4.5 and 2.5 owed
    with open(last, "wb") as f:
        f.write(disk.pack(ck))
    b = str(tmp_path / "trio")
    shutil.copytree(a, b)
    counts = {}
    for mode, d in (("sync", a), ("trio", b)):
        train(["resume=" + d, "mode=" + mode, "max_env_steps=%d" % (16 * 100), "log.live=off"], quiet=True)
        last_row = rows(d)[-1]
        assert status(d)["status"] == "completed" and last_row["env_steps"] == 16 * 100
        counts[mode] = (last_row["critic_updates"], last_row["policy_updates"])
    # 40 steps, all learning (the replay was restored): floor(4.5 + 2 * 40) critic, floor(2.5 + 0.5 * 84) policy
    assert counts["sync"] == (u0 + 84, p0 + 44)
    assert counts["trio"] == counts["sync"]
