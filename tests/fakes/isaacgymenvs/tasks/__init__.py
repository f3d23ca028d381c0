"""Task registry of the stand-in: every task is the point mass, with the documented sizes."""
import copy

from isaacgymenvs.tasks.point_mass import PointMassResetInPost, PointMassTask

# name: (num_obs, num_actions, default numEnvs, episodeLength), from the documented standard sizes
SIZES = {
    "Ant": (60, 8, 4096, 1000),
    "Humanoid": (108, 21, 4096, 1000),
    "Anymal": (48, 12, 4096, 1000),
    "BallBalance": (24, 3, 4096, 500),
    "AllegroHand": (88, 16, 16384, 600),
    "ShadowHand": (211, 20, 16384, 600),
    "FrankaCubeStack": (19, 7, 8192, 300),
    "Cartpole": (4, 1, 512, 500),
}

# where each task performs its resets (IsaacGymEnvs 1.5.1's task files; see point_mass.py)
RESETS_IN_POST = ("Ant", "Humanoid", "Anymal", "FrankaCubeStack", "Cartpole")
isaacgym_task_map = {name: PointMassResetInPost if name in RESETS_IN_POST else PointMassTask for name in SIZES}


def task_config(name):
    if name not in SIZES:
        raise KeyError("Could not find task %r" % name)  # hydra would fail to compose it
    num_obs, num_actions, num_envs, length = SIZES[name]
    return copy.deepcopy({"name": name, "env": {"numEnvs": num_envs, "numObservations": num_obs,
                                                "numActions": num_actions, "numStates": 0, "episodeLength": length,
                                                "clipActions": 1.0, "clipObservations": 5.0}})
