import pytest

from pql_scaling import config


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
