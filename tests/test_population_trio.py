"""Populations in mode=trio (issue 21): the V-learner updates K critics as one batch, the P-learner K actors,
at the trio's exact ratios, each member its own run directory.

The trio is not bit-deterministic, so independence is checked through structure: a member whose actor learns
at a rate ~0 keeps its initial actor while the others' move, and a member whose critic diverges fails alone
while the NaN reaches no other member's weights."""

import os
import shutil
import signal
import subprocess
import sys
import time

import torch

from pql_scaling.rundir import disk, schema
from pql_scaling.runtime.train import train
from tests.runs import rows, status
from tests.test_population import member_dirs
from tests.test_trio import assert_gone, expected_counts, learner_pids

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = [
    "task=pendulum",
    "mode=trio",
    "num_envs=8",
    "algo.batch_size=64",
    "net.actor_hidden=[32]",
    "net.critic_hidden=[32,32]",
    "algo.critic_updates_per_step=2",
    "algo.policy_updates_per_critic_update=0.5",
    "log.every_steps=10",
    "threads=1",
    "log.live=off",
    "algo.warmup_steps=4",
    "eval.every_steps=0",
]


def ckpt(path, name="last.pt"):
    return disk.read_checkpoint(os.path.join(path, "checkpoints", name), "cpu")


def max_change(before, after):
    return max((after[n] - before[n]).abs().max().item() for n in before)


def finite(state):
    return all(torch.isfinite(t).all() for t in state.values())


def test_a_trio_population_trains_each_member_alone_at_the_exact_ratios(tmp_path):
    """3 members: member 1's actor learns at a rate ~0 (it keeps its initial actor bit for bit, its critic
    learns), member 2's critic at 1e12 (it diverges and fails alone); members 0 and 1 end with complete run
    directories and exactly the trio's (= sync mode's) update counts, their weights finite."""
    steps = 200
    root = train(
        SMALL
        + [
            "population.size=3",
            "population.vary={algo.actor_lr: [3e-4, 1e-30, 3e-4], algo.critic_lr: [5e-4, 5e-4, 1e12]}",
            "max_env_steps=%d" % (8 * steps),
            "log.checkpoint_every_s=1000",  # two checkpoints: at the start (prev.pt) and the end (last.pt)
            "run_dir=%s" % (tmp_path / "pop"),
        ],
        quiet=True,
    )
    dirs = member_dirs(root)
    assert_gone(learner_pids(dirs[0]))  # the actor's log lines are in every member's train.log
    assert not os.listdir(os.path.join(root, "checkpoints"))  # the learners' state files are removed
    critic, policy = expected_counts(steps, 8, 64, 2, 0.5)
    for k, d in enumerate(dirs[:2]):
        assert sorted(os.listdir(d)) == sorted(
            ["checkpoints", schema.CONFIG, schema.FACTS, schema.METRICS, schema.STATUS, "train.log"]
        )
        facts = schema.read_facts(os.path.join(d, schema.FACTS))
        assert (
            facts["mode"] == "trio" and facts["population"]["size"] == 3 and facts["population"]["index"] == k
        )
        assert status(d)["status"] == "completed"
        last = rows(d)[-1]
        assert last["env_steps"] == 8 * steps
        assert (last["critic_updates"], last["policy_updates"]) == (critic, policy)
        for r in rows(d):  # along the run: never ahead of what is owed (sync's count at that step)
            assert r["critic_updates"] <= 2 * max(r["actor_steps"] - steps + critic // 2, 0), r
        end = ckpt(d)
        assert (end["v_learner"]["updates"], end["p_learner"]["updates"]) == (critic, policy)
        assert end["actor"]["steps"] == steps
        assert finite(end["v_learner"]["critic"]) and finite(end["p_learner"]["actor"])
    start = [ckpt(d, "prev.pt") for d in dirs[:2]]
    end = [ckpt(d) for d in dirs[:2]]
    assert start[0]["actor"]["steps"] == 0
    assert max_change(start[0]["p_learner"]["actor"], end[0]["p_learner"]["actor"]) > 1e-3
    assert max_change(start[1]["p_learner"]["actor"], end[1]["p_learner"]["actor"]) < 1e-20
    assert max_change(start[1]["v_learner"]["critic"], end[1]["v_learner"]["critic"]) > 1e-3
    st = status(dirs[2])
    assert st["status"] == "failed" and "diverged" in st["reason"] and "resume=" in st["reason"], st
    assert st["env_steps"] < 8 * steps


def _start(root, *extra):
    cmd = [sys.executable, "-m", "pql_scaling.cli", "train"] + SMALL + list(extra)
    return subprocess.Popen(
        cmd + ["run_dir=" + root], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _wait_for_checkpoints(proc, dirs, timeout=240):
    deadline = time.monotonic() + timeout
    while not all(os.path.exists(os.path.join(d, "checkpoints", "prev.pt")) for d in dirs):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1.0)


def test_a_killed_trio_population_resumes_every_member_once(tmp_path):
    """SIGKILL the V-learner: the population fails naming it, in every member's status; resume, SIGKILL the
    actor (the main process): the V-learner marks every member failed; resume again to the end: every
    member continues from its checkpoint, one timeline each (env steps strictly increasing), completed."""
    root = str(tmp_path / "pop")
    dirs = [os.path.join(root, "m%02d-s%d" % (k, k)) for k in range(2)]
    leg = ["population.size=2", "max_env_steps=4000000", "log.checkpoint_every_s=0.5"]
    proc = _start(root, *leg)
    _wait_for_checkpoints(proc, dirs)
    pids = learner_pids(dirs[0])
    os.kill(pids[0], signal.SIGKILL)  # the V-learner
    proc.wait(120)
    assert proc.returncode != 0
    for d in dirs:
        st = status(d)
        assert st["status"] == "failed" and "v_learner" in st["reason"] and "-9" in st["reason"], st
    assert_gone(pids + [proc.pid])

    for d in dirs:  # the next leg's checkpoints are new ones
        os.remove(os.path.join(d, "checkpoints", "prev.pt"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pql_scaling.cli", "train", "resume=" + root, "log.checkpoint_every_s=0.5"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for_checkpoints(proc, dirs)
    pids = learner_pids(dirs[0])[2:]  # this leg's learners
    proc.send_signal(signal.SIGKILL)  # the actor
    proc.wait(120)
    assert_gone(pids)
    for d in dirs:
        st = status(d)
        assert st["status"] == "failed" and st["detected_by"] == "v_learner" and "resume=" in st["reason"], st

    killed_at = max(rows(d)[-1]["env_steps"] for d in dirs)
    twin = str(tmp_path / "sync")  # the same checkpoints resumed in sync mode: the counts to match
    shutil.copytree(root, twin)
    train(["resume=" + twin, "mode=sync", "max_env_steps=%d" % (killed_at + 800)], quiet=True)
    train(["resume=" + root, "max_env_steps=%d" % (killed_at + 800)], quiet=True)
    for d in dirs:
        steps = [r["env_steps"] for r in rows(d)]
        assert all(a < b for a, b in zip(steps, steps[1:])), d
        assert steps[-1] == killed_at + 800 and status(d)["status"] == "completed"
        end, same = ckpt(d), ckpt(os.path.join(twin, os.path.basename(d)))
        counts = [
            (c["v_learner"]["updates"], c["p_learner"]["updates"], c["actor"]["steps"]) for c in (end, same)
        ]
        assert counts[0] == counts[1], counts  # every owed update paid once, none twice
        assert rows(d)[-1]["critic_updates"] == end["v_learner"]["updates"]


def test_population_auto_counts_the_trios_three_processes():
    """launcher.population=auto sizes a trio population for its learners' own nets, batches and processes."""
    from pql_scaling import config as config_lib
    from pql_scaling.experiments.sweep import sizing

    base = ["task=pendulum", "num_envs=8", "algo.buffer_size=4000000"]  # 160 MB of replay a member
    sync, trio = (sizing.member_bytes(config_lib.load(base + ["mode=" + m])) for m in ("sync", "trio"))
    assert trio["replay"] == sync["replay"] and trio["envs"] == sync["envs"]  # shared by the three
    assert trio["networks"] == 2 * sync["networks"] and trio["batch"] == 2 * sync["batch"]
    target = sizing.Target(3 * 2**30, "3 GiB")
    k_sync, _ = sizing.auto_size(config_lib.load(base + ["mode=sync"]), 64, target)
    k_trio, why = sizing.auto_size(config_lib.load(base + ["mode=trio"]), 64, target)
    usable = 0.8 * 3 * 2**30 - 3 * sizing.BASE_BYTES
    assert k_trio == min(64, int(usable // sum(trio.values()))) < k_sync and "less 1.61 GB" in why, why
