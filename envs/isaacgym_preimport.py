"""Import Isaac Gym before torch: call `preimport_isaacgym()` at the very top of the main entry point.

Isaac Gym Preview 4 refuses to load once torch is imported ("PyTorch was imported before isaacgym
modules"). When a run uses backend=isaacgym, the program's entry point (the `pql-scale` CLI's `main`,
before it imports anything that imports torch -- config, trainer, envs backends) must call

    from pql_scaling.envs.isaacgym_preimport import maybe_preimport_isaacgym
    maybe_preimport_isaacgym(sys.argv[1:])      # no-op unless the run's backend is isaacgym
                                                # (`backend=isaacgym`, or `resume=` of such a run
                                                # or population)

This module imports neither torch nor anything that does (nor does importing `envs` itself).
Spawned learner processes of the trio never create an Isaac Gym env and need no pre-import.
"""

import os
import sys

INSTALL_HINT = (
    "Isaac Gym Preview 4 is not on PyPI: download the tarball from NVIDIA (developer.nvidia.com/isaac-gym, "
    "licence-gated), then in a Python 3.8 environment `pip install -e isaacgym/python` and "
    "`pip install -e IsaacGymEnvs` (github isaac-sim/IsaacGymEnvs, release 1.5.1; needs numpy<1.24, a C++ "
    "compiler and ninja). Simplest: build the project's Isaac Gym image, docker/Dockerfile.isaacgym "
    "(see the README). NVIDIA now calls Isaac Gym legacy (successor: Isaac Lab)."
)


def preimport_isaacgym():
    """Import isaacgym (then isaacgymenvs) now; raise a clear error if torch came first or it is missing."""
    if "isaacgym" in sys.modules:
        return sys.modules["isaacgym"]
    if "torch" in sys.modules:
        raise ImportError(
            "torch is already imported, and Isaac Gym must be imported before torch: call "
            "pql_scaling.envs.isaacgym_preimport.preimport_isaacgym() at the very start of the program, "
            "before any import "
            "that pulls in torch."
        )
    try:
        import isaacgym  # noqa: F401
    except ImportError as exc:
        if "PyTorch was imported before" in str(exc):
            raise
        raise ImportError(
            "backend 'isaacgym' needs Isaac Gym Preview 4 and IsaacGymEnvs. " + INSTALL_HINT
        ) from exc
    try:
        import isaacgymenvs  # noqa: F401
    except ImportError as exc:
        raise ImportError("backend 'isaacgym' needs IsaacGymEnvs next to Isaac Gym. " + INSTALL_HINT) from exc
    return sys.modules["isaacgym"]


def _backend_arg(argv):
    """The value of a `backend=X` / `--backend X` argument, or None."""
    for i, arg in enumerate(argv):
        key, eq, value = arg.lstrip("-+").partition("=")
        if key == "backend" and eq:
            return value
        if key == "backend" and arg.startswith("-") and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _resumed_backend(argv):
    """The backend in the config.yaml of a `resume=RUN_DIR` argument, or in the config of a population's
    population.json (`resume=POPULATION_DIR`), read with yaml / json (no torch); else None."""
    for arg in argv:
        key, eq, value = arg.lstrip("-+").partition("=")
        if key == "resume" and eq and value:
            try:
                population = os.path.join(value, "population.json")  # runtime/population.py's record
                if os.path.exists(population):
                    import json

                    with open(population) as f:
                        cfg = json.load(f).get("config")
                else:
                    import yaml

                    with open(os.path.join(value, "config.yaml")) as f:
                        cfg = yaml.safe_load(f)
            except Exception:  # noqa: BLE001 - an unreadable run directory is reported by `train` itself
                return None
            return cfg.get("backend") if isinstance(cfg, dict) else None
    return None


def wants_isaacgym(argv):
    """True when the run uses backend=isaacgym: from the command line (`backend=isaacgym`, `--backend isaacgym`),
    or, without a backend argument, from the config of the run (or population) that `resume=DIR` continues."""
    argv = list(argv)
    backend = _backend_arg(argv)
    if backend is None:
        backend = _resumed_backend(argv)
    return backend == "isaacgym"


def maybe_preimport_isaacgym(argv=None):
    """Pre-import Isaac Gym when the arguments ask for it; returns whether it did."""
    if wants_isaacgym(sys.argv[1:] if argv is None else argv):
        preimport_isaacgym()
        return True
    return False
