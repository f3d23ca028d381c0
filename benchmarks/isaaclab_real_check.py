"""backend=isaaclab against the REAL Isaac Lab 3.0.0 (kit-less: Newton physics with MuJoCo Warp, no Isaac Sim),
stepped on the CPU through the repository's own adapter (envs/isaaclab_backend.py).

Run it with a Python 3.12 environment that has isaaclab 3.0.0 and the part of its dependencies kit-less mode
imports. What ran on a 2-core CPU machine without a GPU (PyPI's torch 2.11.0 is the CUDA 13 build; with its NVIDIA
libraries installed it imports and runs on a CPU, and download.pytorch.org's CPU build was not needed):

    python3.12 -m venv venv
    venv/bin/pip install torch==2.11.0
    venv/bin/pip install --no-deps isaaclab==3.0.0            # or the wheel file
    venv/bin/pip install warp-lang==1.17.0 "newton[sim]==1.6.1" usd-exchange==3.0.1 newton-usd-schemas
    venv/bin/pip install omniverseclient==2.74.0 "gymnasium>=1.2.0" hydra-core prettytable psutil
    venv/bin/pip install "trimesh>=4.6.8" lazy_loader einops packaging rich tqdm scipy pyyaml

Then:

    /path/to/venv/bin/python benchmarks/isaaclab_real_check.py [--envs 16] [--steps 300] [--train-s 540]

Isaac Lab's tasks load their robots from NVIDIA's asset server (an S3 bucket, the kit file's
persistent.isaac.asset_root). Where that is unreachable, the Cartpole tasks are run on a stand-in robot written
here (CARTPOLE_USDA: a rail fixed to the world, a cart on the prismatic joint `slider_to_cart`, a pole on the
revolute joint `cart_to_pole`, the joint names the tasks look up; masses and sizes of the usual cartpole) with
the ground plane (also a server asset) left out: the task's code, Isaac Lab's env classes and Newton/MuJoCo Warp
are the real ones, only the robot's model is ours. Tasks whose assets cannot be fetched are recorded with the
refused address.

One Isaac Lab env per process, so every task runs in a child process (`--worker`); the parent writes
benchmarks/results/isaaclab_real_check.json: machine facts, package versions, and per task the env's facts,
steps/s and every check's result.

Checks, per task (random actions about a per-env push in [-1, 1], up to 2 beyond the action bounds; `--steps`
steps; the episode shortened to `--episode-s` seconds so that episodes time out within the run):
- obs: float32 (num_envs, obs_dim) on the run's device, finite; reward float32 (num_envs,), finite;
  terminated / truncated bool and never both set;
- time limit: every truncation comes exactly when an episode reaches max_episode_steps (counted per env) and
  no episode outlives it; terminations happen only where the task's own condition holds (Cartpole:
  |cart position| > max_cart_pos in the true last observation);
- final observation (compute_final_obs): for every env that ended, info["final_obs"] is the observation the env
  computed just before its reset (captured by wrapping the env's reset), not the returned next episode's first
  one, and it continues the previous step's observation (no jump); where nothing ended it equals next_obs;
- critic group: critic_obs and info["final_critic_obs"] when the task has one (none of the Cartpole tasks does);
- physics: physics=newton_mjwarp gives the task's own preset (the solver settings its config tunes);
- a second env in the same process after close() (Isaac Lab clears its SimulationContext on close), and the
  repository's own contract checker (tests/contract_check.py: check_contract, wild actions) on a third.

`--train-s S`: then a sync training run through the trainer (`python -m pql_scaling.cli train`) on
Isaac-Cartpole-Direct for S seconds on the CPU; its status and return curve go to the JSON's "training".
"""

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

OUT = os.path.join(ROOT, "benchmarks", "results", "isaaclab_real_check.json")

# A cartpole of our own (USD Physics schemas): the joint names are the ones Isaac Lab's Cartpole tasks use.
CARTPOLE_USDA = """#usda 1.0
(
    defaultPrim = "cartpole"
    metersPerUnit = 1
    kilogramsPerUnit = 1
    upAxis = "Z"
)

def Xform "cartpole" (
    prepend apiSchemas = ["PhysicsArticulationRootAPI"]
)
{
    def Xform "slider" (
        prepend apiSchemas = ["PhysicsRigidBodyAPI", "PhysicsMassAPI"]
    )
    {
        float physics:mass = 1
        float3 physics:diagonalInertia = (0.01, 0.01, 0.01)
        def Cube "geom"
        {
            double size = 1
            float3 xformOp:scale = (8, 0.03, 0.03)
            uniform token[] xformOpOrder = ["xformOp:scale"]
        }
    }

    def Xform "cart" (
        prepend apiSchemas = ["PhysicsRigidBodyAPI", "PhysicsMassAPI"]
    )
    {
        float physics:mass = 1
        float3 physics:diagonalInertia = (0.0085, 0.0067, 0.0085)
        def Cube "geom"
        {
            double size = 1
            float3 xformOp:scale = (0.2, 0.25, 0.2)
            uniform token[] xformOpOrder = ["xformOp:scale"]
        }
    }

    def Xform "pole" (
        prepend apiSchemas = ["PhysicsRigidBodyAPI", "PhysicsMassAPI"]
    )
    {
        double3 xformOp:translate = (0, 0, 0.5)
        uniform token[] xformOpOrder = ["xformOp:translate"]
        float physics:mass = 1
        float3 physics:diagonalInertia = (0.0836, 0.0836, 0.0004)
        def Cube "geom"
        {
            double size = 1
            float3 xformOp:scale = (0.04, 0.06, 1)
            uniform token[] xformOpOrder = ["xformOp:scale"]
        }
    }

    def PhysicsFixedJoint "root_joint"
    {
        rel physics:body1 = </cartpole/slider>
    }

    def PhysicsPrismaticJoint "slider_to_cart"
    {
        rel physics:body0 = </cartpole/slider>
        rel physics:body1 = </cartpole/cart>
        uniform token physics:axis = "X"
        float physics:lowerLimit = -4
        float physics:upperLimit = 4
    }

    def PhysicsRevoluteJoint "cart_to_pole"
    {
        rel physics:body0 = </cartpole/cart>
        rel physics:body1 = </cartpole/pole>
        uniform token physics:axis = "Y"
        point3f physics:localPos0 = (0, 0, 0)
        point3f physics:localPos1 = (0, 0, -0.5)
    }
}
"""

# task -> the scene attribute of its robot where the stand-in cartpole can replace it (None: no stand-in).
# "Isaac-Cartpole+critic": the manager-based Cartpole with a "critic" observation group added here (its terms left
# unconcatenated, a dict: the relative joint positions and velocities and the last action), since no task that
# runs offline has one.
TASKS = {
    "Isaac-Cartpole-Direct": "cartpole",
    "Isaac-Cartpole": "robot",
    "Isaac-Cartpole+critic": "robot",
    "Isaac-Velocity-Flat-AnymalD": None,
    "Isaac-Reorient-Cube-Allegro-Direct": None,
}


def versions():
    from importlib import metadata

    out = {}
    for name in (
        "isaaclab",
        "warp-lang",
        "newton",
        "mujoco",
        "mujoco-warp",
        "torch",
        "gymnasium",
        "usd-exchange",
    ):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def asset_server_reachable(url, timeout=10.0):
    """Whether Isaac Lab's asset server answers (an unresolvable host or refused connection: False, the error)."""
    import urllib.request

    try:
        urllib.request.urlopen(url, timeout=timeout).close()
        return True, None
    except Exception as exc:  # noqa: BLE001 - any failure means the asset cannot be fetched
        return False, "%s: %s" % (type(exc).__name__, exc)


# -- the worker: one task in this process ----------------------------------------------------------------------


def _capture_true_last(env):
    """Wrap the env's per-env reset so that the observation computed just before it is kept (the reference the
    adapter's final_obs must equal). Direct envs: _reset_idx after _compute_observations; manager-based: the
    observation manager's compute() (the Cartpole task's policy group has no noise and no history)."""
    import torch

    sim = env.unwrapped
    captured = {}
    original = sim._reset_idx

    def compute():
        if hasattr(sim, "observation_manager"):
            return sim.observation_manager.compute()
        return sim._compute_observations()

    def clone(v):
        return v.clone() if torch.is_tensor(v) else {k: clone(x) for k, x in v.items()}

    def recording_reset(env_ids, *args, **kwargs):
        captured["obs"] = {k: clone(v) for k, v in compute().items()}
        return original(env_ids, *args, **kwargs)

    sim._reset_idx = recording_reset
    return captured, original


def _add_critic_group():
    """Make isaaclab_tasks.utils.parse_env_cfg (which the adapter calls) add an unconcatenated "critic" group."""
    import isaaclab.envs.mdp as mdp
    import isaaclab_tasks.utils as task_utils
    from isaaclab.managers import ObservationGroupCfg, ObservationTermCfg
    from isaaclab.utils import configclass

    @configclass
    class CriticCfg(ObservationGroupCfg):
        joint_pos_rel = ObservationTermCfg(func=mdp.joint_pos_rel)
        joint_vel_rel = ObservationTermCfg(func=mdp.joint_vel_rel)
        last_action = ObservationTermCfg(func=mdp.last_action)

        def __post_init__(self):
            self.enable_corruption = False
            self.concatenate_terms = False

    parse = task_utils.parse_env_cfg

    @functools.wraps(parse)  # keeps its signature (the adapter looks for `overrides` there)
    def parse_with_critic(*args, **kwargs):
        cfg = parse(*args, **kwargs)
        cfg.observations.critic = CriticCfg()
        return cfg

    task_utils.parse_env_cfg = parse_with_critic


def worker(task, num_envs, steps, episode_s, device, seed, asset_path):
    import torch

    from pql_scaling import envs
    from pql_scaling.envs import isaaclab_backend as lab

    result = {"task": task, "num_envs": num_envs, "device": device, "seed": seed, "checks": {}}
    overrides = {"episode_length_s": float(episode_s)}
    robot = TASKS.get(task)
    if task.endswith("+critic"):
        _add_critic_group()
        task = task[: -len("+critic")]
    if asset_path and robot:
        # the ground plane is a server asset too; the cart rides a rail fixed to the world
        overrides["scene.ground"] = None
        overrides["scene.%s.spawn.usd_path" % robot] = asset_path
        result["robot_model"] = "stand-in cartpole (this script's CARTPOLE_USDA), ground plane left out"
    elif robot:
        result["robot_model"] = "Isaac Lab's own asset (from the asset server)"
    t0 = time.time()
    try:
        env = envs.make(
            task,
            num_envs,
            backend="isaaclab",
            device=device,
            seed=seed,
            physics="newton_mjwarp",
            cfg_overrides=overrides,
        )
    except Exception as exc:  # noqa: BLE001 - recorded: what failed and where
        result["built"] = False
        result["error"] = "%s: %s" % (type(exc).__name__, str(exc)[:2000])
        result["traceback_tail"] = traceback.format_exc()[-3000:]
        return result
    result["built"] = True
    result["build_s"] = round(time.time() - t0, 2)
    sim = env.unwrapped
    physics = env.env_cfg.sim.physics
    solver = getattr(physics, "solver_cfg", None)
    result["env"] = {
        "class": type(sim).__name__,
        "workflow": "manager-based" if hasattr(sim, "observation_manager") else "direct",
        "obs_dim": env.obs_dim,
        "critic_obs_dim": env.critic_obs_dim,
        "act_dim": env.act_dim,
        "max_episode_length": int(sim.max_episode_length),
        "max_episode_steps": env.max_episode_steps,
        "step_dt": float(sim.step_dt),
        "physics": type(physics).__name__,
        "solver": type(solver).__name__ if solver is not None else None,
        "solver_njmax": getattr(solver, "njmax", None),
        "solver_nconmax": getattr(solver, "nconmax", None),
        "compute_final_obs": bool(getattr(env.env_cfg, "compute_final_obs", False)),
        "final_obs_provided": env.final_obs_provided,
        "obs_groups": sorted(sim.single_observation_space.spaces),
    }
    checks = result["checks"]
    fails = []

    def check(name, ok, detail=None):
        entry = checks.setdefault(name, {"ok": True, "failures": 0, "first_failure": None})
        if not ok:
            entry["ok"] = False
            entry["failures"] += 1
            if entry["first_failure"] is None:
                entry["first_failure"] = detail
                fails.append(name)

    # physics=newton_mjwarp keeps the task's own preset (its tuned solver), which is also these tasks' default
    from isaaclab_tasks.utils import parse_env_cfg

    default_solver = getattr(parse_env_cfg(task, device=device, num_envs=2).sim.physics, "solver_cfg", None)
    check("physics_is_the_tasks_own_newton_mjwarp_preset", repr(default_solver) == repr(solver), repr(solver))

    captured, original_reset = _capture_true_last(env)
    gen = torch.Generator().manual_seed(seed)
    obs = env.reset()
    n = env.num_envs
    check(
        "reset_obs_shape_dtype_device",
        obs.shape == (n, env.obs_dim) and obs.dtype == torch.float32 and obs.device == torch.device(device),
        str((tuple(obs.shape), obs.dtype, obs.device)),
    )
    if env.critic_obs_dim:
        check(
            "critic_obs_after_reset",
            env.critic_obs is not None
            and env.critic_obs.shape == (n, env.critic_obs_dim)
            and env.critic_obs.dtype == torch.float32,
        )
    else:
        check("no_critic_group_means_critic_obs_none", env.critic_obs is None)
    t_episode = torch.zeros(n, dtype=torch.long)
    counts = {"terminated": 0, "truncated": 0, "steps": 0}
    # random actions around a per-env push: the envs pushed hard leave the task's bounds (terminations), the
    # others time out
    push = torch.linspace(-1.0, 1.0, n)[:, None]
    returns, ep_return = [], torch.zeros(n)
    max_cart = getattr(env.env_cfg, "max_cart_pos", 3.0)
    prev = obs.clone()
    for t in range(steps):
        captured.clear()
        action = push + (torch.rand((n, env.act_dim), generator=gen) * 2 - 1)  # beyond [-1, 1]: clamped
        next_obs, reward, terminated, truncated, info = env.step(action)
        counts["steps"] += 1
        t_episode += 1
        check(
            "obs_shape_dtype_finite",
            next_obs.shape == (n, env.obs_dim)
            and next_obs.dtype == torch.float32
            and bool(torch.isfinite(next_obs).all()),
            t,
        )
        check(
            "reward_shape_dtype_finite",
            reward.shape == (n,) and reward.dtype == torch.float32 and bool(torch.isfinite(reward).all()),
            t,
        )
        check("flags_bool", terminated.dtype == torch.bool and truncated.dtype == torch.bool, t)
        check("terminated_and_truncated_disjoint", not bool((terminated & truncated).any()), t)
        done = terminated | truncated
        counts["terminated"] += int(terminated.sum())
        counts["truncated"] += int(truncated.sum())
        # the time limit: truncation exactly when an episode reaches max_episode_steps; none outlives it
        expected_trunc = (t_episode >= env.max_episode_steps) & ~terminated
        check(
            "truncated_exactly_at_time_limit",
            bool(torch.equal(truncated, expected_trunc)),
            {"step": t, "t_episode": t_episode[truncated != expected_trunc].tolist()},
        )
        check("no_episode_outlives_time_limit", bool((t_episode <= env.max_episode_steps).all()), t)
        final = info["final_obs"]
        check("final_obs_shape", final.shape == next_obs.shape, t)
        check(
            "final_obs_equals_next_obs_where_nothing_ended",
            bool(torch.equal(final[~done], next_obs[~done])),
            t,
        )
        check("no_invalid_transitions_with_final_obs", "valid" not in info or bool(info["valid"].all()), t)
        if done.any():
            check("reset_was_captured_when_envs_ended", "obs" in captured, t)
            if "obs" in captured:
                true_last = lab._flat(captured["obs"]["policy"]).to(device, torch.float32)
                check(
                    "final_obs_is_true_last_obs",
                    bool(torch.equal(final[done], true_last[done])),
                    {"step": t, "max_abs_diff": float((final[done] - true_last[done]).abs().max())},
                )
            check(
                "final_obs_is_not_the_reset_obs", bool((final[done] != next_obs[done]).any(dim=-1).all()), t
            )
            # continuity: an ended env's final obs is one step on from its previous observation, while the
            # returned observation (the next episode's first) need not be
            jump_final = (final[done] - prev[done]).abs().max().item()
            jump_next = (next_obs[done] - prev[done]).abs().max().item()
            checks.setdefault("continuity", {"max_jump_final_obs": 0.0, "max_jump_next_obs": 0.0})
            c = checks["continuity"]
            c["max_jump_final_obs"] = max(c["max_jump_final_obs"], round(jump_final, 4))
            c["max_jump_next_obs"] = max(c["max_jump_next_obs"], round(jump_next, 4))
            if task.startswith("Isaac-Cartpole") and terminated.any():
                # the task's termination: |cart position| > max_cart_pos, seen in the true last observation
                cart = final[terminated][:, 0].abs()
                check(
                    "terminated_final_obs_meets_termination_condition",
                    bool((cart > max_cart).all()),
                    cart.tolist(),
                )
                check(
                    "reset_obs_inside_bounds", bool((next_obs[terminated][:, 0].abs() <= max_cart).all()), t
                )
        if env.critic_obs_dim:
            fc = info["final_critic_obs"]
            check(
                "final_critic_obs_equals_critic_obs_where_nothing_ended",
                bool(torch.equal(fc[~done], env.critic_obs[~done])),
                t,
            )
            if done.any() and "obs" in captured and "critic" in captured["obs"]:
                tl = lab._flat(captured["obs"]["critic"]).to(device, torch.float32)
                check("final_critic_obs_is_true_last", bool(torch.equal(fc[done], tl[done])), t)
        ep_return += reward
        returns.extend(ep_return[done].tolist())
        ep_return[done] = 0.0
        t_episode[done] = 0
        prev = next_obs.clone()
    check("some_episode_truncated", counts["truncated"] > 0, counts)
    check("some_episode_terminated", counts["terminated"] > 0, counts)
    result["counts"] = counts
    result["episodes_ended"] = len(returns)
    result["mean_return_random_policy"] = round(sum(returns) / max(len(returns), 1), 4)
    # throughput, the capture wrapper removed
    env.unwrapped._reset_idx = original_reset
    a = torch.zeros((n, env.act_dim))
    for _ in range(5):
        env.step(a)
    t0 = time.perf_counter()
    timed = max(50, steps // 2)
    for _ in range(timed):
        env.step(torch.rand((n, env.act_dim), generator=gen) * 2 - 1)
    dt = time.perf_counter() - t0
    result["throughput"] = {
        "steps": timed,
        "seconds": round(dt, 3),
        "env_steps_per_s": round(timed * n / dt, 1),
        "batched_steps_per_s": round(timed / dt, 1),
    }
    # Isaac Lab clears its SimulationContext on close(): may this process build another env?
    env.close()
    lab._CREATED.clear()  # our adapter's own guard; Isaac Lab's is what is checked here
    try:
        env2 = envs.make(
            task,
            2,
            backend="isaaclab",
            device=device,
            seed=seed + 1,
            physics="newton_mjwarp",
            cfg_overrides=overrides,
        )
        env2.reset()
        env2.step(torch.zeros((2, env2.act_dim)))
        result["second_env_after_close"] = "built and stepped"
        env2.close()
    except Exception as exc:  # noqa: BLE001
        result["second_env_after_close"] = "%s: %s" % (type(exc).__name__, str(exc)[:500])
    # the repository's own contract checker (tests/contract_check.py), on a fresh env of this task
    lab._CREATED.clear()
    try:
        from tests.contract_check import check_contract

        env3 = envs.make(
            task,
            8,
            backend="isaaclab",
            device=device,
            seed=seed + 2,
            physics="newton_mjwarp",
            cfg_overrides=overrides,
        )
        check_contract(env3, wild=True)
        check("tests_contract_check_passes", True)
    except Exception as exc:  # noqa: BLE001
        check("tests_contract_check_passes", False, "%s: %s" % (type(exc).__name__, str(exc)[:500]))
    result["failed_checks"] = fails
    result["ok"] = not fails
    return result


# -- a short training run through the trainer ----------------------------------------------------------------


def train(asset, seconds, num_envs, seed, run_dir):
    """`pql-scale train` (python -m pql_scaling.cli) on Isaac-Cartpole-Direct, sync mode, CPU: the task's defaults
    (tasks/isaaclab/Isaac-Cartpole-Direct.yaml: C51 on [-10, 10], gamma 0.99) at a CPU's scale. Returns the run's
    status and its return curve (metrics.jsonl rows)."""
    env_kwargs = "{physics: newton_mjwarp%s}" % (
        ", cfg_overrides: {scene.ground: null, scene.cartpole.spawn.usd_path: %s}" % asset if asset else ""
    )
    args = [
        "task=Isaac-Cartpole-Direct",
        "backend=isaaclab",
        "mode=sync",
        "device=cpu",
        "num_envs=%d" % num_envs,
        "max_env_steps=10000000",
        "max_time_s=%d" % seconds,
        "algo.batch_size=1024",
        "net.actor_hidden=[128,128]",
        "net.critic_hidden=[128,128]",
        "algo.critic_updates_per_step=4",
        "log.every_steps=50",
        "log.live=plain",
        "threads=1",
        "seed=%d" % seed,
        "env_kwargs=" + env_kwargs,
        "run_dir=" + run_dir,
    ]
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "pql_scaling.cli", "train"] + args,
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])),
    )
    out = {"args": args, "returncode": proc.returncode, "wall_s": round(time.time() - t0, 1)}
    try:
        with open(os.path.join(run_dir, "status.json")) as f:
            out["status"] = json.load(f).get("status")
        keys = ("env_steps", "wall_time_s", "return_mean", "episodes", "episode_length", "critic_updates")
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        out["curve"] = [{k: r.get(k) for k in keys} for r in rows]
        returns = [r["return_mean"] for r in rows if r.get("return_mean") is not None]
        if returns:
            k = max(1, len(returns) // 10)
            out["return_first_tenth"] = round(sum(returns[:k]) / k, 4)
            out["return_last_tenth"] = round(sum(returns[-k:]) / k, 4)
            out["return_best"] = round(max(returns), 4)
        out["env_steps"] = rows[-1]["env_steps"] if rows else 0
        out["env_steps_per_s"] = rows[-1].get("env_steps_per_s") if rows else None
    except (OSError, ValueError, KeyError) as exc:
        out["error"] = "%s: %s" % (type(exc).__name__, exc)
        out["stderr_tail"] = proc.stderr[-3000:]
    return out


# -- the parent ----------------------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--envs", type=int, default=16)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--episode-s", type=float, default=1.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=OUT)
    p.add_argument(
        "--train-s", type=int, default=0, help="also train on Isaac-Cartpole-Direct for this many seconds"
    )
    p.add_argument("--train-envs", type=int, default=64)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--asset", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        res = worker(args.worker, args.envs, args.steps, args.episode_s, args.device, args.seed, args.asset)
        print("RESULT " + json.dumps(res))
        return 0 if res.get("ok", False) or not res.get("built", True) else 1

    from isaaclab.utils import assets

    server = assets.ISAACLAB_NUCLEUS_DIR
    probe = server + "/Robots/Classic/Cartpole/cartpole.usd"
    reachable, why = asset_server_reachable(probe)
    asset = None
    if not reachable:
        asset = os.path.join(tempfile.mkdtemp(prefix="isaaclab_check_"), "cartpole.usda")
        with open(asset, "w") as f:
            f.write(CARTPOLE_USDA)
    out = {
        "what": "backend=isaaclab (envs/isaaclab_backend.py) against the real Isaac Lab, kit-less, on "
        + args.device,
        "versions": versions(),
        "python": platform.python_version(),
        "asset_server": {"probe": probe, "reachable": reachable, "error": why},
        "settings": {
            "num_envs": args.envs,
            "steps": args.steps,
            "episode_length_s": args.episode_s,
            "seed": args.seed,
            "physics": "newton_mjwarp",
        },
        "tasks": {},
    }
    for task in [t for t in args.tasks.split(",") if t]:
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            task,
            "--envs",
            str(args.envs),
            "--steps",
            str(args.steps),
            "--episode-s",
            str(args.episode_s),
            "--device",
            args.device,
            "--seed",
            str(args.seed),
        ]
        if asset:
            cmd += ["--asset", asset]
        t0 = time.time()
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])),
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if lines:
            res = json.loads(lines[-1][len("RESULT ") :])
        else:
            res = {
                "task": task,
                "built": False,
                "error": "worker exited %d" % proc.returncode,
                "stderr_tail": proc.stderr[-3000:],
            }
        res["wall_s"] = round(time.time() - t0, 1)
        out["tasks"][task] = res
        status = (
            "ok"
            if res.get("ok")
            else (
                "FAILED " + ",".join(res.get("failed_checks", []))
                if res.get("built")
                else "not built: " + res.get("error", "")[:300]
            )
        )
        print("%-40s %s" % (task, status), flush=True)
    if args.train_s > 0:
        run_dir = tempfile.mkdtemp(prefix="isaaclab_check_train_")
        out["training"] = train(asset, args.train_s, args.train_envs, args.seed, run_dir)
        t = out["training"]
        print(
            "training: %s, %s env steps, return %s -> %s (best %s)"
            % (
                t.get("status"),
                t.get("env_steps"),
                t.get("return_first_tenth"),
                t.get("return_last_tenth"),
                t.get("return_best"),
            ),
            flush=True,
        )
    from benchmarks.common import save

    save(args.out, out)
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
