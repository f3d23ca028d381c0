"""Import Isaac Gym before torch: call `preimport_isaacgym()` at the very top of the main entry point.

Isaac Gym Preview 4 refuses to load once torch is imported ("PyTorch was imported before isaacgym
modules"). When a run uses backend=isaacgym, the program's entry point (the `pql-scale` CLI's `main`,
before it imports anything that imports torch -- config, trainer, envs backends) must call

    from envs.isaacgym_preimport import maybe_preimport_isaacgym
    maybe_preimport_isaacgym(sys.argv[1:])      # no-op unless an argument is `backend=isaacgym`

This module imports neither torch nor anything that does (nor does importing `envs` itself).
Spawned learner processes of the trio never create an Isaac Gym env and need no pre-import.
"""
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
            "envs.isaacgym_preimport.preimport_isaacgym() at the very start of the program, before any import "
            "that pulls in torch."
        )
    try:
        import isaacgym  # noqa: F401
    except ImportError as exc:
        if "PyTorch was imported before" in str(exc):
            raise
        raise ImportError("backend 'isaacgym' needs Isaac Gym Preview 4 and IsaacGymEnvs. " + INSTALL_HINT) from exc
    try:
        import isaacgymenvs  # noqa: F401
    except ImportError as exc:
        raise ImportError("backend 'isaacgym' needs IsaacGymEnvs next to Isaac Gym. " + INSTALL_HINT) from exc
    return sys.modules["isaacgym"]


def wants_isaacgym(argv):
    """True when command-line overrides select backend=isaacgym (e.g. `backend=isaacgym`, `--backend isaacgym`)."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg.lstrip("-+") in ("backend=isaacgym",):
            return True
        if arg.lstrip("-") == "backend" and i + 1 < len(argv) and argv[i + 1] == "isaacgym":
            return True
    return False


def maybe_preimport_isaacgym(argv=None):
    """Pre-import Isaac Gym when the arguments ask for it; returns whether it did."""
    if wants_isaacgym(sys.argv[1:] if argv is None else argv):
        preimport_isaacgym()
        return True
    return False
