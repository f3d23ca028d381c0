"""Task definitions. Native torch tasks (the embedded default backend) are registered here by name;
per-task training defaults live beside them as `<task>.yaml` (CPU scale), with GPU-scale ones in
`gpu/` (native tasks on device=cuda) and per-simulator ones in `<backend>/` (mjwarp, isaacgym, isaaclab)."""

import importlib
import os
import re

# name -> "module:Class" for the embedded torch-native backend.
NATIVE_TASKS = {
    "pendulum": "pql_scaling.tasks.pendulum:Pendulum",
    "mountaincar": "pql_scaling.tasks.mountaincar:MountainCar",
    "cartpole_swingup": "pql_scaling.tasks.cartpole_swingup:CartpoleSwingup",
    "acrobot_swingup": "pql_scaling.tasks.acrobot_swingup:AcrobotSwingup",
    "double_cartpole_swingup": "pql_scaling.tasks.double_cartpole_swingup:DoubleCartpoleSwingup",
}

TASK_DIR = os.path.dirname(os.path.abspath(__file__))
# backend=gymnasium: tasks/gymnasium/<id>.yaml where we ship one, else these generic defaults
GYMNASIUM_GENERIC = os.path.join(TASK_DIR, "gymnasium", "_generic.yaml")
_GYMNASIUM_ID = re.compile(r"-v[0-9]+$")  # Gymnasium's versioned ids; no other backend's task names end so


def load_native(name):
    module, cls = NATIVE_TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def is_gpu(device):
    return str(device).split(":")[0] == "cuda"


def defaults_path(name, backend=None, device="cpu"):
    """Path of the task's YAML defaults, or None if the task has none.

    A backend may keep its own in tasks/<backend>/: the GPU simulators (mjwarp) get PQL's defaults of
    thousands of envs where the CPU backend of the same task gets few; Isaac Gym's live only there,
    since IsaacGymEnvs' Ant and Humanoid are other MDPs than the MJCF tasks of the same name; Isaac Lab's
    (tasks/isaaclab/<id>.yaml, also meant by an `Isaac-` id without a backend) likewise.
    A native task runs on either device, so the device picks: tasks/gpu/<task>.yaml (PQL scale,
    thousands of envs) for device=cuda, tasks/<task>.yaml (tuned for a 2-core CPU) otherwise.
    backend=gymnasium (also meant by a versioned id such as Pendulum-v1 without a backend, as envs.make resolves
    it) reads tasks/gymnasium/<id>.yaml, else tasks/gymnasium/_generic.yaml, on either device (its envs step on
    the CPU)."""
    if backend is None and str(name).startswith("Isaac-"):  # Isaac Lab's ids (Isaac-Cartpole-Direct-v0)
        backend = "isaaclab"
    if backend is None and name not in NATIVE_TASKS and _GYMNASIUM_ID.search(str(name)):
        backend = "gymnasium"
    candidates = [os.path.join(TASK_DIR, backend, name + ".yaml")] if backend else []
    if is_gpu(device) and backend in (None, "native"):
        candidates.append(os.path.join(TASK_DIR, "gpu", name + ".yaml"))
    if backend not in ("isaacgym", "isaaclab"):
        candidates.append(os.path.join(TASK_DIR, name + ".yaml"))
    if backend == "gymnasium":
        candidates.append(GYMNASIUM_GENERIC)
    return next((p for p in candidates if os.path.exists(p)), None)


def display_path(path):
    """A defaults path as run.json and the CLI show it: relative to the repository, e.g. tasks/gpu/pendulum.yaml."""
    return None if path is None else os.path.relpath(path, os.path.dirname(TASK_DIR))


def solved_return(name):
    """The native task's documented "solved" mean return (its class's `solved_return`), or None."""
    return load_native(name).solved_return if name in NATIVE_TASKS else None
