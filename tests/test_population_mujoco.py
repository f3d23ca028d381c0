"""Populations on backend=mujoco: K x num_envs MJCF envs in one rollout pool, member k's envs exactly those of a
single run with its seed (initial states, reset noise, physics), each member its own run directory and
checkpoint (its envs' state in a single run's format). Hopper with short episodes: random and early policies
topple it, so members reset at different times and a shared or miscounted reset stream shows at once."""

import os

import pytest
import torch

pytest.importorskip("mujoco")

from pql_scaling import config as config_lib  # noqa: E402
from pql_scaling import envs  # noqa: E402
from pql_scaling.rundir import schema  # noqa: E402
from pql_scaling.runtime.train import train  # noqa: E402
from tests.test_population import member_dirs, rows  # noqa: E402

HOPPER = [
    "task=Hopper",
    "backend=mujoco",
    "mode=sync",
    "num_envs=4",
    "algo.batch_size=32",
    "net.actor_hidden=[16]",
    "net.critic_hidden=[16]",
    "algo.critic_updates_per_step=1",
    "threads=1",
    "log.live=off",
    "algo.warmup_steps=4",
    "log.every_steps=40",
    "eval.every_steps=400",
    "eval.episodes=2",
    "env_kwargs={max_episode_steps: 60}",
    "max_env_steps=800",
]
COUNTS = ("env_steps", "critic_updates", "policy_updates", "flops", "episodes", "eval_episodes")


def _outputs(out):
    next_obs, reward, terminated, truncated, info = out
    return [next_obs, reward, terminated, truncated, info["final_obs"]]


def _same_as_singles(pop, singles, action, n):
    got = _outputs(pop.step(action))
    for k, single in enumerate(singles):
        want = _outputs(single.step(action[k * n : (k + 1) * n]))
        for name, a, b in zip(("next_obs", "reward", "terminated", "truncated", "final_obs"), got, want):
            assert torch.equal(a[k * n : (k + 1) * n], b), "member %d: %s" % (k, name)
    return got[2]


def _equal(a, b):
    """Two state_dicts hold the same tensors (nested dicts, lists)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return torch.equal(a, b)


@pytest.mark.parametrize("backend", ["mujoco", "mjwarp"])
def test_a_members_envs_are_its_single_runs_envs_bit_for_bit(backend):
    """Two members (seeds 3, 5) of 3 envs each against two single envs with those seeds, under the same actions:
    every output bit for bit, through resets at different times; a member's state_dict is the single env's, and
    loading it into a fresh population continues identically. mjwarp on Warp's CPU device."""
    if backend == "mjwarp":
        pytest.importorskip("mujoco_warp")
    n, seeds, kw = 3, (3, 5), {"backend": backend, "device": "cpu", "max_episode_steps": 30}
    pop = envs.make("Hopper", 2 * n, seed=3, members=2, seeds=list(seeds), **kw)
    singles = [envs.make("Hopper", n, seed=s, **kw) for s in seeds]
    assert torch.equal(pop.reset(), torch.cat([s.reset() for s in singles]))
    gen = torch.Generator().manual_seed(0)
    ended = torch.zeros(2 * n)
    for _ in range(45):
        ended += _same_as_singles(pop, singles, torch.rand((2 * n, pop.act_dim), generator=gen) * 2 - 1, n)
    assert (ended.view(2, n).sum(1) > 0).all() and not torch.equal(ended[:n], ended[n:]), ended
    fresh = envs.make("Hopper", 2 * n, seed=0, members=2, seeds=[0, 1], **kw)
    for k, single in enumerate(singles):
        assert _equal(pop.member_state_dict(k), single.state_dict()), k
        fresh.load_member_state_dict(k, single.state_dict())
    for _ in range(20):
        _same_as_singles(fresh, singles, torch.rand((2 * n, pop.act_dim), generator=gen) * 2 - 1, n)
    for env in [pop, fresh] + singles:
        env.close()


def test_a_mujoco_population_trains_each_member_as_its_own_run(tmp_path):
    """A population of 2 on mujoco: member 0's metrics.jsonl bit for bit the same whatever member 1's learning
    rate and beside a third member; each member the single run with its seed (exact counts, returns and losses
    to float rounding: the population's batched matmuls round differently); each member an ordinary run
    directory whose checkpoint resumes it alone as a single mujoco run."""

    def population(name, lrs):
        vary = "population.vary={algo.critic_lr: [%s]}" % ", ".join(map(str, lrs))
        root = str(tmp_path / name)
        size = "population.size=%d" % len(lrs)
        return member_dirs(train(HOPPER + [size, vary, "run_dir=" + root], quiet=True))

    a, b = population("a", [1e-3, 1e-3]), population("b", [1e-3, 3e-2])
    three = population("three", [1e-3, 1e-3, 1e-3])
    assert rows(a[0]) == rows(b[0]) == rows(three[0]) and rows(a[1]) == rows(three[1])
    assert rows(a[1]) != rows(b[1])  # the rate reached member 1
    for k, seed in enumerate((0, 1)):
        single = rows(
            train(HOPPER + ["seed=%d" % seed, "run_dir=%s" % (tmp_path / ("s%d" % seed))], quiet=True)
        )
        mine = rows(a[k])
        assert [[r[c] for c in COUNTS] for r in mine] == [[r[c] for c in COUNTS] for r in single]
        for x, y in zip(mine, single):
            for key in ("return_mean", "eval_return_mean", "critic_loss", "actor_loss"):
                assert (x[key] is None) == (y[key] is None), key
                if x[key] is not None:
                    assert x[key] == pytest.approx(y[key], rel=1e-3, abs=1e-4), (k, x["env_steps"], key)
        assert sum(r["episodes"] for r in mine) > 0 and sum(r["eval_episodes"] or 0 for r in mine) == 4
        cfg = config_lib.load([], base=_yaml(os.path.join(a[k], schema.CONFIG)))
        assert (cfg.seed, cfg.population.size, cfg.backend, cfg.task) == (seed, 1, "mujoco", "Hopper")
        facts = schema.read_facts(os.path.join(a[k], schema.FACTS))
        assert facts["backend"] == "mujoco" and facts["population"]["index"] == k and facts["num_envs"] == 4
        assert schema.read_status(os.path.join(a[k], schema.STATUS))["status"] == "completed"
        assert mine[-1]["env_steps"] == 800
    out = train(["resume=" + a[1], "max_env_steps=1200"], quiet=True)
    steps = [r["env_steps"] for r in rows(out)]
    assert steps[-1] == 1200 and all(x < y for x, y in zip(steps, steps[1:]))


def test_an_mjwarp_population_on_warps_cpu_device(tmp_path):
    """backend=mjwarp takes the same path (Warp's CPU device here): member 0 bit for bit the same whatever
    member 1's learning rate, each member an ordinary run directory with exact counts."""
    pytest.importorskip("mujoco_warp")
    mjwarp = [a for a in HOPPER if not a.startswith(("backend=", "max_env_steps=", "eval.every_steps="))]
    mjwarp += ["backend=mjwarp", "device=cpu", "max_env_steps=400", "eval.every_steps=200"]

    def population(name, lrs):
        vary = "population.vary={algo.critic_lr: [%s]}" % ", ".join(map(str, lrs))
        root = train(mjwarp + ["population.size=2", vary, "run_dir=%s" % (tmp_path / name)], quiet=True)
        return member_dirs(root)

    a, b = population("a", [1e-3, 1e-3]), population("b", [1e-3, 3e-2])
    assert rows(a[0]) == rows(b[0]) and rows(a[1]) != rows(b[1])
    for k, d in enumerate(a):
        r = rows(d)
        assert r[-1]["env_steps"] == 400 and r[-1]["critic_updates"] > 0
        assert sum(x["eval_episodes"] or 0 for x in r) == 4
        facts = schema.read_facts(os.path.join(d, schema.FACTS))
        assert facts["backend"] == "mjwarp" and facts["population"]["index"] == k
        assert schema.read_status(os.path.join(d, schema.STATUS))["status"] == "completed"
        ck = torch.load(os.path.join(d, "checkpoints", "last.pt"), map_location="cpu", weights_only=False)
        assert ck["env"]["sim"]["qpos"].shape[0] == 4  # the member's own worlds, as its single run's


def _yaml(path):
    import yaml

    with open(path) as f:
        raw = yaml.safe_load(f)
    raw["run_dir"] = None
    return raw


def test_a_killed_mujoco_population_resumes_every_member(tmp_path):
    """SIGKILL a mujoco population mid-run; `resume=` continues every member from its checkpoint (its envs'
    state in a single run's format) to the end, one timeline each."""
    import signal
    import subprocess
    import sys
    import time

    root = str(tmp_path / "pop")
    args = HOPPER[:-1] + ["population.size=2", "max_env_steps=400000", "log.checkpoint_every_s=0.5"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pql_scaling.cli", "train", "run_dir=" + root] + args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    prev = os.path.join(root, "m01-s1", "checkpoints", "prev.pt")
    while not os.path.exists(prev) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(rows(d)[-1]["env_steps"] for d in member_dirs(root))
    assert killed_at > 0
    out = train(["resume=" + root, "max_env_steps=%d" % (killed_at + 400)], quiet=True)
    for d in member_dirs(out):
        steps = [r["env_steps"] for r in rows(d)]
        assert all(x < y for x, y in zip(steps, steps[1:])), d
        assert steps[-1] == killed_at + 400
        assert schema.read_status(os.path.join(d, schema.STATUS))["status"] == "completed"


def test_populations_refuse_backends_without_members():
    with pytest.raises(config_lib.ConfigError, match="native, mujoco, mjwarp and isaacgym"):
        config_lib.load(["task=HalfCheetah", "backend=gymnasium", "mode=sync", "population.size=2"])


def test_population_auto_sizes_mjcf_members():
    """launcher.population=auto sizes a member of an MJCF config by its own task's dims (mjwarp's read off the
    CPU backend: a sweep's driver needs no GPU), where it once built a native env of that task and failed."""
    from pql_scaling.experiments.sweep import sizing
    from pql_scaling.runtime import resources

    for over in (["backend=mujoco"], ["backend=mjwarp", "device=cpu", "env_kwargs={nconmax: 64}"]):
        cfg = config_lib.load(["task=HalfCheetah", "mode=sync"] + over)
        assert sizing._dims(cfg) == (17, 6, 0)
        ring = (cfg.algo.buffer_size // cfg.num_envs) * cfg.num_envs
        assert sizing.member_bytes(cfg)["replay"] == ring * resources.replay_row_bytes(17, 6)


def test_a_trio_population_on_mujoco_trains_each_member_at_the_exact_ratios(tmp_path):
    """mode=trio population.size=2 on HalfCheetah (mujoco): the actor steps both members' envs in the one rollout
    pool, the V-learner updates the 2 critics and the P-learner the 2 actors in their own processes; each member
    ends completed with its own run directory, the trio's exact counts (= sync mode's) and its own evaluation."""
    from tests.runs import status
    from tests.test_trio import expected_counts

    n, batch, utd, ratio, steps = 8, 32, 2, 0.5, 40
    root = train(
        [
            "task=HalfCheetah",
            "backend=mujoco",
            "mode=trio",
            "population.size=2",
            "num_envs=%d" % n,
            "algo.batch_size=%d" % batch,
            "algo.critic_updates_per_step=%d" % utd,
            "algo.policy_updates_per_critic_update=%s" % ratio,
            "algo.nstep=3",
            "algo.warmup_steps=4",
            "net.actor_hidden=[16]",
            "net.critic_hidden=[16]",
            "threads=1",
            "env_kwargs={nthread: 1, max_episode_steps: 20}",
            "log.live=off",
            "log.every_steps=10",  # actor steps: a row every 80 env steps
            "eval.every_steps=160",
            "eval.episodes=1",
            "max_time_s=300",
            "max_env_steps=%d" % (n * steps),
            "run_dir=%s" % (tmp_path / "pop"),
        ],
        quiet=True,
    )
    critic, policy = expected_counts(steps, n, batch, utd, ratio)
    dirs = member_dirs(root)
    assert len(dirs) == 2 and not os.listdir(os.path.join(root, "checkpoints"))  # the learners' files removed
    for k, d in enumerate(dirs):
        assert status(d)["status"] == "completed"
        r = rows(d)
        assert (r[-1]["env_steps"], r[-1]["critic_updates"], r[-1]["policy_updates"]) == (
            n * steps,
            critic,
            policy,
        )
        assert sum(x["episodes"] for x in r) == 2 * n and sum(x["eval_episodes"] or 0 for x in r) == 2
        facts = schema.read_facts(os.path.join(d, schema.FACTS))
        assert facts["mode"] == "trio" and facts["backend"] == "mujoco" and facts["population"]["index"] == k
        assert facts["population"]["envs_seeded_apart"] is True
        ck = torch.load(os.path.join(d, "checkpoints", "last.pt"), map_location="cpu", weights_only=False)
        assert (ck["v_learner"]["updates"], ck["p_learner"]["updates"], ck["actor"]["steps"]) == (
            critic,
            policy,
            steps,
        )
        assert ck["env"]["state"].shape[0] == n  # the member's own envs, as its single run's
