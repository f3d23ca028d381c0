"""Per-task YAML defaults: valid configs, one per MJCF task for the CPU backend and one for the GPU backend,
Isaac Gym ones apart (name clash); native tasks get a CPU set and a GPU set picked by `device`, and each
documents its solved return."""

import glob
import json
import os

import pytest
import yaml

from pql_scaling import config, tasks
from pql_scaling.runtime.train import train
from pql_scaling.tasks.mjcf import MJCF_TASKS
from tests.runs import rows, status

FILES = sorted(
    glob.glob(os.path.join(tasks.TASK_DIR, "*.yaml")) + glob.glob(os.path.join(tasks.TASK_DIR, "*", "*.yaml"))
)


def isaacgym_defaults_path(name):
    return tasks.defaults_path(name, backend="isaacgym")


@pytest.mark.parametrize("path", FILES, ids=[os.path.relpath(f, tasks.TASK_DIR) for f in FILES])
def test_every_task_yaml_is_a_valid_config(path):
    """Each YAML resolves through the config schema (known keys, right types, valid ranges)."""
    name = os.path.basename(path)[: -len(".yaml")]
    folder = os.path.basename(os.path.dirname(path))
    backend = folder if folder in ("isaacgym", "isaaclab", "mjwarp", "gymnasium") else None
    device = "cuda" if folder == "gpu" else "cpu"
    cfg = config.load(["task=" + name, "device=" + device] + (["backend=" + backend] if backend else []))
    assert (
        tasks.defaults_path(name, backend, device) == path
    )  # the file this backend and device actually read
    d = yaml.safe_load(open(path))
    assert cfg.num_envs == d["num_envs"] and cfg.max_time_s == d["max_time_s"]
    if backend == "gymnasium":  # Gymnasium's envs step on the CPU: CPU-sized defaults
        assert cfg.num_envs <= 64
    elif backend or device == "cuda":  # the GPU simulators and native tasks on a GPU get PQL's defaults
        assert d["num_envs"] == 4096 and d["max_time_s"] > 0
    elif name in MJCF_TASKS:  # backend=mujoco runs on the CPU: few envs, a learner that keeps up
        assert cfg.num_envs <= 64 and cfg.algo.critic_updates_per_step / cfg.num_envs >= 0.1


def test_every_task_has_defaults_and_pql_reward_scales():
    for name in MJCF_TASKS:
        assert tasks.defaults_path(name) and tasks.defaults_path(name, "mujoco") == tasks.defaults_path(name)
        assert tasks.defaults_path(name, "mjwarp") != tasks.defaults_path(name)
    for name in ["Ant", "Humanoid", "ShadowHand", "AllegroHand", "FrankaCubeStack", "Anymal"]:
        path = isaacgym_defaults_path(name)
        assert path and path != tasks.defaults_path(name)
        scale = (yaml.safe_load(open(path)).get("algo") or {}).get("reward_scale", 1.0)
        assert scale == (0.01 if name in ("Ant", "Humanoid", "ShadowHand", "AllegroHand") else 1.0)
    assert yaml.safe_load(open(tasks.defaults_path("HalfCheetah")))["r_max"] == 9800


# the bytes one replay row takes: obs, next_obs, action, reward, discount/terminal and done (float32)
def replay_mb(cfg, task_cls):
    return cfg.algo.buffer_size * (2 * task_cls.obs_dim + task_cls.act_dim + 3) * 4 / 2**20


@pytest.mark.parametrize("name", sorted(tasks.NATIVE_TASKS))
def test_native_task_has_cpu_and_gpu_defaults_and_a_solved_return(name):
    cls = tasks.load_native(name)
    cpu, gpu = tasks.defaults_path(name), tasks.defaults_path(name, device="cuda:1")
    assert cpu == os.path.join(tasks.TASK_DIR, name + ".yaml") and gpu == os.path.join(
        tasks.TASK_DIR, "gpu", name + ".yaml"
    )
    assert tasks.defaults_path(name, "native", "cuda") == gpu and tasks.defaults_path(name, "native") == cpu
    assert tasks.display_path(gpu) == "tasks/gpu/%s.yaml" % name
    c = config.load(["task=" + name])
    g = config.load(["task=" + name, "device=cuda"])
    assert config.defaults_for([("task", name), ("device", "cuda")]) == gpu
    # CPU: a learner that keeps up on 2 cores and a replay well under the 1 GB budget; GPU: PQL's scale
    assert (
        c.num_envs <= 256 and max(c.net.critic_hidden) <= 256 and c.threads == 1 and replay_mb(c, cls) < 200
    )
    assert g.num_envs >= 4096 and g.algo.batch_size >= 4096 and g.num_envs > 16 * c.num_envs
    assert config.load(["task=" + name, "device=cuda", "num_envs=7"]).num_envs == 7  # overrides still win
    # the solved return: a number inside what the task can pay, read from the class by benchmarks and studies
    solved = tasks.solved_return(name)
    assert solved == cls.solved_return and cls.solved_source
    if c.r_max is not None:
        assert solved < c.r_max
    assert tasks.solved_return("HalfCheetah") is None


TINY = [
    "task=mountaincar",
    "mode=sync",
    "num_envs=4",
    "algo.batch_size=32",
    "net.actor_hidden=[16]",
    "net.critic_hidden=[16]",
    "log.every_steps=5",
    "log.live=off",
]


def test_run_records_its_defaults_and_start_up(tmp_path):
    """run.json names the YAML the run read; the first metrics row and run.json carry startup_s (reported
    apart: the training clock, wall_time_s and max_time_s, starts at the first actor step)."""
    d = train(TINY + ["max_env_steps=200", "run_dir=%s" % (tmp_path / "r")], quiet=True)
    facts = json.load(open(os.path.join(d, "run.json")))
    assert facts["defaults"] == "tasks/mountaincar.yaml" and facts["device"] == "cpu"
    assert facts["clock_starts_at"] == "the first actor step"
    m = rows(d)
    assert m[0]["startup_s"] == facts["startup_s"] > 0 and all("startup_s" not in r for r in m[1:])
    assert yaml.safe_load(open(os.path.join(d, "config.yaml")))["num_envs"] == 4


def test_a_time_budget_is_training_time(tmp_path):
    """max_time_s stops the run at the first actor step past it, counted from the first actor step: a
    tiny budget still trains one step and logs it (start-up never eats the budget)."""
    d = train(TINY + ["max_env_steps=null", "max_time_s=1e-6", "run_dir=%s" % (tmp_path / "r")], quiet=True)
    assert status(d)["status"] == "completed" and status(d)["reason"] == "max_time_s"
    m = rows(d)
    assert m[-1]["actor_steps"] >= 1 and m[-1]["wall_time_s"] >= 1e-6 and m[0]["startup_s"] > 0


def test_correlated_exploration_noise_is_ar1_with_the_configured_std():
    """algo.noise_corr=rho makes each env's noise AR(1): same std as white noise, lag-1 correlation rho;
    on mountaincar (a zero policy) it reaches the goal where white noise of the same std almost never does."""
    import torch

    from pql_scaling import envs
    from pql_scaling.core.replay import Normalizer
    from pql_scaling.runtime.actor import ActorRole

    def goal_rate(rho, steps=400, n=128):
        cfg = config.load(
            [
                "task=mountaincar",
                "num_envs=%d" % n,
                "algo.warmup_steps=0",
                "algo.noise_std_min=1.0",
                "algo.noise_std_max=1.0",
                "algo.noise_corr=%r" % rho,
            ]
        )
        torch.manual_seed(0)
        env = envs.make("mountaincar", n, seed=0)
        actor = ActorRole(cfg, env, None, Normalizer(2, "cpu", enabled=False), "cpu")
        zero = lambda obs: torch.zeros(obs.shape[0], 1)
        noise, reached = [], torch.zeros(n, dtype=torch.bool)
        for _ in range(steps):
            a = actor.act(zero, actor.obs)
            noise.append(actor.noise.clone() if rho else a)
            actor.obs, _, term, _, _ = env.step(a)
            reached |= term
        x = torch.cat(noise[50:], 1)  # (n, T): past the start-up transient
        lag1 = ((x[:, 1:] * x[:, :-1]).mean() / (x * x).mean()).item()
        return reached.float().mean().item(), x.std().item(), lag1

    rate, std, lag1 = goal_rate(0.9)
    assert abs(std - 1.0) < 0.1 and abs(lag1 - 0.9) < 0.03
    white, _, _ = goal_rate(0.0)
    assert rate > 0.3 and white < 0.05
    with pytest.raises(config.ConfigError, match="noise_corr"):
        config.load(["algo.noise_corr=1.0"])
