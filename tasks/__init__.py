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

    Isaac Gym tasks keep theirs in tasks/isaacgym/: IsaacGymEnvs' Ant and Humanoid are other MDPs than
    the MJCF tasks of the same name."""
    folder = os.path.join(TASK_DIR, "isaacgym") if backend == "isaacgym" else TASK_DIR
    path = os.path.join(folder, name + ".yaml")
    return path if os.path.exists(path) else None
