"""Evaluation on by default (issue 26): every task YAML that can evaluate sets `eval.every_steps` so that its
default run gets 20-50 evaluations of the deterministic policy; Isaac Gym's keep it off and say why."""

import glob
import json
import os
import re

import pytest
import yaml

from pql_scaling import config, tasks
from pql_scaling.runtime.train import train
from pql_scaling.tasks.mjcf import MJCF_TASKS
from tests.runs import rows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results", "eval_cost_cpu.json")
EVAL_FILES = sorted(
    glob.glob(os.path.join(tasks.TASK_DIR, "*.yaml"))
    + glob.glob(os.path.join(tasks.TASK_DIR, "gpu", "*.yaml"))
    + glob.glob(os.path.join(tasks.TASK_DIR, "mjwarp", "*.yaml"))
    + [os.path.join(tasks.TASK_DIR, "gymnasium", "Pendulum-v1.yaml")]
)
ISAAC_FILES = sorted(glob.glob(os.path.join(tasks.TASK_DIR, "isaacgym", "*.yaml")))
RATE = re.compile(r"([\d,]+) env-steps/s")  # the figure a time-limited task's eval comment cites


def ids(files):
    return [os.path.relpath(f, tasks.TASK_DIR) for f in files]


def load(path, *extra):
    name = os.path.basename(path)[: -len(".yaml")]
    folder = os.path.basename(os.path.dirname(path))
    backend = folder if folder in ("isaacgym", "mjwarp", "gymnasium") else None
    device = "cuda" if folder == "gpu" else "cpu"
    args = ["task=" + name, "device=" + device] + (["backend=" + backend] if backend else [])
    return config.load(args + list(extra))


def measured(path):
    """benchmarks/eval_cost.py's rows for this YAML's task (the CPU defaults: native, mujoco, gymnasium), oldest
    first; superseded rows measured an older schedule or were measured again."""
    name, folder = os.path.basename(path)[: -len(".yaml")], os.path.dirname(path)
    if folder == tasks.TASK_DIR:
        backend = "mujoco" if name in MJCF_TASKS else "native"
    elif os.path.basename(folder) == "gymnasium":
        backend = "gymnasium"
    else:
        return []
    rows_ = json.load(open(RESULTS))["results"]
    return [r for r in rows_ if r["task"] == name and r["backend"] == backend]


def test_eval_files_cover_every_task_that_can_evaluate():
    assert len(EVAL_FILES) == 5 + 5 + 5 + 5 + 1 and len(ISAAC_FILES) == 6


@pytest.mark.parametrize("path", EVAL_FILES, ids=ids(EVAL_FILES))
def test_default_run_gets_20_to_50_evaluations(path):
    """The default run: its max_env_steps, or its max_time_s at the env-steps/s its eval comment cites (for the
    CPU defaults a row of benchmarks/results/eval_cost_cpu.json, whose latest row measured this very schedule)."""
    cfg = load(path)
    every = cfg.eval.every_steps
    assert every > 0 and cfg.eval.episodes > 0
    assert every >= cfg.log.every_steps * cfg.num_envs  # evaluations happen at log points: none is skipped
    found = RATE.search(open(path).read().split("\neval:", 1)[1])
    rate = float(found.group(1).replace(",", "")) if found else None
    rows_ = measured(path)
    if rows_:
        latest = [r for r in rows_ if not r["superseded"]][-1]
        assert latest["eval_every_steps"] == every and latest["eval_episodes"] == cfg.eval.episodes
        if latest["evaluations"]:  # a short run of a slow task may end before its first evaluation
            assert latest["eval_share_measured"] <= 0.05 and latest["eval_share_projected"] <= 0.05
        if rate is None:
            rate = latest["env_steps_per_s"]
        else:  # the figure cited is a measurement on record
            assert any(round(r["env_steps_per_s"]) == rate for r in rows_), (path, rate)
    if cfg.max_env_steps and (rate is None or rate * cfg.max_time_s >= cfg.max_env_steps):
        run_steps = cfg.max_env_steps  # the step cap ends the default run
    else:
        assert rate, "%s: a time-limited task's eval comment must cite its env-steps/s" % path
        run_steps = rate * cfg.max_time_s
    assert 20 <= run_steps // every <= 50, (path, run_steps, every)


@pytest.mark.parametrize("path", ISAAC_FILES, ids=ids(ISAAC_FILES))
def test_isaacgym_tasks_keep_evaluation_off(path):
    assert load(path).eval.every_steps == 0
    assert "eval" not in (yaml.safe_load(open(path)) or {})


def test_a_default_pendulum_run_logs_eval_returns(tmp_path):
    """No eval key given: the task's schedule (tasks/pendulum.yaml) evaluates the deterministic policy."""
    every = config.load(["task=pendulum"]).eval.every_steps
    d = train(
        [
            "task=pendulum",
            "mode=sync",
            "max_env_steps=%d" % every,
            "algo.batch_size=64",
            "net.actor_hidden=[16]",
            "net.critic_hidden=[16]",
            "log.live=off",
            "run_dir=%s" % (tmp_path / "r"),
        ],
        quiet=True,
    )
    evals = [r for r in rows(d) if r.get("eval_return_mean") is not None]
    assert len(evals) == 1 and evals[0]["env_steps"] == every
    assert (
        evals[0]["eval_episodes"] == 16 and evals[0]["eval_return_mean"] < 0 and evals[0]["eval_time_s"] > 0
    )
    assert yaml.safe_load(open(os.path.join(d, "config.yaml")))["eval"]["every_steps"] == every


def test_an_isaacgym_run_says_evaluation_is_off(tmp_path):
    from tests.test_isaacgym_adapter import train_cli

    run_dir = train_cli(tmp_path, "sync", "max_env_steps=320")
    text = open(os.path.join(run_dir, "train.log")).read()
    assert text.count("evaluation off: Isaac Gym allows one simulation per process") == 1
