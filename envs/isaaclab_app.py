"""Isaac Lab's start-up, importable without torch: launch Isaac Sim (Kit) before anything that needs it.

Isaac Lab 3.0 runs in two modes (its kit-less installation guide, isaac-sim.github.io/IsaacLab, "Kit-less
Installation"): kit-less, on Newton physics (MuJoCo Warp solver) with no Isaac Sim at all, or with Isaac Sim,
which the PhysX physics backend, RTX rendering and cameras require. With Isaac Sim the application must be
started by `isaaclab.app.AppLauncher` before any `omni.*` / Isaac Sim module is imported (every Isaac Lab
script does so first thing), so when a run asks for Kit the `pql-scale` CLI calls `maybe_launch_isaaclab_app`
at the top of `main`, before torch and the trainer are imported; the adapter calls `launch_app` again (a no-op
then). In kit-less mode nothing is launched.

This module imports neither torch nor Isaac Lab at import time.
"""

import os
import sys

INSTALL_HINT = (
    "Isaac Lab 3.0 needs Python 3.12 and torch 2.11 for CUDA 13: `pip install torch==2.11.0 --index-url "
    "https://download.pytorch.org/whl/cu130`, then `pip install 'isaaclab[all]==3.0.0' --extra-index-url "
    "https://pypi.nvidia.com` (kit-less: Newton physics with MuJoCo Warp; for PhysX or cameras Isaac Sim too: "
    "'isaaclab[isaacsim,all]==3.0.0'). Simplest: build the project's Isaac Lab image, docker/Dockerfile.isaaclab "
    "(see the README)."
)

# physics=... choices of backend=isaaclab (env_kwargs.physics) and whether each needs Isaac Sim (Kit)
PHYSICS = {"newton_mjwarp": False, "physx": True}
_APP = []  # the launched Kit application (one per process)


def needs_kit(physics=None, kit=None):
    """Whether a run must launch Isaac Sim: asked for (`kit=True`), or implied by PhysX physics."""
    if kit is not None:
        return bool(kit)
    return bool(PHYSICS.get(physics, False))


def launch_app(headless=True, device=None):
    """Start Isaac Sim through Isaac Lab's AppLauncher once per process; returns the application."""
    if _APP:
        return _APP[0]
    try:
        from isaaclab.app import AppLauncher
    except ImportError as exc:
        raise ImportError(
            "backend 'isaaclab' with Isaac Sim needs isaaclab and isaacsim. " + INSTALL_HINT
        ) from exc
    kwargs = {"headless": bool(headless)}
    if device is not None:
        kwargs["device"] = str(device)
    launcher = AppLauncher(**kwargs)
    _APP.append(launcher.app)
    return launcher.app


def app_launched():
    return bool(_APP)


def _argv_value(argv, key):
    for arg in argv:
        k, eq, value = arg.lstrip("-+").partition("=")
        if k == key and eq:
            return value
    return None


def _resumed_config(argv):
    resume = _argv_value(argv, "resume")
    if not resume:
        return {}
    try:
        import yaml

        with open(os.path.join(resume, "config.yaml")) as f:
            cfg = yaml.safe_load(f)
    except Exception:  # noqa: BLE001 - an unreadable run directory is reported by `train` itself
        return {}
    return cfg if isinstance(cfg, dict) else {}


def wanted_kit(argv):
    """(backend is isaaclab, Kit wanted) from the command line or a resumed run's config.yaml (no torch)."""
    argv = list(argv)
    resumed = _resumed_config(argv)
    backend = _argv_value(argv, "backend") or resumed.get("backend")
    if backend != "isaaclab":
        return False, False
    kwargs = dict(resumed.get("env_kwargs") or {})
    for key in ("physics", "kit"):
        value = _argv_value(argv, "env_kwargs." + key)
        if value is not None:
            kwargs[key] = {"true": True, "false": False}.get(value.lower(), value)
    return True, needs_kit(kwargs.get("physics"), kwargs.get("kit"))


def maybe_launch_isaaclab_app(argv=None):
    """Launch Isaac Sim now when the arguments ask for backend=isaaclab with Kit; returns whether it did.
    (A task whose YAML picks PhysX without saying so on the command line is launched by the adapter itself,
    after torch: Isaac Lab's own scripts import torch after the launcher, which is what this call keeps.)"""
    argv = sys.argv[1:] if argv is None else argv
    is_lab, kit = wanted_kit(argv)
    if is_lab and kit:
        launch_app(headless=True, device=_argv_value(argv, "device"))
        return True
    return False
