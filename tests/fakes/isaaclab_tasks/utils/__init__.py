"""isaaclab_tasks.utils (test double): load_cfg_from_registry and parse_env_cfg with Isaac Lab's signatures."""

import importlib

import gymnasium as gym


def load_cfg_from_registry(task_name, entry_point_key):
    """The registration's kwargs[entry_point_key]: a class, or "module:Class", instantiated."""
    entry = gym.spec(task_name.split(":")[-1]).kwargs.get(entry_point_key)
    if entry is None:
        raise ValueError("Could not find configuration for the environment: '%s'." % task_name)
    if isinstance(entry, str):
        module, name = entry.split(":")
        entry = getattr(importlib.import_module(module), name)
    return entry() if callable(entry) else entry


def parse_env_cfg(
    task_name, device="cuda:0", num_envs=None, use_fabric=None, entry_point_key="env_cfg_entry_point"
):
    cfg = load_cfg_from_registry(task_name, entry_point_key)
    cfg.sim.device = device
    if num_envs is not None:
        cfg.scene.num_envs = num_envs
    return cfg
