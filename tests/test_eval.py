"""Evaluation of the deterministic policy: logged beside the training return, in sync and trio mode,
on its own env batch, without touching what training learns from."""

import pytest

from pql_scaling import config
from pql_scaling.runtime.train import train
from tests.runs import TIME_KEYS, rows

SMALL = [
    "task=pendulum",
    "num_envs=8",
    "algo.batch_size=64",
    "net.actor_hidden=[32]",
    "net.critic_hidden=[32]",
    "log.every_steps=20",
    "threads=1",
    "log.live=off",
    "algo.warmup_steps=4",
    "max_env_steps=800",
]
EVAL = ["eval.every_steps=320", "eval.episodes=3"]


def test_sync_eval_is_logged_and_leaves_training_unchanged(tmp_path):
    a = rows(
        train(SMALL + ["eval.every_steps=0", "mode=sync", "run_dir=%s" % (tmp_path / "plain")], quiet=True)
    )
    b = rows(train(SMALL + EVAL + ["mode=sync", "run_dir=%s" % (tmp_path / "eval")], quiet=True))
    evals = [r for r in b if "eval_return_mean" in r]
    assert [r["env_steps"] for r in evals] == [320, 640]  # the first log point at or after each multiple
    for r in evals:
        assert r["eval_episodes"] == 3 and r["eval_return_mean"] < 0 and r["eval_return_std"] >= 0
        assert r["eval_time_s"] > 0
    assert evals[1]["eval_time_s"] > evals[0]["eval_time_s"]  # cumulative, logged apart
    # eval envs are a separate batch with their own seed: every training number is the same as without eval
    strip = lambda rs: [
        {k: v for k, v in r.items() if k not in TIME_KEYS and not k.startswith("eval_")} for r in rs
    ]
    assert strip(a) == strip(b)


def test_trio_eval_is_logged(tmp_path):
    b = rows(train(SMALL + EVAL + ["mode=trio", "run_dir=%s" % (tmp_path / "trio")], quiet=True))
    evals = [r for r in b if "eval_return_mean" in r]
    assert len(evals) == 2 and all(r["eval_episodes"] == 3 for r in evals)


def test_isaacgym_eval_is_a_config_error():
    with pytest.raises(config.ConfigError, match="one simulation per process"):
        config.load(["task=Ant", "backend=isaacgym", "eval.every_steps=1000"])
