"""Task definitions. Native torch tasks (the embedded default backend) are registered here by name;
per-task training defaults live beside them as `<task>.yaml`."""
import importlib
import os

# name -> "module:Class" for the embedded torch-native backend.
NATIVE_TASKS = {
    "pendulum": "tasks.pendulum:Pendulum",
    "mountaincar": "tasks.mountaincar:MountainCar",
    "cartpole_swingup": "tasks.cartpole_swingup:CartpoleSwingup",
    "acrobot_swingup": "tasks.acrobot_swingup:AcrobotSwingup",
    "double_cartpole_swingup": "tasks.double_cartpole_swingup:DoubleCartpoleSwingup",
}

TASK_DIR = os.path.dirname(os.path.abspath(__file__))


def load_native(name):
    module, cls = NATIVE_TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def defaults_path(name, backend=None):
    """Path of the task's YAML defaults, or None if the task has none.

    A backend may keep its own in tasks/<backend>/: the GPU simulators (mjwarp) get PQL's defaults of
    thousands of envs where the CPU backend of the same task gets few; Isaac Gym's live only there,
    since IsaacGymEnvs' Ant and Humanoid are other MDPs than the MJCF tasks of the same name."""
    candidates = [os.path.join(TASK_DIR, backend, name + ".yaml")] if backend else []
    if backend != "isaacgym":
        candidates.append(os.path.join(TASK_DIR, name + ".yaml"))
    return next((p for p in candidates if os.path.exists(p)), None)
