"""isaaclab.sim: SimulationCfg (device, dt, render_interval, physics) and the process-wide SimulationContext."""

import torch


class SimulationCfg:
    def __init__(self, device="cuda:0", dt=1.0 / 60.0, render_interval=1, physics=None):
        self.device, self.dt, self.render_interval, self.physics = device, dt, render_interval, physics


class SimulationContext:
    """One per process: a second raises, as Isaac Lab's envs do ("Simulation context already exists")."""

    _instance = None

    def __init__(self, cfg):
        if SimulationContext._instance is not None:
            raise RuntimeError(
                "A SimulationContext already exists. Use SimulationContext.instance() to retrieve it, or call "
                "SimulationContext.clear_instance() before constructing a replacement."
            )
        from isaaclab.app import kit_running

        physics = cfg.physics
        # no physics config: PhysX (Isaac Lab 2.x's only physics)
        kind = getattr(physics, "backend_name", "physx")
        if kind == "physx" and not kit_running():
            raise RuntimeError(
                "the PhysX physics backend needs Isaac Sim: start isaaclab.app.AppLauncher first"
            )
        self.cfg, self.physics_backend = cfg, kind
        self.device = str(torch.device(cfg.device))
        SimulationContext._instance = self

    @classmethod
    def instance(cls):
        return cls._instance

    @classmethod
    def clear_instance(cls):
        cls._instance = None

    def stop(self):
        pass
