"""isaaclab_newton.physics: NewtonCfg(solver_cfg=MJWarpSolverCfg(...)) selects Newton with the MuJoCo Warp solver.

As in Isaac Lab 3.0.0 (isaaclab_newton/physics/*_cfg.py): the solver's settings are attributes with defaults
(njmax 300, nconmax None, cone "pyramidal", impratio 1.0); the tasks' physics presets tune them."""


class MJWarpSolverCfg:
    njmax = 300
    nconmax = None
    cone = "pyramidal"
    impratio = 1.0

    def __init__(self, **kwargs):
        for key, value in kwargs.items():
            if not hasattr(type(self), key):
                raise TypeError("MJWarpSolverCfg has no field %r" % key)
            setattr(self, key, value)


class NewtonCfg:
    backend_name = "newton"

    def __init__(self, solver_cfg=None, **kwargs):
        self.solver_cfg, self.kwargs = solver_cfg, kwargs
