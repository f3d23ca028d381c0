"""isaaclab_newton.physics: NewtonCfg(solver_cfg=MJWarpSolverCfg()) selects Newton with the MuJoCo Warp solver."""


class MJWarpSolverCfg:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class NewtonCfg:
    backend_name = "newton"

    def __init__(self, solver_cfg=None, **kwargs):
        self.solver_cfg, self.kwargs = solver_cfg, kwargs
