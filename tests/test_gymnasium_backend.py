"""backend=gymnasium: Gymnasium's vector envs and autoreset modes translated into the env contract.

A scripted Gymnasium env makes every observation name itself: (env, episode, step in episode, last action).
Its episodes end at different steps, by termination (odd envs) or by the TimeLimit of its registration (even
envs). Through the real ActorRole and replay, a row that may be learned from (weight > 0) must start and
bootstrap inside one episode: in Gymnasium's next_step mode the step after an episode end is a reset, and its
(last observation -> first observation of the next episode) transition must be stored with weight 0; in
same_step mode the bootstrap observation must be the true last one from info["final_obs"]. Each mode's check
is also run against a deliberately broken translation, to show that it fails there.
"""

import json
import os
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from pql_scaling import config as config_lib
from pql_scaling import envs
from pql_scaling.core.replay import Normalizer, Replay
from pql_scaling.envs import gymnasium_backend as gb
from pql_scaling.runtime.actor import ActorRole
from tests.runs import rows, status

SCRIPTED = "PqlScriptedTest-v0"
LIMIT = 7  # the registration's TimeLimit: even envs are truncated at step 7
LOW, HIGH = np.array([-2.0, 0.0], np.float32), np.array([3.0, 10.0], np.float32)


class ScriptedEnv(gym.Env):
    """obs = (env id, episode, step in episode, action[0], action[1]); env i is reset with seed i first."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
        self.action_space = gym.spaces.Box(LOW, HIGH, dtype=np.float32)
        self.ident, self.episode, self.t = -1, -1, 0

    def _obs(self, action=(0.0, 0.0)):
        return np.array([self.ident, self.episode, self.t, action[0], action[1]], np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None and self.ident < 0:
            self.ident = seed
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        terminated = self.ident % 2 == 1 and self.t == 2 + self.ident  # env 1 at step 3, env 3 at step 5
        return self._obs(action), 100.0 * self.episode + self.t, terminated, False, {}


if SCRIPTED not in gym.envs.registry:
    gym.register(id=SCRIPTED, entry_point=ScriptedEnv, max_episode_steps=LIMIT)


def _actor(env, nstep, steps):
    cfg = config_lib.load(
        ["task=pendulum", "num_envs=%d" % env.num_envs, "algo.nstep=%d" % nstep, "algo.warmup_steps=100000"]
    )
    replay = Replay(env.num_envs * steps, env.obs_dim, env.act_dim, env.num_envs, "cpu")
    actor = ActorRole(cfg, env, replay, Normalizer(env.obs_dim, "cpu", enabled=False), "cpu")
    for _ in range(steps):
        actor.step(None)
    d = {k: v[: replay.rows] for k, v in replay.data.items()}
    return actor, d


def spanning_rows(d):
    """Rows that may be learned from (weight > 0) whose bootstrap observation is not a later step of the
    episode the row starts in: the transitions that must never be learned from."""
    w = d["weight"] > 0
    o, n = d["obs"], d["next_obs"]
    bad = w & ((o[:, 0] != n[:, 0]) | (o[:, 1] != n[:, 1]) | (n[:, 2] <= o[:, 2]))
    return [(o[i, :3].tolist(), n[i, :3].tolist()) for i in torch.nonzero(bad)[:, 0].tolist()]


class DropValid:
    """A next_step translation that forgets info["valid"]: it learns from the reset transition."""

    def __init__(self, env):
        self.env = env
        self.num_envs, self.obs_dim, self.act_dim = env.num_envs, env.obs_dim, env.act_dim
        self.device, self.max_episode_steps = env.device, env.max_episode_steps

    def reset(self):
        return self.env.reset()

    def step(self, action):
        out = self.env.step(action)
        out[4].pop("valid", None)
        return out


class IgnoreFinalObs(DropValid):
    """A same_step translation that bootstraps from the next episode's first observation."""

    def step(self, action):
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        return next_obs, reward, terminated, truncated, dict(info, final_obs=next_obs)


@pytest.mark.parametrize("nstep", [1, 3])
@pytest.mark.parametrize("mode", ["next_step", "same_step", "disabled"])
def test_the_reset_transition_is_never_learned_from(mode, nstep):
    env = envs.make(SCRIPTED, 4, backend="gymnasium", autoreset_mode=mode)
    steps = 30
    actor, d = _actor(env, nstep, steps)
    assert spanning_rows(d) == []
    o, n, w, disc = d["obs"], d["next_obs"], d["weight"], d["discount"]
    learned = w > 0
    # every episode end is learned from, bootstrapping from its true last observation: truncations (even envs,
    # at the time limit) with gamma^k, terminations (odd envs) with 0
    odd = o[:, 0] % 2 == 1
    ends = learned & (n[:, 2] == torch.where(odd, o[:, 0] + 2, torch.full_like(o[:, 0], LIMIT)))
    assert (ends & odd).any() and (ends & ~odd).any()
    assert (disc[ends & odd] == 0).all() and (disc[ends & ~odd] > 0).all()
    # the rows that are not learned from are exactly the reset steps (next_step mode only)
    if mode == "next_step":
        assert (~learned).any()
        assert (o[~learned][:, 1] + 1 == n[~learned][:, 1]).all()  # from an episode's last obs into the next
        assert (n[~learned][:, 2] == nstep - 1).all()
    else:
        assert learned.all()
    # no real step is lost: with 1-step rows, one learned row per env step that is not a reset
    if nstep == 1:
        per_env = torch.bincount(o[learned][:, 0].long(), minlength=4)
        resets = torch.bincount(o[~learned][:, 0].long(), minlength=4)
        assert (per_env + resets == steps).all()
    # returns count real steps only (rewards 100 * episode + t)
    mean, _, episodes, length = actor.pop_stats()
    assert episodes > 0 and length <= LIMIT
    env.close()


@pytest.mark.parametrize("mode,broken", [("next_step", DropValid), ("same_step", IgnoreFinalObs)])
def test_the_checks_fail_on_a_translation_that_learns_from_the_reset_transition(mode, broken):
    env = envs.make(SCRIPTED, 4, backend="gymnasium", autoreset_mode=mode)
    _, d = _actor(broken(env), 1, 20)
    assert spanning_rows(d), "the spanning-transition check found nothing in a broken translation"
    env.close()


def test_next_step_mode_marks_only_the_reset_step_invalid():
    env = envs.make(SCRIPTED, 4, backend="gymnasium", autoreset_mode="next_step")
    obs = env.reset()
    assert obs[:, 0].tolist() == [0, 1, 2, 3] and (obs[:, 2] == 0).all()
    for t in range(1, 10):
        next_obs, reward, terminated, truncated, info = env.step(torch.zeros(4, 2))
        ended = terminated | truncated
        assert torch.equal(
            info["final_obs"], next_obs
        )  # next_step: the ended envs' last obs, reset next step
        assert (info["valid"] == ~((obs[:, 2] > 0) & (next_obs[:, 2] == 0))).all(), t
        assert not (ended & ~info["valid"]).any()
        assert (reward[~info["valid"]] == 0).all()
        obs = next_obs
    env.close()


def test_actions_are_clamped_and_rescaled_to_the_box_bounds():
    env = envs.make(SCRIPTED, 2, backend="gymnasium")
    env.reset()
    for a, want in [
        ([-1.0, -1.0], LOW),
        ([1.0, 1.0], HIGH),
        ([0.0, 0.0], (LOW + HIGH) / 2),
        ([5.0, -5.0], [HIGH[0], LOW[1]]),  # clamped to [-1, 1] first
        ([0.5, -0.5], [LOW[0] + 0.75 * (HIGH[0] - LOW[0]), LOW[1] + 0.25 * (HIGH[1] - LOW[1])]),
    ]:
        obs = env.step(torch.tensor([a, a]))[4]["final_obs"]
        assert obs[:, 3:].tolist() == [list(np.float32(want))] * 2, a
    env.close()


def test_pendulum_spaces_limit_and_device():
    env = envs.make("Pendulum-v1", 3, backend="gymnasium", seed=5)
    assert (env.obs_dim, env.act_dim, env.max_episode_steps) == (3, 1, 200)
    assert env.backend == "gymnasium" and env.vectorization == "sync" and env.autoreset_mode == "same_step"
    obs = env.reset()
    assert obs.dtype == torch.float32 and obs.device == torch.device("cpu")
    np.testing.assert_allclose(env._act_scale, [2.0])
    np.testing.assert_allclose(env._act_bias, [0.0])
    env.close()
    assert envs.make("Pendulum-v1", 2, backend="gymnasium", max_episode_steps=9).max_episode_steps == 9


def test_same_seed_same_episodes_and_async_matches_sync():
    a = envs.make("Pendulum-v1", 3, backend="gymnasium", seed=7)
    b = envs.make("Pendulum-v1", 3, backend="gymnasium", seed=7, vectorization="async")
    try:
        assert b.vectorization == "async"
        assert torch.equal(a.reset(), b.reset())
        gen = torch.Generator().manual_seed(0)
        for _ in range(5):
            act = torch.rand(3, 1, generator=gen) * 2 - 1
            for x, y in zip(a.step(act)[:4], b.step(act)[:4]):
                assert torch.equal(x, y)
    finally:
        a.close()
        b.close()


def test_config_keys_reach_the_vector_env_and_bad_values_name_the_key():
    """gymnasium.vectorization / gymnasium.autoreset and env_kwargs (whole or one key at a time) reach
    gymnasium.make_vec; what the env cannot take is a ConfigError naming env_kwargs."""
    base = ["task=Pendulum-v1", "backend=gymnasium"]
    cfg = config_lib.load(
        base + ["gymnasium.vectorization=async", "gymnasium.autoreset=next_step", "env_kwargs={g: 2.5}"]
        + ["env_kwargs.max_episode_steps=9"]
    )  # fmt: skip
    options = config_lib.env_options(cfg, "gymnasium")
    assert options == {
        "g": 2.5,
        "max_episode_steps": 9,
        "vectorization": "async",
        "autoreset_mode": "next_step",
    }
    env = envs.make(cfg.task, 2, backend="gymnasium", **options)
    try:
        assert env.vectorization == "async" and env.autoreset_mode == "next_step"
        assert env.max_episode_steps == 9 and tuple(env.vec.get_attr("g")) == (2.5, 2.5)
    finally:
        env.close()
    defaults = config_lib.env_options(config_lib.load(base), "gymnasium")
    assert defaults == {"vectorization": "sync", "autoreset_mode": "same_step"}
    cfg = config_lib.load(base + ["env_kwargs={gravity: 1.0}"])
    with pytest.raises(
        config_lib.ConfigError, match=r"env_kwargs \{'gravity': 1.0\}: Pendulum-v1 does not take"
    ):
        envs.make(cfg.task, 2, backend="gymnasium", **config_lib.env_options(cfg, "gymnasium"))
    for args, match in (
        (["gymnasium.autoreset=sometimes"], r"gymnasium.autoreset='sometimes' is not one of same_step"),
        (["gymnasium.vectorization=threads"], r"gymnasium.vectorization='threads' is not one of sync, async"),
        (
            ["gymnasium.vectorisation=async"],
            r"unknown config key 'gymnasium.vectorisation'.*gymnasium.vectorization",
        ),
        (
            ["env_kwargs={autoreset_mode: next_step}"],
            r"env_kwargs.autoreset_mode: set gymnasium.autoreset instead",
        ),
        (["env_kwargs=[1]"], r"bad value \[1\] for env_kwargs"),
    ):
        with pytest.raises(config_lib.ConfigError, match=match):
            config_lib.load(base + args)
    with pytest.raises(config_lib.ConfigError, match=r"gymnasium.autoreset=next_step applies to backend=gym"):
        config_lib.load(["task=pendulum", "gymnasium.autoreset=next_step"])
    with pytest.raises(ValueError, match="same_step, next_step, disabled"):  # the constructor's own check
        envs.make("Pendulum-v1", 2, backend="gymnasium", autoreset_mode="sometimes")


def test_any_registered_id_resolves_and_unknown_ones_say_what_to_do():
    assert envs.default_backend("Pendulum-v1") == "gymnasium"
    assert envs.default_backend("pendulum") == "native"
    assert "Pendulum-v1" in gb.TASKS and "no-such-env-v0" not in gb.TASKS
    assert "tests.test_gymnasium_backend:" + SCRIPTED in gb.TASKS  # 'module:id' imports the module
    with pytest.raises(ValueError, match="did you mean: Pendulum-v1.*pprint_registry"):
        envs.make("Pendulum-v0", 2, backend="gymnasium")
    with pytest.raises(ValueError, match="continuous actions only"):
        envs.make("CartPole-v1", 2, backend="gymnasium")
    with pytest.raises(ValueError, match="any registered Gymnasium id"):
        envs.make("no_such_task", 2)


def test_a_missing_gymnasium_names_the_fix(monkeypatch):
    import importlib

    monkeypatch.setitem(sys.modules, "gymnasium", None)
    monkeypatch.delitem(sys.modules, "pql_scaling.envs.gymnasium_backend")
    with pytest.raises(ImportError, match="pip install 'gymnasium"):
        importlib.import_module("pql_scaling.envs.gymnasium_backend")
    with pytest.raises(ImportError, match="pip install 'gymnasium"):
        envs.make("Pendulum-v1", 2, backend="gymnasium")


def test_dict_observations_are_flattened():
    """dm_control through shimmy gives a dict of arrays; a registered env with a Dict space stands in here."""

    class DictObs(gym.ObservationWrapper):
        def __init__(self, env):
            super().__init__(env)
            self.observation_space = gym.spaces.Dict(
                {"a": gym.spaces.Box(-np.inf, np.inf, (2,)), "b": gym.spaces.Box(-np.inf, np.inf, (1,))}
            )

        def observation(self, obs):
            return {"a": obs[:2], "b": obs[2:]}

    env_id = "PqlDictObsTest-v0"
    if env_id not in gym.envs.registry:
        gym.register(
            id=env_id, entry_point=lambda: DictObs(gym.make("Pendulum-v1").unwrapped), max_episode_steps=20
        )
    env = envs.make(env_id, 2, backend="gymnasium", seed=3)
    ref = envs.make("Pendulum-v1", 2, backend="gymnasium", seed=3)
    assert env.obs_dim == 3
    assert torch.equal(env.reset(), ref.reset())
    env.close()
    ref.close()


def test_state_dict_keeps_counters_and_a_resume_reseeds(tmp_path):
    env = envs.make("Pendulum-v1", 3, backend="gymnasium", seed=1, max_episode_steps=4)
    first = env.reset()
    for _ in range(9):
        env.step(torch.zeros(3, 1))
    s = env.state_dict()
    assert s["steps"] == 9 and s["episodes"].tolist() == [2, 2, 2] and s["seed"] == 1
    torch.save(s, tmp_path / "env.pt")
    s = torch.load(tmp_path / "env.pt", weights_only=True)  # plain types and tensors only
    assert not hasattr(env, "load_state_dict")  # the episodes themselves cannot be restored
    again = envs.make("Pendulum-v1", 3, backend="gymnasium", seed=1, max_episode_steps=4)
    assert torch.equal(again.reset(), first)  # the same seed starts the same episodes ...
    again.restore_counters(s)
    assert again.state_dict()["episodes"].tolist() == [2, 2, 2] and again.state_dict()["resumes"] == 1
    fresh = envs.make("Pendulum-v1", 3, backend="gymnasium", seed=1, max_episode_steps=4)
    fresh.reset()
    outs = [[e.step(torch.zeros(3, 1)) for _ in range(4)][-1] for e in (again, fresh)]
    assert outs[0][3].all() and outs[1][3].all()  # the time limit: new episodes start in both
    assert torch.equal(outs[0][4]["final_obs"], outs[1][4]["final_obs"])  # the same episodes up to here ...
    assert not torch.equal(outs[0][0], outs[1][0])  # ... but after a resume the next come from another stream
    with pytest.raises(ValueError, match="num_envs"):
        envs.make("Pendulum-v1", 2, backend="gymnasium").restore_counters(s)
    for e in (env, again, fresh):
        e.close()


# ---------------------------------------------------------------- training through the backend

SMALL = [
    "task=Pendulum-v1",
    "backend=gymnasium",
    "num_envs=8",
    "algo.batch_size=64",
    "net.actor_hidden=[32]",
    "net.critic_hidden=[32]",
    "log.every_steps=20",
    "threads=1",
    "log.live=off",
    "algo.warmup_steps=4",
]


def _check_run(d, steps):
    assert status(d)["status"] == "completed", status(d)
    facts = json.load(open(os.path.join(d, "run.json")))
    assert facts["backend"] == "gymnasium" and facts["defaults"] == "tasks/gymnasium/Pendulum-v1.yaml"
    last = rows(d)[-1]
    assert last["env_steps"] == steps and last["critic_updates"] > 0 and last["episodes"] >= 0
    assert any(r.get("return_mean") is not None for r in rows(d))  # 200-step episodes ended and were counted


def test_trains_in_sync_mode_with_eval_and_resumes_with_new_episodes(tmp_path):
    from pql_scaling.runtime.train import train

    d = train(
        SMALL
        + ["mode=sync", "max_env_steps=1760", "eval.every_steps=1600", "eval.episodes=2"]
        + ["run_dir=%s" % (tmp_path / "r")],
        quiet=True,
    )
    _check_run(d, 1760)
    assert any(r.get("eval_return_mean") is not None for r in rows(d))
    train(["resume=%s" % d, "max_env_steps=2400"], quiet=True)
    assert status(d)["status"] == "completed" and rows(d)[-1]["env_steps"] == 2400
    assert "cannot restore its simulator state" in open(os.path.join(d, "train.log")).read()


def test_trains_in_trio_mode(tmp_path):
    from pql_scaling.runtime.train import train

    d = train(SMALL + ["mode=trio", "max_env_steps=1760", "run_dir=%s" % (tmp_path / "r")], quiet=True)
    _check_run(d, 1760)


def test_trains_in_next_step_mode(tmp_path):
    from pql_scaling.runtime.train import train

    args = [
        "mode=sync",
        "max_env_steps=1760",
        "gymnasium.autoreset=next_step",
        "run_dir=%s" % (tmp_path / "r"),
    ]
    d = train(SMALL + args, quiet=True)
    assert "vector env, autoreset next_step" in open(os.path.join(d, "train.log")).read()  # the config's mode
    _check_run(d, 1760)
    ended = [r for r in rows(d) if r.get("episodes")]
    assert ended and all(r["episode_length"] == 200 for r in ended)  # the reset steps are not counted


def test_pendulum_v1_defaults_are_the_native_pendulums():
    """The benchmark against the native pendulum compares simulators only: both resolve to the same config."""
    native = config_lib.to_dict(config_lib.load(["task=pendulum"]))
    gym_cfg = config_lib.to_dict(config_lib.load(["task=Pendulum-v1", "backend=gymnasium"]))
    for d in (native, gym_cfg):
        d.pop("task"), d.pop("backend")
    assert gym_cfg == native


DMC = "dm_control/cartpole-swingup-v0"


def test_a_real_dm_control_task_through_shimmy_keeps_its_time_limit_a_truncation():
    """dm_control's own 1000-step limit (no TimeLimit in its registration) is found, its dict observation
    flattened, and the episode end it reports (dm_env's LAST step with discount 1) arrives as a truncation that
    is bootstrapped through, with the true last observation in final_obs, not the next episode's first."""
    pytest.importorskip("shimmy")
    pytest.importorskip("dm_control")
    env = envs.make(DMC, 2, backend="gymnasium", seed=1)
    assert (env.obs_dim, env.act_dim, env.max_episode_steps) == (5, 1, 1000)
    obs = env.reset()
    for t in range(1000):
        nxt, rew, term, trunc, info = env.step(torch.zeros(2, 1))
        if t < 999:
            assert not (term.any() or trunc.any())
            obs = nxt
    assert trunc.all() and not term.any()
    # the final observation continues the last step (cart position barely moves in 0.01 s); the returned one
    # is a new episode's first (swing-up starts hanging down: cos(angle) near -1)
    assert torch.allclose(info["final_obs"][:, 0], obs[:, 0], atol=0.05)
    assert not torch.equal(info["final_obs"], nxt)
    assert torch.allclose(nxt[:, 1], torch.full((2,), -1.0), atol=0.05)
    env.close()


def test_a_real_dm_control_task_trains(tmp_path):
    pytest.importorskip("shimmy")
    pytest.importorskip("dm_control")
    from pql_scaling.runtime.train import train

    args = [
        "task=%s" % DMC,
        "backend=gymnasium",
        "num_envs=2",
        "mode=sync",
        "max_env_steps=2100",  # one 1000-step episode per env, and a few steps of the next
        "algo.batch_size=64",
        "algo.critic_updates_per_step=1",
        "net.actor_hidden=[32]",
        "net.critic_hidden=[32]",
        "eval.every_steps=0",
        "log.every_steps=50",
        "threads=1",
        "run_dir=%s" % (tmp_path / "r"),
    ]
    d = train(args, quiet=True)
    assert status(d)["status"] == "completed", status(d)
    ended = [r for r in rows(d) if r.get("episodes")]
    assert ended and all(r["episode_length"] == 1000 for r in ended)
    assert rows(d)[-1]["env_steps"] == 2100 and rows(d)[-1]["critic_updates"] > 0
