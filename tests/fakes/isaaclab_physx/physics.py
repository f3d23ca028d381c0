"""isaaclab_physx.physics.PhysxCfg: selects PhysX (the simulation then needs a launched Isaac Sim app)."""


class PhysxCfg:
    backend_name = "physx"

    def __init__(self, **kwargs):
        self.kwargs = kwargs
