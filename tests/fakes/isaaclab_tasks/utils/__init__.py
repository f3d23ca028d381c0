"""isaaclab_tasks.utils (test double): load_cfg_from_registry and parse_env_cfg with Isaac Lab's signatures.

3.0.0: parse_env_cfg(task_name, device=None, num_envs=None, use_fabric=None, overrides=()) resolves the config's
physics presets, `overrides=["physics=<name>"]` picking one (an unknown name: ValueError "Unknown preset(s)",
as isaaclab_tasks.utils.hydra raises), else the default. 2.x: parse_env_cfg(task_name, device, num_envs,
use_fabric, entry_point_key), no presets."""

import importlib

import gymnasium as gym
from isaaclab import VERSION_MAJOR


def load_cfg_from_registry(task_name, entry_point_key):
    """The registration's kwargs[entry_point_key]: a class, or "module:Class", instantiated."""
    entry = gym.spec(task_name.split(":")[-1]).kwargs.get(entry_point_key)
    if entry is None:
        raise ValueError("Could not find configuration for the environment: '%s'." % task_name)
    if isinstance(entry, str):
        module, name = entry.split(":")
        entry = getattr(importlib.import_module(module), name)
    return entry() if callable(entry) else entry


def _apply(cfg, device, num_envs):
    if device is not None:
        cfg.sim.device = device
    if num_envs is not None:
        cfg.scene.num_envs = num_envs
    return cfg


def _resolve_presets(cfg, overrides):
    if isinstance(overrides, str):
        raise TypeError("'overrides' must be a list or tuple of 'key=value' strings, not a bare string")
    presets = cfg.sim.physics
    names = [o.split("=", 1)[1] for o in overrides if o.startswith("physics=")]
    if presets is None or not hasattr(presets, "presets"):
        if names:
            raise ValueError("Unknown preset(s): %s" % ", ".join(names))
        return cfg
    name = names[-1] if names else presets.default
    if name not in presets.presets:
        raise ValueError(
            "Unknown preset(s): %s\n\nAvailable presets: %s" % (name, ", ".join(sorted(presets.presets)))
        )
    cfg.sim.physics = presets.presets[name]
    return cfg


if VERSION_MAJOR >= 3:

    def parse_env_cfg(task_name, device=None, num_envs=None, use_fabric=None, overrides=()):
        cfg = load_cfg_from_registry(task_name, "env_cfg_entry_point")
        return _resolve_presets(_apply(cfg, device, num_envs), overrides)

else:

    def parse_env_cfg(
        task_name, device="cuda:0", num_envs=None, use_fabric=None, entry_point_key="env_cfg_entry_point"
    ):
        return _apply(load_cfg_from_registry(task_name, entry_point_key), device, num_envs)
