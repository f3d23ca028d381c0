"""Per-task YAML defaults: valid configs, one per MJCF task for the CPU backend and one for the GPU backend,
Isaac Gym ones apart (name clash)."""
import glob
import os

import pytest
import yaml

import tasks
from pql_scaling import config
from tasks.mjcf import MJCF_TASKS

FILES = sorted(glob.glob(os.path.join(tasks.TASK_DIR, "*.yaml")) + glob.glob(os.path.join(tasks.TASK_DIR, "*", "*.yaml")))


def isaacgym_defaults_path(name):
    return tasks.defaults_path(name, backend="isaacgym")


@pytest.mark.parametrize("path", FILES, ids=[os.path.relpath(f, tasks.TASK_DIR) for f in FILES])
def test_every_task_yaml_is_a_valid_config(path):
    """Each YAML resolves through the config schema (known keys, right types, valid ranges)."""
    name = os.path.basename(path)[: -len(".yaml")]
    folder = os.path.basename(os.path.dirname(path))
    backend = folder if folder in ("isaacgym", "mjwarp") else None
    cfg = config.load(["task=" + name] + (["backend=" + backend] if backend else []))
    assert tasks.defaults_path(name, backend) == path  # the file this backend actually reads
    d = yaml.safe_load(open(path))
    assert cfg.num_envs == d["num_envs"] and cfg.max_time_s == d["max_time_s"]
    if backend:  # the GPU simulators get PQL's defaults
        assert d["num_envs"] == 4096 and d["max_time_s"] > 0
    elif name in MJCF_TASKS:  # backend=mujoco runs on the CPU: few envs, a learner that keeps up
        assert cfg.num_envs <= 64 and cfg.algo.critic_updates_per_step / cfg.num_envs >= 0.1


def test_every_task_has_defaults_and_pql_reward_scales():
    for name in MJCF_TASKS:
        assert tasks.defaults_path(name) and tasks.defaults_path(name, "mujoco") == tasks.defaults_path(name)
        assert tasks.defaults_path(name, "mjwarp") != tasks.defaults_path(name)
    for name in ["Ant", "Humanoid", "ShadowHand", "AllegroHand", "FrankaCubeStack", "Anymal"]:
        path = isaacgym_defaults_path(name)
        assert path and path != tasks.defaults_path(name)
        scale = (yaml.safe_load(open(path)).get("algo") or {}).get("reward_scale", 1.0)
        assert scale == (0.01 if name in ("Ant", "Humanoid", "ShadowHand", "AllegroHand") else 1.0)
    assert yaml.safe_load(open(tasks.defaults_path("HalfCheetah")))["r_max"] == 9800
