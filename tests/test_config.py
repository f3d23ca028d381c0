import os

import pytest

from pql_scaling import config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_task_yaml_and_overrides_resolve():
    cfg = config.load(["task=pendulum", "algo=sac", "algo.batch_size=512", "net.critic_hidden=[32,32]"])
    assert cfg.algo.name == "sac" and cfg.algo.batch_size == 512 and list(cfg.net.critic_hidden) == [32, 32]


@pytest.mark.parametrize(
    "arg, expect",
    [
        ("algo.batchsize=3", "did you mean: algo.batch_size"),
        ("num_env=3", "did you mean: num_envs"),
        ("batch_size=3", "algo.batch_size"),  # right leaf, wrong group
    ],
)
def test_unknown_key_names_closest_valid_keys(arg, expect):
    with pytest.raises(config.ConfigError, match=expect):
        config.load([arg])


@pytest.mark.parametrize(
    "arg, expect",
    [
        ("num_envs=abc", "num_envs"),
        ("algo.gamma=1.5", "algo.gamma"),
        ("algo.batch_size=0", "algo.batch_size"),
        ("mode=fast", "sync, trio"),
        ("net.critic_hidden=[]", "net.critic_hidden"),
        ("algo.noise_std_min=0.9", "noise_std_min"),
        ("noequals", "key=value"),
    ],
)
def test_bad_values_fail_before_anything_runs(arg, expect):
    with pytest.raises(config.ConfigError, match=expect):
        config.load([arg])


def test_every_key_is_listed():
    keys = config.all_keys()
    for k in (
        "task",
        "backend",
        "mode",
        "seed",
        "device",
        "num_envs",
        "max_env_steps",
        "max_time_s",
        "run_dir",
        "algo.critic_updates_per_step",
        "algo.policy_updates_per_critic_update",
        "algo.batch_size",
        "algo.critic_lr",
        "algo.actor_lr",
        "net.critic_hidden",
        "wandb.mode",
    ):
        assert k in keys


@pytest.mark.parametrize(
    "arg, expect",
    [
        (
            "env_kwargs={gg: 1}",
            r"env_kwargs.gg: native task 'pendulum' has no parameter 'gg'; did you mean: g",
        ),
        ("env_kwargs.g=fast", r"env_kwargs.g='fast' must be a finite number \(pendulum's default: 10.0\)"),
        ("env_kwargs={max_episode_steps: 2.5}", r"env_kwargs.max_episode_steps=2.5 must be a whole number"),
        ("env_kwargs={obs_dim: 4}", r"env_kwargs.obs_dim: native task 'pendulum' has no parameter"),
        ("env_kwargs=5", r"bad value 5 for env_kwargs"),
        ("gymnasium.vectorization=async", r"gymnasium.vectorization=async applies to backend=gymnasium only"),
        ("gymnasium.autoreset=later", r"gymnasium.autoreset='later' is not one of"),
    ],
)
def test_env_keys_are_checked_against_the_backend(arg, expect):
    with pytest.raises(config.ConfigError, match=expect):
        config.load(["task=pendulum", arg])


@pytest.mark.parametrize(
    "args, expect",
    [
        (
            ["backend=mujoco", "env_kwargs={forward_reward_weigth: 2}"],
            r"env_kwargs.forward_reward_weigth: backend=mujoco takes .*did you mean: forward_reward_weight",
        ),
        (
            ["backend=mujoco", "env_kwargs.ctrl_cost_weight=high"],
            r"ctrl_cost_weight='high' must be a finite number",
        ),
        (
            ["backend=mujoco", "env_kwargs.exclude_current_positions_from_observation=1"],
            r"must be true or false \(HalfCheetah's default: True\)",
        ),
        (["backend=mujoco", "env_kwargs.nthread=0"], r"env_kwargs.nthread=0 must be a whole number >= 1"),
        (["backend=mjwarp", "env_kwargs.nthread=2"], r"env_kwargs.nthread: backend=mjwarp takes"),
    ],
)
def test_mjcf_env_kwargs_are_checked_before_anything_runs(args, expect):
    with pytest.raises(config.ConfigError, match=expect):
        config.load(["task=HalfCheetah"] + args)
    ok = config.load(
        ["task=HalfCheetah", "backend=mujoco", "env_kwargs={forward_reward_weight: 2.0, nthread: 2}"]
    )
    assert dict(ok.env_kwargs) == {"forward_reward_weight": 2.0, "nthread": 2}


def test_the_backend_argument_lists_match_the_env_constructors():
    """env_spec's lists of what each backend's env class takes (checked before anything runs, without importing
    the simulators) are the constructors' own keyword arguments, read from their source."""
    import ast

    from pql_scaling.env_spec import ISAACGYM_ARGS, MJCF_BACKEND_ARGS

    def keywords(module, cls):
        tree = ast.parse(open(os.path.join(ROOT, "envs", module + ".py")).read())
        init = next(
            f
            for c in tree.body
            if isinstance(c, ast.ClassDef) and c.name == cls
            for f in c.body
            if isinstance(f, ast.FunctionDef) and f.name == "__init__"
        )
        # the run's own arguments (and a population's) come from the config, not from env_kwargs
        return {a.arg for a in init.args.args} - {
            "self",
            "task",
            "num_envs",
            "device",
            "seed",
            "members",
            "seeds",
        }

    assert keywords("mujoco_backend", "MujocoVecEnv") == set(MJCF_BACKEND_ARGS["mujoco"])
    assert keywords("mjwarp_backend", "MJWarpVecEnv") == set(MJCF_BACKEND_ARGS["mjwarp"])
    assert keywords("isaacgym_backend", "IsaacGymVecEnv") == set(ISAACGYM_ARGS)


def test_env_kwargs_set_a_native_tasks_parameters_and_survive_a_resume():
    from pql_scaling import envs

    cfg = config.load(
        ["task=pendulum", "env_kwargs={g: 9.81}", "env_kwargs.max_episode_steps=50", "mode=sync"]
    )
    options = config.env_options(cfg, "native")
    assert options == {"g": 9.81, "max_episode_steps": 50}
    env = envs.make("pendulum", 2, **options)
    assert env.task.g == 9.81 and env.task.max_episode_steps == 50
    # a resumed run's config.yaml (and a task YAML) hold the mapping as one key
    again = config.load(["max_env_steps=100"], base=config.to_dict(cfg))
    assert dict(again.env_kwargs) == {"g": 9.81, "max_episode_steps": 50}
    # a population's members get them too (each member's config.yaml keeps them for a member's own resume)
    pop = config.load(["task=pendulum", "env_kwargs={g: 9.81}", "mode=sync", "population.size=2"])
    assert config.env_options(pop, "native") == {"g": 9.81}
