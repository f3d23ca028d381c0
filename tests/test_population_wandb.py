"""W&B and populations: each member its own W&B run (real wandb, offline: no network), as each is its own run
directory: its own id, name, config (its seed and varied values) and metrics, tied to the others by the
population id (a config field and the W&B group)."""

import glob
import json
import os

import pytest

from pql_scaling.rundir import schema
from pql_scaling.runtime.train import train
from tests.test_population import SMALL, member_dirs, rows


def _run_record(member_dir):
    from tests.helpers import _records

    (log,) = glob.glob(os.path.join(member_dir, "wandb", "offline-run-*", "*.wandb"))
    return next(r.run for r in _records(log) if r.WhichOneof("record_type") == "run")


def test_each_member_is_its_own_offline_wandb_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from tests.helpers import wandb_offline_run

    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "600")  # W&B's service starts slowly on a loaded machine
    root = train(
        SMALL[:-1]
        + ["max_env_steps=800", "population.size=2", "population.seeds=[4,9]"]
        + ["population.vary={algo.critic_lr: [5e-4, 2e-3]}", "wandb.mode=offline", "wandb.project=t"]
        + ["run_dir=%s" % (tmp_path / "pop")],
        quiet=True,
    )
    ids = set()
    for k, (d, seed, lr) in enumerate(zip(member_dirs(root), (4, 9), (5e-4, 2e-3))):
        assert "W&B" not in open(os.path.join(d, "train.log")).read()  # no W&B failure: the mirror ran
        config, history = wandb_offline_run(d)
        facts = schema.read_facts(os.path.join(d, schema.FACTS))
        pid = facts["population"]["id"]
        assert (config["seed"], config["algo"]["critic_lr"]) == (seed, lr)
        assert config["population_id"] == pid and config["population"] == {"id": pid, "size": 2, "index": k}
        assert config["critic_params"] == facts["critic_params"]  # run.json's facts, as a single run's
        logged = [r for r in history if "env_steps" in r]
        local = rows(d)
        assert [r["_step"] for r in logged] == [r["env_steps"] for r in local] and local[-1][
            "env_steps"
        ] == 800
        for mine, theirs in zip(local, logged):
            for key, v in mine.items():
                assert theirs.get(key) == (None if v is None else pytest.approx(v, rel=1e-9)), key
        run = _run_record(d)
        assert run.run_group == "population-" + pid and run.display_name == "pop-" + os.path.basename(d)
        with open(os.path.join(d, "checkpoints", "..", schema.STATUS)) as f:
            assert json.load(f)["status"] == "completed"
        ids.add(run.run_id)
    assert len(ids) == 2  # two W&B runs, not one shared


def test_a_killed_population_resumes_each_members_wandb_run_on_one_timeline(tmp_path, monkeypatch):
    """SIGKILL a population mirroring to W&B offline, resume it: each member's W&B run is rewound to its
    checkpoint's last kept step (W&B's resume_from, as a resumed single run's) and logs the rest of its own
    metrics.jsonl, nothing twice."""
    pytest.importorskip("wandb")
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers import offline_runs

    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "600")
    root = str(tmp_path / "pop")
    # checkpoints 2 s apart, log points several a second: the kill lands past a checkpoint, so a resume
    # supersedes log points and rewinds W&B
    args = SMALL[:-1] + ["population.size=2", "max_env_steps=400000", "log.checkpoint_every_s=2"]
    args += ["wandb.mode=offline", "wandb.project=t", "run_dir=" + root]
    # its own W&B service, as a crashed machine's process has (not this test process's, which still holds its runs)
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pql_scaling.cli", "train"] + args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    # generous: beside CPU hogs two W&B runs and a population start slowly (the suite beside two hogs failed this
    # test once with a 180 s limit here, cause not kept); a kill before a checkpoint tests no resume: say so
    deadline = time.monotonic() + 600
    prev = os.path.join(root, "m01-s1", "checkpoints", "prev.pt")
    while not os.path.exists(prev) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert os.path.exists(prev) and proc.poll() is None, (
        "no second checkpoint before the kill (rc %s)" % proc.poll()
    )
    logged = len(rows(os.path.join(root, "m01-s1")))
    while len(rows(os.path.join(root, "m01-s1"))) < logged + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    end = max(rows(d)[-1]["env_steps"] for d in member_dirs(root)) + 400
    train(["resume=" + root, "max_env_steps=%d" % end], quiet=True)
    for d in member_dirs(root):
        assert "W&B" not in open(os.path.join(d, "train.log")).read()  # no W&B failure, no fallback
        steps = [r["env_steps"] for r in rows(d)]
        assert all(a < b for a, b in zip(steps, steps[1:])) and steps[-1] == end, d
        resumed, branch = offline_runs(d)[-1]
        assert 0 < len(resumed) < len(steps) and resumed == steps[len(steps) - len(resumed) :], d
        if os.path.exists(os.path.join(d, "metrics.superseded.jsonl")):  # rewound past the superseded
            assert branch == steps[len(steps) - len(resumed) - 1] + 1, (branch, steps)
