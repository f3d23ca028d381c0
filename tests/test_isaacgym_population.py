"""Populations on backend=isaacgym, against the stand-ins of tests/fakes (Isaac Gym is imported before torch, so
every run is a fresh interpreter with the fakes on sys.path, as in tests/test_isaacgym_adapter.py).

K x num_envs envs in the one simulation, member k owning rows [k*num_envs, (k+1)*num_envs); the simulation is
seeded once (with the first seed), so a member is not the single run with its seed, and run.json says so. The
rest is each member's own: its slice of the envs' transitions (deferred resets' `valid` included) in its own
replay ring, its episode statistics, its run directory with exact counts, its checkpoint."""

import os
import subprocess
import sys

import pytest

from pql_scaling.rundir import schema
from tests.helpers import FAKES, ROOT, python_ok
from tests.runs import rows, status
from tests.test_isaacgym_adapter import run
from tests.test_population import member_dirs
from tests.test_trio import expected_counts

N, BATCH, UTD, RATIO, NSTEP = 16, 64, 2, 0.5, 3
POP = [
    "task=Ant",
    "backend=isaacgym",
    "num_envs=%d" % N,
    "max_time_s=300",
    "algo.batch_size=%d" % BATCH,
    "algo.critic_updates_per_step=%d" % UTD,
    "algo.policy_updates_per_critic_update=%s" % RATIO,
    "algo.nstep=%d" % NSTEP,
    "algo.warmup_steps=4",
    "net.actor_hidden=[32]",
    "net.critic_hidden=[32]",
    "log.every_steps=160",
    "log.live=off",
    "threads=1",
    "population.size=2",
    "population.seeds=[3,5]",
    "env_kwargs={cfg: {task: {env: {episodeLength: 12}}}}",  # short episodes: resets in every member
]


def train_cli(*args):
    proc = python_ok(["-m", "pql_scaling.cli", "train"] + list(args))
    return proc.stdout + proc.stderr


def test_members_own_disjoint_slices_and_only_their_envs_reach_their_replay(tmp_path):
    """Through the real Population (envs.make with members, build_roles): the env's member slices partition its
    rows; over 40 steps with resets at different times, member k's replay ring holds exactly the transitions of
    envs k*n .. (k+1)*n - 1 (observation, action, reward, next observation, the weight 0 of each step spanning
    two episodes), none of the other member's; each member's episode statistics are its own envs' episodes;
    the simulator's resets leave the trainer's random generator where it was."""
    run(
        prelude=True,
        code="""
    import time
    from pql_scaling import config as config_lib
    from pql_scaling.runtime.population import Population

    n, K, steps = 6, 2, 40
    cfg = config_lib.load(["task=Ant", "backend=isaacgym", "mode=sync", "num_envs=%%d" %% n, "algo.nstep=1",
                           "algo.warmup_steps=100000", "algo.reward_scale=1.0", "population.size=2",
                           "population.seeds=[3,5]", "net.actor_hidden=[8]", "net.critic_hidden=[8]",
                           "env_kwargs={cfg: {task: {env: {episodeLength: 9}}}}", "run_dir=%s"])
    torch.manual_seed(3)
    pop = Population(cfg, cfg.run_dir, time.monotonic())
    env = pop.env
    assert env.num_envs == K * n and not env.members_seeded_apart and not pop.envs_seeded_apart
    cover = [i for k in range(K) for i in range(env.num_envs)[env.member_rows(k)]]
    assert cover == list(range(K * n))  # disjoint, member-major, every env once

    seen = []  # the adapter's outputs as the actor got them
    step = env.step
    def recording(action):
        out = step(action)
        seen.append((action.clone(), out[1].clone(), out[4]["final_obs"].clone(), out[4]["valid"].clone(),
                     out[4]["episode_return"].clone(), out[2] | out[3]))
        return out
    env.step = recording
    obs = [pop.actor.obs.clone()]
    for _ in range(steps):
        pop.actor.step(None)
        obs.append(pop.actor.obs.clone())

    done = torch.stack([s[5] for s in seen])
    valid = torch.stack([s[3] for s in seen])
    for k in range(K):
        mine = slice(k * n, (k + 1) * n)
        assert done[:, mine].any() and (~valid[:, mine]).any(), k
    assert not torch.equal(done[:, :n], done[:, n:])  # members reset at different times

    def transitions(rows):  # what the envs `rows` gave, step-major as a ring holds them
        return {
            "obs": torch.cat([o[rows] for o in obs[:-1]]),
            "action": torch.cat([s[0][rows] for s in seen]),
            "reward": torch.cat([s[1][rows] for s in seen]),
            "next_obs": torch.cat([s[2][rows] for s in seen]),
            "weight": torch.cat([s[3][rows].float() for s in seen]),
        }

    data, cap = pop.replay.data, pop.replay.capacity
    assert pop.replay.rows == steps * n
    for k in range(K):
        want, other = transitions(env.member_rows(k)), transitions(env.member_rows(1 - k))
        for name, t in want.items():
            got = data[name][k * cap : k * cap + steps * n].reshape(t.shape)
            assert torch.equal(got, t), (k, name)  # its own envs' transitions, in order
            if name != "weight":  # and the other member's envs' are not the same: a mix-up would show
                assert not torch.equal(got, other[name]), (k, name)
        assert want["weight"].eq(0).any() and not torch.equal(want["weight"], other["weight"])

    # the simulator's own stream: its resets draw nothing from torch's default generator (member 0's)
    rng = torch.get_rng_state()
    pos = env.task.sim["state"]["pos"].clone()
    env.task.reset_buf[:] = 1
    step(torch.zeros(K * n, env.act_dim))
    assert not torch.equal(env.task.sim["state"]["pos"], pos)  # every env re-initialised: random draws
    assert torch.equal(torch.get_rng_state(), rng)

    # each member's episodes: the returns its own envs reported
    stats = pop.actor.member_stats()  # (return_mean, return_std, episodes, length_mean) per member
    for k in range(K):
        mine = env.member_rows(k)
        rets = torch.cat([s[4][mine][s[5][mine]] for s in seen]).double()
        assert stats[k][2] == len(rets) > 0, (k, stats[k])
        assert abs(stats[k][0] - rets.mean().item()) < 1e-4, (k, stats[k], rets.mean())
    pop.close("completed", None)
    """
        % (tmp_path / "pop"),
    )


def _counts(d):
    last = rows(d)[-1]
    return last["env_steps"], last["critic_updates"], last["policy_updates"]


@pytest.mark.parametrize("mode", ["sync", "trio"])
def test_an_isaacgym_population_trains_each_member_as_its_own_run(tmp_path, mode):
    """A population of 2 through `pql-scale train` on the stand-ins: each member's run directory complete, its
    exact counts (sync's; the trio's exact ratios give the same), run.json naming the population and saying its
    envs are not seeded apart (the log says it once), its checkpoint a single isaacgym run's (no env state)."""
    root = str(tmp_path / mode)
    steps = 100
    out = train_cli(*POP, "mode=" + mode, "max_env_steps=%d" % (N * steps), "run_dir=" + root)
    dirs = member_dirs(root)
    assert [os.path.basename(d) for d in dirs] == ["m00-s3", "m01-s5"]
    critic, policy = expected_counts(steps, N, BATCH, UTD, RATIO, NSTEP)
    log = open(os.path.join(root, "m00-s3", "train.log")).read() + out
    assert log.count("is not reproducible as the single run with its seed") >= 1
    for k, d in enumerate(dirs):
        assert {"checkpoints", schema.CONFIG, schema.FACTS, schema.METRICS, schema.STATUS} <= set(
            os.listdir(d)
        )
        assert status(d)["status"] == "completed"
        assert _counts(d) == (N * steps, critic, policy), (k, _counts(d), (critic, policy))
        assert sum(r["episodes"] for r in rows(d)) > 0
        facts = schema.read_facts(os.path.join(d, schema.FACTS))
        assert facts["backend"] == "isaacgym" and facts["mode"] == mode and facts["num_envs"] == N
        p = facts["population"]
        assert (p["size"], p["index"], p["seeds"], p["envs_seeded_apart"]) == (2, k, [3, 5], False)
        ck = _load(os.path.join(d, "checkpoints", "last.pt"))
        assert "env" not in ck and ck["actor"]["steps"] == steps and ck["actor"]["obs"].shape[0] == N
        assert (ck["v_learner"]["updates"], ck["p_learner"]["updates"]) == (critic, policy)


def test_a_killed_isaacgym_population_resumes_and_a_member_resumes_alone(tmp_path):
    """SIGKILL a population mid-run; resume=<population dir> continues both members from their checkpoints at a
    common step (new episodes: the simulator's state cannot be saved, the log says so), one timeline each, to the
    end; resume=<member dir> then continues that member alone as a single isaacgym run."""
    import signal
    import time

    root = str(tmp_path / "pop")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([FAKES, ROOT]))
    args = POP + [
        "mode=sync",
        "max_env_steps=%d" % (N * 10**6),
        "log.checkpoint_every_s=0.5",
        "run_dir=" + root,
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pql_scaling.cli", "train"] + args,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    prev = [os.path.join(root, m, "checkpoints", "prev.pt") for m in ("m00-s3", "m01-s5")]
    deadline = time.monotonic() + 240
    while not all(os.path.exists(p) for p in prev):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    dirs = member_dirs(root)
    killed_at = max(rows(d)[-1]["env_steps"] for d in dirs)
    assert killed_at > 0 and all(status(d).get("lost") for d in dirs), [status(d) for d in dirs]
    end = killed_at + N * 60
    out = train_cli("resume=" + root, "max_env_steps=%d" % end)  # names no backend: population.json does
    assert "cannot restore its simulator state" in out
    for d in dirs:
        steps = [r["env_steps"] for r in rows(d)]
        assert all(x < y for x, y in zip(steps, steps[1:])), d
        assert steps[-1] == end and status(d)["status"] == "completed"
        assert sum(r["episodes"] for r in rows(d) if r["env_steps"] > killed_at) > 0
        assert _load(os.path.join(d, "checkpoints", "last.pt"))["actor"]["steps"] * N == end
    assert _counts(dirs[0])[1:] == _counts(dirs[1])[1:]  # resumed at one step, the same schedule
    alone = dirs[1]
    train_cli("resume=" + alone, "max_env_steps=%d" % (end + N * 20))
    assert _counts(alone)[0] == end + N * 20 and status(alone)["status"] == "completed"
    assert _counts(dirs[0])[0] == end  # the other member untouched


def _load(path):
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def test_sweeps_do_not_pack_isaacgym_runs(tmp_path):
    """A sweep's run is the run its seed names: Isaac Gym's members are not seeded apart, so auto runs them one
    process a seed (one line says why) and an integer K is refused; an MJCF config still packs."""
    from pql_scaling.experiments.sweep import packing, sizing
    from pql_scaling.experiments.sweep.expand import Run
    from pql_scaling.experiments.sweep.spec import SpecError

    base = ["task=Ant", "backend=isaacgym", "mode=sync", "num_envs=8"]
    runs = [
        Run(str(tmp_path / ("r/s%d" % s)), base + ["seed=%d" % s], {}, s, "ant/s%d" % s) for s in range(3)
    ]
    groups, alone, lines = packing.pack(runs, "auto", str(tmp_path), sizing.Target(2**40, "x"))
    assert not groups and len(alone) == 3
    assert len(lines) == 1 and "one process a run" in lines[0] and "backend=isaacgym" in lines[0], lines
    assert "not be the run its seed names" in lines[0]
    with pytest.raises(SpecError, match="cannot train as a population: backend=isaacgym"):
        packing.pack(runs, 2, str(tmp_path))
