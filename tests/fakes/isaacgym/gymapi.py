"""Stand-in for `isaacgym.gymapi`: just enough surface for the adapter and the fake tasks."""

SIM_PHYSX = 1


class Gym:
    def __init__(self):
        self.sims_created = 0

    def create_sim(self, compute_device, graphics_device, physics_engine, sim_params):
        self.sims_created += 1
        return {"id": self.sims_created, "compute_device": compute_device, "state": {}}


_GYM = Gym()


def acquire_gym():
    return _GYM
