"""End-to-end training in `mode=sync` on the native pendulum: the run directory contract, exact ratios,
determinism, divergence, resume, W&B offline mirroring, signals."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from pql_scaling.runtime.train import Diverged, train
from tests.runs import rows, same_curve, status

SMALL = [
    "task=pendulum",
    "mode=sync",
    "num_envs=8",
    "algo.batch_size=64",
    "net.actor_hidden=[32]",
    "net.critic_hidden=[32]",
    "log.every_steps=20",
    "threads=1",
    "log.live=off",
    "algo.warmup_steps=4",
]


def test_run_directory_contract_and_exact_ratios(tmp_path):
    d = train(
        SMALL
        + [
            "max_env_steps=1600",
            "algo.critic_updates_per_step=3",
            "algo.policy_updates_per_critic_update=0.5",
            "run_dir=%s" % (tmp_path / "r"),
        ],
        quiet=True,
    )
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "status.json",
        "run.json",
        "train.log",
        "checkpoints/last.pt",
    ):
        assert os.path.exists(os.path.join(d, name)), name
    assert status(d)["status"] == "completed"
    cfg = yaml.safe_load(open(os.path.join(d, "config.yaml")))
    assert cfg["algo"]["batch_size"] == 64 and cfg["num_envs"] == 8
    facts = json.load(open(os.path.join(d, "run.json")))
    assert facts["utd"] == 3 / 8 and facts["critic_params"] > 0
    last = rows(d)[-1]
    for key in (
        "env_steps",
        "critic_updates",
        "policy_updates",
        "utd",
        "flops",
        "wall_time_s",
        "return_mean",
        "return_std",
        "episodes",
        "env_steps_per_s",
        "critic_updates_per_s",
        "critic_loss",
        "actor_loss",
    ):
        assert key in last, key
    assert last["env_steps"] == 1600
    # updates start once the replay holds a batch; from then on exactly 3 per actor step, policy 1 per 2
    learning_steps = last["actor_steps"] - (64 // 8 + 2) + 1  # rows start after n-1 = 2 steps
    assert last["critic_updates"] == 3 * learning_steps
    assert last["policy_updates"] == last["critic_updates"] // 2
    assert (
        last["flops"]
        == last["critic_updates"] * facts["flops_per_critic_update"]
        + last["policy_updates"] * facts["flops_per_policy_update"]
    )
    assert all(
        r["return_mean"] is None or r["return_mean"] < 0 for r in rows(d)
    )  # pendulum returns, unscaled


def test_same_seed_same_metrics(tmp_path):
    a = train(SMALL + ["max_env_steps=800", "run_dir=%s" % (tmp_path / "a")], quiet=True)
    b = train(SMALL + ["max_env_steps=800", "run_dir=%s" % (tmp_path / "b")], quiet=True)
    strip = same_curve
    assert strip(rows(a)) == strip(rows(b))
    c = train(SMALL + ["max_env_steps=800", "seed=1", "run_dir=%s" % (tmp_path / "c")], quiet=True)
    assert strip(rows(a)) != strip(rows(c))


def test_target_return_stops_the_run(tmp_path):
    d = train(
        SMALL + ["max_env_steps=100000", "target_return=-1e9", "run_dir=%s" % (tmp_path / "t")], quiet=True
    )
    st = status(d)
    assert st["status"] == "completed" and st["reason"] == "target_return"
    assert rows(d)[-1]["env_steps"] == 8 * 200  # the first log point with finished episodes


def test_sac_and_c51_train(tmp_path):
    for extra in (["algo=sac"], ["algo.distributional=true", "algo.v_min=-50", "algo.v_max=0"]):
        d = train(SMALL + ["max_env_steps=800", "run_dir=%s" % (tmp_path / extra[0])] + extra, quiet=True)
        assert status(d)["status"] == "completed" and rows(d)[-1]["critic_updates"] > 0


def test_nan_loss_fails_with_cause_and_keeps_checkpoint(tmp_path):
    d = str(tmp_path / "nan")
    with pytest.raises(Diverged, match="algo.reward_scale"):
        train(
            SMALL
            + ["max_env_steps=4000", "algo.reward_scale=1e30", "log.checkpoint_every_s=0", "run_dir=" + d],
            quiet=True,
        )
    st = status(d)
    assert st["status"] == "failed" and "diverged" in st["reason"]
    ckpt = torch.load(os.path.join(d, "checkpoints", "last.pt"), weights_only=False)
    assert all(torch.isfinite(v).all() for v in ckpt["v_learner"]["critic"].values())


def test_resume_continues_counters_and_appends(tmp_path):
    d = str(tmp_path / "r")
    train(SMALL + ["max_env_steps=800", "run_dir=" + d], quiet=True)
    first = rows(d)
    train(["resume=" + d, "max_env_steps=1600", "log.live=off"], quiet=True)
    after = rows(d)
    assert after[: len(first)] == first
    new = after[len(first) :]
    assert new and new[0]["env_steps"] > first[-1]["env_steps"] and after[-1]["env_steps"] == 1600
    assert new[0]["critic_updates"] > first[-1]["critic_updates"]
    assert new[0]["wall_time_s"] >= first[-1]["wall_time_s"]
    assert status(d)["status"] == "completed"


def test_run_dir_is_never_overwritten(tmp_path):
    from pql_scaling.config import ConfigError

    d = str(tmp_path / "r")
    train(SMALL + ["max_env_steps=160", "run_dir=" + d], quiet=True)
    with pytest.raises(ConfigError, match="resume="):
        train(SMALL + ["max_env_steps=160", "run_dir=" + d], quiet=True)


def test_wandb_offline_mirrors_metrics_and_failures_never_stop_training(tmp_path, monkeypatch):
    """Real W&B in offline mode: the values it recorded (read back from its transaction log) are the
    metrics.jsonl rows and the run.json facts; a W&B project built from exactly what it recorded analyses
    with the right model size and UTD; a W&B failure never stops training."""
    pytest.importorskip("wandb")
    import numpy as np

    from pql_scaling.analysis import load as analysis_load
    from tests.helpers import wandb_offline_run

    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv(
        "WANDB_INIT_TIMEOUT", "600"
    )  # W&B's service starts slowly on a loaded machine (default 90 s)
    d = train(
        SMALL
        + ["max_env_steps=1600", "wandb.mode=offline", "wandb.project=t", "run_dir=%s" % (tmp_path / "w")],
        quiet=True,
    )
    log_text = open(os.path.join(d, "train.log")).read()
    assert "W&B" not in log_text, log_text  # no W&B failure: the mirror really ran
    config, history = wandb_offline_run(d)
    logged = [r for r in history if "env_steps" in r]
    local = rows(d)
    assert len(logged) == len(local) and any(r["return_mean"] is not None for r in local), (
        len(logged),
        history[:3],
    )
    for mine, theirs in zip(local, logged):
        assert theirs["_step"] == mine["env_steps"]
        for k, v in mine.items():
            if v is None:
                assert k not in theirs, k
            else:
                assert theirs[k] == pytest.approx(v, rel=1e-9), k
    facts = json.load(open(os.path.join(d, "run.json")))
    assert config["algo"]["batch_size"] == 64 and config["num_envs"] == 8 and config["task"] == "pendulum"
    assert config["algo"]["name"] == facts["algo"] == "pql"
    for k in ("critic_params", "utd", "flops_per_critic_update", "seed"):
        assert config[k] == facts[k], k

    class Run:  # wandb.Api().runs() items, holding exactly what the offline run recorded
        id, name, state, summary = "w", "w", "finished", {}

        def __init__(self):
            self.config = config

        def scan_history(self, keys=None, page_size=1000):
            return iter(history)

    class Api:
        def runs(self, path, per_page=50):
            return iter([Run()])

    table, _ = analysis_load.load_wandb("wandb://me/t", api=Api())
    assert len(table) == len(local)
    assert table.model_size.eq(facts["critic_params"]).all() and table.sigma.eq(facts["utd"]).all()
    np.testing.assert_array_equal(table.env_steps.to_numpy(), [r["env_steps"] for r in local])

    import wandb

    def broken(*a, **k):
        raise RuntimeError("wandb is down")

    monkeypatch.setattr(wandb, "init", broken)
    d2 = train(
        SMALL + ["max_env_steps=400", "wandb.mode=offline", "run_dir=%s" % (tmp_path / "w2")], quiet=True
    )
    assert status(d2)["status"] == "completed" and rows(d2)[-1]["env_steps"] == 400
    assert "W&B init failed" in open(os.path.join(d2, "train.log")).read()


def test_cli_prints_run_dir_and_sigterm_stops_gracefully(tmp_path):
    d = str(tmp_path / "cli")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen(
        [sys.executable, "-m", "pql_scaling.cli", "train"]
        + SMALL
        + ["max_env_steps=100000000", "log.live=plain", "run_dir=" + d],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 300  # generous: a loaded machine; the loop fails loudly when it passes
    while not (os.path.exists(os.path.join(d, "metrics.jsonl")) and rows(d)):
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            raise AssertionError(
                "no metrics row within 300 s (exit code %s):\n%s" % (p.poll(), p.communicate()[0])
            )
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    assert "run directory: %s" % d in out and "steps" in out
    st = status(d)
    assert st["status"] == "stopped" and "resume=" in st["reason"]
    assert os.path.exists(os.path.join(d, "checkpoints", "last.pt"))


def test_cli_config_error_exit_code_and_message(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "pql_scaling.cli", "train", "algo.batchsize=4"], capture_output=True, text=True
    )
    assert p.returncode == 2 and "algo.batch_size" in p.stderr


def test_a_final_log_point_at_the_same_env_steps_keeps_the_return_it_follows(tmp_path):
    """The trio's final log point (learners paid owed updates, no actor step since) lands on the stop row's
    env_steps: it must update the counters without erasing that row's return (seen: a cartpole run stopped by
    target_return whose metrics.jsonl then showed no return reaching it)."""
    from pql_scaling.rundir.rundir import RunDir

    run = RunDir(str(tmp_path / "r"))
    try:
        run.append_metrics({"env_steps": 100, "critic_updates": 10, "return_mean": -5.0, "episodes": 1})
        run.append_metrics(
            {
                "env_steps": 200,
                "critic_updates": 20,
                "return_mean": 701.0,
                "episodes": 3,
                "env_steps_per_s": 50.0,
            }
        )
        run.append_metrics(
            {
                "env_steps": 200,
                "critic_updates": 24,
                "return_mean": None,
                "episodes": 0,
                "env_steps_per_s": 0.0,
            }
        )
    finally:
        run.close()
    got = rows(str(tmp_path / "r"))
    assert [r["env_steps"] for r in got] == [100, 200]
    assert got[-1]["critic_updates"] == 24 and got[-1]["return_mean"] == 701.0 and got[-1]["episodes"] == 3
    assert got[-1]["env_steps_per_s"] == 50.0
