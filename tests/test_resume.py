"""Resume on every backend: a stopped-and-resumed run continues exactly where it stopped.

The simulator's state, the actor's last observation and its episode counters belong together: a backend
restores all three (native, mujoco, mjwarp: bit for bit), or, where the simulator cannot save its state
(Isaac Gym), the resumed run starts new episodes and keeps none of the stale ones.
"""

import os

import pytest
import torch

from pql_scaling import config as config_lib
from pql_scaling import envs
from pql_scaling.rundir.rundir import RunDir
from pql_scaling.runtime.train import Session, train
from tests.runs import rows, same_curve, status

TINY = [
    "mode=sync",
    "num_envs=4",
    "algo.batch_size=32",
    "net.actor_hidden=[16]",
    "net.critic_hidden=[16]",
    "algo.critic_updates_per_step=1",
    "threads=1",
    "log.live=off",
    "algo.warmup_steps=4",
    "save_replay=true",
    "log.checkpoint_every_s=1e9",
]


def steps_and_check(env, actions):
    out = []
    for a in actions:
        next_obs, reward, terminated, truncated, info = env.step(a)
        out.append((next_obs, reward, terminated, truncated, info["final_obs"]))
    return out


@pytest.mark.parametrize("backend,task", [("mujoco", "Hopper"), ("mujoco", "Ant"), ("mjwarp", "Hopper")])
def test_env_state_dict_continues_the_same_episodes_bit_for_bit(backend, task):
    pytest.importorskip("mujoco")
    if backend == "mjwarp":
        pytest.importorskip("mujoco_warp")
    kw = {
        "device": "cpu",
        "max_episode_steps": 7,
    }  # episodes end (and reset from the generator) inside the window
    a = envs.make(task, 3, seed=0, backend=backend, **kw)
    a.reset()
    gen = torch.Generator().manual_seed(0)
    actions = [torch.rand((3, a.act_dim), generator=gen) * 2 - 1 for _ in range(16)]
    steps_and_check(a, actions[:5])
    saved = a.state_dict()
    b = envs.make(task, 3, seed=123, backend=backend, **kw)  # another seed and another state, then restored
    b.reset()
    b.step(actions[0])
    b.load_state_dict(saved)
    assert torch.equal(b.t, a.t)
    for t, (x, y) in enumerate(zip(steps_and_check(a, actions[5:]), steps_and_check(b, actions[5:]))):
        for name, u, v in zip(("next_obs", "reward", "terminated", "truncated", "final_obs"), x, y):
            assert torch.equal(u, v), "step %d after the restore: %s differs" % (t, name)
    assert bool((b.t < 5).any()), "no episode restarted after the restore: the generator was not exercised"


def weights(run_dir):
    ck = torch.load(os.path.join(run_dir, "checkpoints", "last.pt"), map_location="cpu", weights_only=False)
    nets = {"critic." + k: v for k, v in ck["v_learner"]["critic"].items()}
    nets.update({"actor." + k: v for k, v in ck["p_learner"]["actor"].items()})
    return ck, nets


@pytest.mark.parametrize(
    "task,backend,stop,end", [("pendulum", "native", 240, 480), ("HalfCheetah", "mujoco", 600, 1100)]
)
def test_sync_resume_with_replay_equals_an_uninterrupted_run_bit_for_bit(tmp_path, task, backend, stop, end):
    """A sync run stopped at `stop` actor steps and resumed to `end` logs the same metrics and ends with the same
    weights as one run to `end`: env state, obs, episode counters, n-step window, replay, RNGs all restored.
    HalfCheetah's 1000-step episodes end after the resume, so stale episode counters would show in the metrics."""
    if backend == "mujoco":
        pytest.importorskip("mujoco")
    base = TINY + ["task=" + task, "backend=" + backend, "log.every_steps=20"]
    whole = train(base + ["max_env_steps=%d" % (4 * end), "run_dir=%s" % (tmp_path / "whole")], quiet=True)
    part = str(tmp_path / "part")
    train(base + ["max_env_steps=%d" % (4 * stop), "run_dir=" + part], quiet=True)
    train(["resume=" + part, "max_env_steps=%d" % (4 * end)], quiet=True)
    strip = same_curve
    assert status(part)["status"] == "completed"
    a, b = strip(rows(whole)), strip(rows(part))
    assert len(a) == len(b) == end // 20
    assert sum(r["episodes"] for r in a) > 0, "no episode ended: the test could not see the episode counters"
    for i, (x, y) in enumerate(zip(a, b)):
        assert x == y, "log point %d (env step %d) differs after the resume at %d:\n%s\n%s" % (
            i,
            x["env_steps"],
            4 * stop,
            x,
            y,
        )
    (ck_a, wa), (ck_b, wb) = weights(whole), weights(part)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert torch.equal(ck_a["actor"]["obs"], ck_b["actor"]["obs"])


class NoStateEnv:
    """A simulator that cannot save its state (as Isaac Gym): the native env without state_dict."""

    def __init__(self, *a, **k):
        self._env = envs.make(*a, **k)
        self.num_envs, self.obs_dim, self.act_dim = self._env.num_envs, self._env.obs_dim, self._env.act_dim
        self.device, self.max_episode_steps = self._env.device, self._env.max_episode_steps
        self.backend = "stateless"

    def reset(self):
        return self._env.reset()

    def step(self, action):
        return self._env.step(action)


def test_a_backend_without_state_resumes_with_fresh_episodes_not_stale_ones(tmp_path):
    cfg = config_lib.load(TINY + ["task=pendulum", "max_env_steps=400", "log.every_steps=1000"])
    run = RunDir(str(tmp_path / "a"))
    try:
        s = Session(cfg, run, NoStateEnv("pendulum", 4, seed=0))
        for _ in range(30):
            s.actor.step(s.p_learner.actor)
        saved = s.state_dict()
        assert "env" not in saved and float(saved["actor"]["ep_length"][0]) == 30
        env = NoStateEnv("pendulum", 4, seed=1)
        s2 = Session(cfg, run, env, saved)
    finally:
        run.close()
    assert s2.actor.steps == 30  # the step counter continues...
    assert (s2.actor.ep_length == 0).all() and (
        s2.actor.ep_return == 0
    ).all()  # ... the stale episodes do not
    assert torch.equal(s2.actor.obs, env._env.task.observe(env._env.state))  # the obs is the simulator's own
    assert s2.actor.folder.t == 0  # no n-step window across the restart
    assert "cannot restore its simulator state" in open(os.path.join(run.path, "train.log")).read()
