"""Per-task YAML defaults: allowed keys only, one per MJCF task, Isaac Gym ones apart (name clash)."""
import glob
import os

import pytest
import yaml

import tasks
from envs.isaacgym_preimport import defaults_path as isaacgym_defaults_path
from tasks.mjcf import MJCF_TASKS

TOP = {"num_envs", "max_env_steps", "max_time_s", "r_max", "algo"}
ALGO = {"gamma", "reward_scale", "nstep", "batch_size", "critic_updates_per_step", "policy_updates_per_critic_update"}
FILES = glob.glob(os.path.join(tasks.TASK_DIR, "*.yaml")) + glob.glob(os.path.join(tasks.TASK_DIR, "isaacgym", "*.yaml"))


@pytest.mark.parametrize("path", FILES, ids=[os.path.relpath(f, tasks.TASK_DIR) for f in FILES])
def test_keys(path):
    d = yaml.safe_load(open(path))
    assert set(d) <= TOP and set(d.get("algo") or {}) <= ALGO
    assert d["num_envs"] == 4096 and d["max_time_s"] > 0


def test_every_task_has_defaults_and_pql_reward_scales():
    for name in MJCF_TASKS:
        assert tasks.defaults_path(name)
    for name in ["Ant", "Humanoid", "ShadowHand", "AllegroHand", "FrankaCubeStack", "Anymal"]:
        path = isaacgym_defaults_path(name)
        assert path and path != tasks.defaults_path(name)
        scale = (yaml.safe_load(open(path)).get("algo") or {}).get("reward_scale", 1.0)
        assert scale == (0.01 if name in ("Ant", "Humanoid", "ShadowHand", "AllegroHand") else 1.0)
    assert yaml.safe_load(open(tasks.defaults_path("HalfCheetah")))["r_max"] == 9800
