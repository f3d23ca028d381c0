"""Per-task YAML defaults: allowed keys only, one per MJCF task, Isaac Gym ones apart (name clash)."""
import glob
import os

import pytest
import yaml

import tasks
from pql_scaling import config
from tasks.mjcf import MJCF_TASKS

FILES = glob.glob(os.path.join(tasks.TASK_DIR, "*.yaml")) + glob.glob(os.path.join(tasks.TASK_DIR, "isaacgym", "*.yaml"))


def isaacgym_defaults_path(name):
    return tasks.defaults_path(name, backend="isaacgym")


@pytest.mark.parametrize("path", FILES, ids=[os.path.relpath(f, tasks.TASK_DIR) for f in FILES])
def test_every_task_yaml_is_a_valid_config(path):
    """Each YAML resolves through the config schema (known keys, right types, valid ranges)."""
    name = os.path.basename(path)[: -len(".yaml")]
    backend = "isaacgym" if os.path.basename(os.path.dirname(path)) == "isaacgym" else None
    cfg = config.load(["task=" + name] + (["backend=isaacgym"] if backend else []))
    d = yaml.safe_load(open(path))
    assert cfg.num_envs == d["num_envs"] and cfg.max_time_s == d["max_time_s"]
    if backend or name in MJCF_TASKS:
        assert d["num_envs"] == 4096 and d["max_time_s"] > 0  # PQL's defaults


def test_every_task_has_defaults_and_pql_reward_scales():
    for name in MJCF_TASKS:
        assert tasks.defaults_path(name)
    for name in ["Ant", "Humanoid", "ShadowHand", "AllegroHand", "FrankaCubeStack", "Anymal"]:
        path = isaacgym_defaults_path(name)
        assert path and path != tasks.defaults_path(name)
        scale = (yaml.safe_load(open(path)).get("algo") or {}).get("reward_scale", 1.0)
        assert scale == (0.01 if name in ("Ant", "Humanoid", "ShadowHand", "AllegroHand") else 1.0)
    assert yaml.safe_load(open(tasks.defaults_path("HalfCheetah")))["r_max"] == 9800
