"""The vectorised-environment contract and one adapter per simulator backend.

`make(task, num_envs, device, seed, backend, **overrides)` returns a batched env with

    reset() -> obs                                       (num_envs, obs_dim) float32 tensor
    step(action) -> next_obs, reward, terminated, truncated, info

All tensors live on `device`. Actions are in [-1, 1] (clamped) and scaled linearly to the task's
native range; `reward` is the task's own, unscaled. Envs auto-reset inside `step`: where an episode
ended (terminated or truncated), `next_obs` is already the first observation of the next episode and
`info["final_obs"]` holds the true last observation (rows of envs that did not end equal `next_obs`).
`info["valid"]` (bool, optional) marks transitions that may be learned from; a backend whose resets
are deferred (Isaac Gym) sets it False on the step that spans two episodes. A simulator that keeps its
own episode accounting reports it as `info["episode_return"]` / `info["episode_length"]` (valid where
the episode ended this step); the trainer then logs those instead of summing rewards itself. Attributes:
`num_envs`, `obs_dim`, `act_dim`, `device`, `max_episode_steps`.

Privileged critic observations (asymmetric actor-critic). A backend whose critic sees more than the policy
(Isaac Lab's "critic" observation group, IsaacGymEnvs' `states`, a native task with `privileged_critic=1`) has
an int attribute `critic_obs_dim` > 0; absent or 0 means the critic sees the policy observation. It then
exposes the attribute `critic_obs`, a float32 (num_envs, critic_obs_dim) tensor on `device` matching the policy
observation most recently returned by reset() or step() (for an env that was just auto-reset: its new
episode's first), and step()'s info carries `info["final_critic_obs"]`, the true last critic observation of
every env (equal to `critic_obs` where nothing ended), exactly as `info["final_obs"]` does for the policy (with
deferred resets both are the terminal observation of an env that ended). The trainer stores both observations
in the replay, normalises each with its own running statistics, feeds the critic (and its target) the critic's
and the actor the policy's.
"""

import importlib

from pql_scaling.tasks import NATIVE_TASKS

# backend name -> module with `TASKS` (names it serves) and `make_env(task, num_envs, device, seed, **kw)`.
BACKENDS = {
    "native": "pql_scaling.envs.native",
    "mujoco": "pql_scaling.envs.mujoco_backend",
    "mjwarp": "pql_scaling.envs.mjwarp_backend",
    "isaacgym": "pql_scaling.envs.isaacgym_backend",
    # Isaac Lab 3.0 (Python 3.12): ids Isaac-*-v0, registered by isaaclab_tasks
    "isaaclab": "pql_scaling.envs.isaaclab_backend",
    # any registered Gymnasium id (its TASKS is the live registry; resolved last, after the named tasks above)
    "gymnasium": "pql_scaling.envs.gymnasium_backend",
}


def _backend_tasks(backend):
    if backend == "native":
        return sorted(NATIVE_TASKS)
    module = importlib.import_module(BACKENDS[backend])
    return sorted(module.TASKS)


def default_backend(task):
    if task in NATIVE_TASKS:
        return "native"
    if isinstance(task, str) and task.startswith("Isaac-"):  # Isaac Lab's ids (its import may be missing)
        return "isaaclab"
    for backend in BACKENDS:
        if backend == "native":
            continue
        try:
            if task in importlib.import_module(BACKENDS[backend]).TASKS:
                return backend
        except ImportError:
            continue
    return None


def make(task, num_envs, device="cpu", seed=0, backend=None, **overrides):
    if backend is not None and backend not in BACKENDS:
        raise ValueError("unknown backend %r; valid backends: %s" % (backend, ", ".join(sorted(BACKENDS))))
    backend = backend or default_backend(task)
    if backend is None:
        raise ValueError(
            "unknown task %r; valid tasks: %s, or any registered Gymnasium id (backend=gymnasium)"
            % (task, ", ".join(all_tasks()))
        )
    if backend == "native":
        if task not in NATIVE_TASKS:
            raise ValueError(
                "unknown task %r for backend 'native'; valid tasks: %s"
                % (task, ", ".join(sorted(NATIVE_TASKS)))
            )
        from pql_scaling.envs.native import NativeVecEnv

        return NativeVecEnv(task, num_envs, device=device, seed=seed, **overrides)
    module = importlib.import_module(
        BACKENDS[backend]
    )  # raises with install advice if the simulator is missing
    if task not in module.TASKS:
        if hasattr(module, "unknown_task_error"):  # a backend whose tasks are too many to list
            raise module.unknown_task_error(task)
        raise ValueError(
            "unknown task %r for backend %r; valid tasks: %s"
            % (task, backend, ", ".join(sorted(module.TASKS)))
        )
    return module.make_env(task, num_envs, device=device, seed=seed, **overrides)


def all_tasks():
    """The tasks of every installed backend, except Gymnasium's registry (any registered id is a task there)."""
    names = set(NATIVE_TASKS)
    for backend in BACKENDS:
        if backend == "gymnasium":
            continue
        try:
            names.update(_backend_tasks(backend))
        except ImportError:
            pass
    return sorted(names)
