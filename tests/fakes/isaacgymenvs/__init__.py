"""Stand-in for IsaacGymEnvs 1.5.1's `isaacgymenvs` package (tests only; see tests/fakes/README.md)."""
import isaacgym  # noqa: F401  (the real package imports isaacgym before torch too)

from isaacgymenvs.tasks import isaacgym_task_map, task_config


def make(seed, task, num_envs, sim_device, rl_device, graphics_device_id=-1, headless=False, multi_gpu=False,
         virtual_screen_capture=False, force_render=True, cfg=None):
    """Build a task as IsaacGymEnvs does. As documented, `seed` is NOT applied here.

    cfg=None composes the task's default config and sets numEnvs = num_envs; a given cfg (the full run
    config, an OmegaConf DictConfig) is used as it is, `cfg.task` being the task config (the stand-in fills the keys it omits
    from the defaults, where real IsaacGymEnvs needs a complete one) and `num_envs` is ignored."""
    if cfg is None:
        cfg = task_config(task)
        cfg["env"]["numEnvs"] = num_envs
    else:
        from omegaconf import OmegaConf

        given = OmegaConf.to_container(cfg.task)  # attribute access: a plain dict fails here, as in IsaacGymEnvs
        cfg = task_config(given["name"])
        cfg["env"].update(given.get("env", {}))
    return isaacgym_task_map[cfg["name"]](cfg=cfg, rl_device=rl_device, sim_device=sim_device,
                                          graphics_device_id=graphics_device_id, headless=headless,
                                          virtual_screen_capture=virtual_screen_capture, force_render=force_render)
