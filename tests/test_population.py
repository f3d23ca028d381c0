"""Populations (issue 21): K agents as one batch in one process, each its own ordinary run directory.

Each test fails on a population whose members share anything: an RNG stream, a loss mean, a gradient norm, a
learning rate, replay rows or a batch."""

import json
import os

import pytest
import torch

from pql_scaling import config as config_lib
from pql_scaling.config import ConfigError
from pql_scaling.core import nets
from pql_scaling.core.members import Streams
from pql_scaling.core.replay import Normalizer, Replay, Window
from pql_scaling.rundir import schema
from pql_scaling.runtime.learner import PLearner, VLearner
from pql_scaling.runtime.train import train
from tests.runs import TINY_PENDULUM

SMALL = TINY_PENDULUM + ["eval.every_steps=400", "eval.episodes=3", "max_env_steps=1200"]
STAT_KEYS = (
    "env_steps",
    "critic_updates",
    "policy_updates",
    "flops",
    "return_mean",
    "return_std",
    "episodes",
    "eval_return_mean",
    "eval_return_std",
    "eval_episodes",
)
LEARNED = ("critic_loss", "q_mean", "actor_loss", "action_abs_mean")


def rows(path):
    with open(os.path.join(path, schema.METRICS)) as f:
        return [{k: r.get(k) for k in STAT_KEYS + LEARNED} for r in map(json.loads, f)]


def member_dirs(root):
    with open(os.path.join(root, "population.json")) as f:
        return json.load(f)["members"]


def run_population(tmp_path, name, *extra):
    root = train(SMALL + ["run_dir=%s" % (tmp_path / name)] + list(extra), quiet=True)
    return member_dirs(root)


def test_member_zero_does_not_depend_on_the_others(tmp_path):
    """Member 0's metrics.jsonl, bit for bit: beside 1 other member or 4 others, and whatever learning rate
    member 1 trains with."""
    two = run_population(tmp_path, "two", "population.size=2")
    five = run_population(tmp_path, "five", "population.size=5")
    lr_a = run_population(
        tmp_path, "a", "population.size=2", "population.vary={algo.critic_lr: [5e-4, 1e-3]}"
    )
    lr_b = run_population(
        tmp_path, "b", "population.size=2", "population.vary={algo.critic_lr: [5e-4, 3e-2]}"
    )
    assert len(rows(two[0])) >= 10 and sum(r["eval_episodes"] or 0 for r in rows(two[0])) == 9
    assert rows(two[0]) == rows(five[0])
    assert rows(two[1]) == rows(five[1])  # and member 1 beside member 0 only, or beside 3 more
    assert rows(lr_a[0]) == rows(lr_b[0])
    assert rows(lr_a[1]) != rows(lr_b[1])  # the rate did reach member 1
    assert rows(two[0]) != rows(two[1])  # members differ: their own seeds


def test_a_population_of_one_is_a_single_run_bit_for_bit(tmp_path):
    single = train(SMALL + ["run_dir=%s" % (tmp_path / "single"), "seed=3"], quiet=True)
    one = train(SMALL + ["run_dir=%s" % (tmp_path / "one"), "seed=3", "population.size=1"], quiet=True)
    assert rows(single) == rows(one)


def test_each_member_is_an_ordinary_run_directory(tmp_path):
    dirs = run_population(
        tmp_path,
        "p",
        "population.size=3",
        "population.seeds=[7,11,13]",
        "population.vary={algo.actor_lr: [1e-4, 2e-4, 3e-4]}",
    )
    for k, (path, seed) in enumerate(zip(dirs, (7, 11, 13))):
        cfg = config_lib.load([], base=_yaml(os.path.join(path, schema.CONFIG)))
        assert (cfg.seed, cfg.population.size, cfg.algo.actor_lr) == (seed, 1, [1e-4, 2e-4, 3e-4][k])
        facts = schema.read_facts(os.path.join(path, schema.FACTS))
        assert facts["population"]["size"] == 3 and facts["population"]["index"] == k
        assert facts["num_envs"] == 8 and facts["seed"] == seed
        one = nets.build(cfg, 3, 1)
        assert facts["flops_per_critic_update"] == nets.update_flops(*one, 64)[0]
        status = schema.read_status(os.path.join(path, schema.STATUS))
        assert status["status"] == "completed"
        r = rows(path)
        assert r[-1]["env_steps"] == 1200 and r[-1]["critic_updates"] > 0


def _yaml(path):
    import yaml

    with open(path) as f:
        raw = yaml.safe_load(f)
    raw["run_dir"] = None
    return raw


def _learners(members, critic_lrs=None, batch_sizes=None):
    vary = {}
    if critic_lrs:
        vary["algo.critic_lr"] = critic_lrs
    if batch_sizes:
        vary["algo.batch_size"] = batch_sizes
    over = ["mode=sync", "algo.batch_size=16", "net.actor_hidden=[8]", "net.critic_hidden=[8]"]
    if members > 1:
        over += ["population.size=%d" % members]
    cfg = config_lib.load(over)
    torch.manual_seed(0)
    seeds = list(range(members))
    actor, critic, states = nets.build_population(cfg, 3, 1, seeds)
    streams = Streams(seeds, "cpu", states)
    norm = Normalizer(3, "cpu", members=members)
    replay = Replay(64, 3, 1, 4 * members, "cpu", members=members)
    g = torch.Generator().manual_seed(1)
    for key, v in replay.data.items():
        v.copy_(torch.rand(v.shape, generator=g))
    replay.rows = 64
    v = VLearner(cfg, critic, actor, norm, "cpu", streams, vary)
    p = PLearner(cfg, actor, critic, norm, "cpu", 1, streams, vary)
    return v, p, replay


def test_a_member_with_learning_rate_zero_keeps_its_weights():
    v, _, replay = _learners(3, critic_lrs=[1e-3, 0.0, 1e-2])
    before = [p.detach().clone() for p in v.critic.parameters()]
    for _ in range(3):
        v.learn(replay)
    for b, p in zip(before, v.critic.parameters()):
        e = p.shape[0] // 3
        assert torch.equal(b[e : 2 * e], p[e : 2 * e])  # member 1: lr 0
        assert not torch.equal(b[:e], p[:e]) and not torch.equal(b[2 * e :], p[2 * e :])


def test_a_members_gradients_come_only_from_its_own_first_rows():
    """Member 1 with batch 6 of the sampled 16: its gradients are those of its first 6 rows only (the same
    update with every later row's weight set to 0 by hand gives the same numbers); member 0 uses all 16."""
    v, _, replay = _learners(2, batch_sizes=[16, 6])
    assert v.batch_size == 16 and v.batch_mask.view(2, 16).sum(1).tolist() == [16.0, 6.0]
    from pql_scaling.core.replay import draw
    from pql_scaling.runtime.learner import value_and_grads

    batch = draw(Window(replay.data, replay.size, 0), 16, v.norm, v.device, 2, v.streams)
    masked = batch._replace(weight=batch.weight * v.batch_mask)
    state = v.streams.state_dict(), torch.get_rng_state()  # the target noise: the same draws each time

    def loss_and_grads(b):
        v.streams.load_state_dict(state[0])
        torch.set_rng_state(state[1])
        grads, (loss, _) = value_and_grads(v.objective, v.named, b, False)
        return loss, grads

    loss, grads = loss_and_grads(masked)
    # member 1's rows 6.. (weight 0) change nothing, whatever their rewards
    poisoned = masked._replace(reward=torch.where(v.batch_mask > 0, masked.reward, masked.reward + 1e3))
    loss2, grads2 = loss_and_grads(poisoned)
    assert torch.equal(loss, loss2) and all(torch.equal(a, b) for a, b in zip(grads, grads2))
    # ... while its rows 0..5 do count, and member 0's rows 6.. too
    for rows in (slice(16, 22), slice(6, 16)):
        reward = masked.reward.clone()
        reward[rows] += 1.0
        loss3, _ = loss_and_grads(masked._replace(reward=reward))
        member = 0 if rows.start < 16 else 1
        assert loss3[member] != loss[member] and loss3[1 - member] == loss[1 - member]


def test_members_gradients_are_their_own():
    """A member's gradients, clip and AdamW step are its own: the same two members trained together and each
    alone as a population of one give the same parameters (within float tolerance: batched matmuls)."""
    v, p, replay = _learners(2)
    for _ in range(3):
        v.learn(replay)
        p.learn(replay)
    # member 1 alone, as a single run: its initial nets, its replay ring, its random stream
    cfg = config_lib.load(
        ["mode=sync", "algo.batch_size=16", "net.actor_hidden=[8]", "net.critic_hidden=[8]"]
    )
    v1, p1, replay1 = _learners(2)  # a fresh population with the same seeds: member 1's initial state
    single_v, single_p = _single_from_member(v1, p1, cfg, 1)
    ring = replay1.capacity
    rows1 = {k: t[ring : 2 * ring].clone() for k, t in replay1.data.items()}
    rep1 = Replay(ring, 3, 1, 4, "cpu", storage=rows1)
    rep1.rows = replay1.rows
    torch.set_rng_state(v1.streams.gens[1].get_state())
    for _ in range(3):
        single_v.learn(rep1)
        single_p.learn(rep1)
    for a, b in zip(single_v.critic.parameters(), v.critic.parameters()):
        e = a.shape[0]
        torch.testing.assert_close(a, b[e : 2 * e], rtol=1e-5, atol=1e-6)
    for a, b in zip(single_p.actor.parameters(), p.actor.parameters()):
        torch.testing.assert_close(a, b[1:2], rtol=1e-5, atol=1e-6)


def _single_from_member(v, p, cfg, k):
    actor, critic = nets.build(cfg, 3, 1)
    with torch.no_grad():
        for net1, net in ((actor, v.actor_view), (critic, v.critic)):
            for a, b in zip(net1.parameters(), net.parameters()):
                e = a.shape[0]
                a.copy_(b[k * e : (k + 1) * e])
    norm = Normalizer(3, "cpu")
    sv = VLearner(cfg, critic, actor, norm, "cpu")
    sp = PLearner(cfg, actor, critic, norm, "cpu", 1)
    return sv, sp


@pytest.mark.parametrize(
    "extra, message",
    [
        (["population.size=2", "mode=sync", "backend=isaaclab"], "native, mujoco, mjwarp and isaacgym"),
        (["population.size=2", "mode=sync", "population.seeds=[1]"], "one per member"),
        (["population.size=2", "mode=sync", "population.vary={num_envs: [8, 16]}"], "sweep over it"),
        (["population.size=2", "mode=sync", "population.vary={algo.critic_lr: [1e-3]}"], "2 values"),
        (["mode=sync", "population.vary={algo.critic_lr: [1e-3]}"], "population.size > 1"),
    ],
)
def test_bad_population_configs_name_the_fix(extra, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        config_lib.load(extra)


def test_a_diverging_member_fails_alone(tmp_path):
    """Member 1's critic learning rate 1e12 makes its losses non-finite: it fails (status and reason say so,
    its last good checkpoint kept), member 0 trains on to the end, exactly as beside a healthy member 1."""
    bad = run_population(
        tmp_path, "bad", "population.size=2", "population.vary={algo.critic_lr: [5e-4, 1e12]}"
    )
    good = run_population(
        tmp_path, "good", "population.size=2", "population.vary={algo.critic_lr: [5e-4, 1e-3]}"
    )
    st = [schema.read_status(os.path.join(d, schema.STATUS)) for d in bad]
    assert st[0]["status"] == "completed" and st[1]["status"] == "failed"
    assert "diverged" in st[1]["reason"] and "resume=" in st[1]["reason"]
    assert os.path.exists(os.path.join(bad[1], "checkpoints", "last.pt"))
    assert rows(bad[0]) == rows(good[0])
    assert "became inf at env step" in st[1]["reason"] or "became nan at env step" in st[1]["reason"]


def test_sigkill_then_resume_gives_every_member_one_timeline(tmp_path):
    """SIGKILL a population mid-run; `resume=` on its directory continues every member from its checkpoint to
    the end: env_steps strictly increasing in each metrics.jsonl (log points past a checkpoint superseded)."""
    import signal
    import subprocess
    import sys
    import time

    root = str(tmp_path / "pop")
    args = SMALL[:-1] + ["population.size=3", "max_env_steps=400000", "log.checkpoint_every_s=0.5"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pql_scaling.cli", "train", "run_dir=" + root] + args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    last = os.path.join(root, "m02-s2", "checkpoints", "prev.pt")
    while not os.path.exists(last) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = [rows(d)[-1]["env_steps"] for d in member_dirs(root)]
    out = train(["resume=" + root, "max_env_steps=%d" % (max(killed_at) + 800)], quiet=True)
    for d in member_dirs(out):
        steps = [r["env_steps"] for r in rows(d)]
        assert all(a < b for a, b in zip(steps, steps[1:])), d
        assert steps[-1] == max(killed_at) + 800
        assert schema.read_status(os.path.join(d, schema.STATUS))["status"] == "completed"


def test_a_members_checkpoint_resumes_it_as_a_single_run(tmp_path):
    dirs = run_population(tmp_path, "p", "population.size=2")
    out = train(["resume=" + dirs[1], "max_env_steps=1600"], quiet=True)
    steps = [r["env_steps"] for r in rows(out)]
    assert steps[-1] == 1600 and all(a < b for a, b in zip(steps, steps[1:]))


def steps_to(path, threshold=-250.0):
    """env steps at the first log point whose training return reaches `threshold` (None: never)."""
    for r in rows(path):
        if r["return_mean"] is not None and r["return_mean"] >= threshold:
            return r["env_steps"]
    return None


def test_a_population_learns_as_separate_runs_do(tmp_path):
    """16 Pendulum seeds (its CPU defaults) as one population and as 16 separate runs: the same distribution of
    env steps to -250 (two-sided Mann-Whitney p > 0.05, medians within 15%). Runs that never get there count
    as the budget (a tie at the top)."""
    from scipy.stats import mannwhitneyu

    budget = 40000
    common = ["task=pendulum", "mode=sync", "threads=1", "log.live=off", "target_return=-250"]
    common += ["max_env_steps=%d" % budget]
    seeds = list(range(100, 116))
    pop = train(
        common + ["population.size=16", "population.seeds=%s" % seeds, "run_dir=%s" % (tmp_path / "p")],
        quiet=True,
    )
    together = [steps_to(d) or budget for d in member_dirs(pop)]
    apart = []
    for s in seeds:
        out = train(common + ["seed=%d" % s, "run_dir=%s" % (tmp_path / ("s%d" % s))], quiet=True)
        apart.append(steps_to(out) or budget)
    p = mannwhitneyu(together, apart, alternative="two-sided").pvalue
    med = lambda x: sorted(x)[len(x) // 2]  # noqa: E731
    print("population", sorted(together), "separate", sorted(apart), "p", p)
    assert p > 0.05, (together, apart, p)
    assert abs(med(together) - med(apart)) <= 0.15 * med(apart), (together, apart)


def test_sac_members_are_independent_and_resume_alone(tmp_path):
    """SAC populations: each member its own temperature and policy noise (member 0 bit for bit beside 1 or 2
    others), and a member's checkpoint resumes as a single SAC run."""
    sac = ["algo.name=sac", "population.size=2"]
    two = run_population(tmp_path, "two", *sac)
    three = run_population(tmp_path, "three", "algo.name=sac", "population.size=3")
    assert rows(two[0]) == rows(three[0]) and rows(two[0]) != rows(two[1])
    with open(os.path.join(two[0], schema.METRICS)) as f:
        assert "alpha" in json.loads(f.readline())
    out = train(["resume=" + two[1], "max_env_steps=1600"], quiet=True)
    assert rows(out)[-1]["env_steps"] == 1600


def _sweep_spec(tmp_path, steps, **launcher):
    return {
        "name": "pop",
        "out": str(tmp_path / "sweep"),
        "base": {
            "task": "pendulum",
            "mode": "sync",
            "num_envs": 8,
            "max_env_steps": steps,
            "algo.batch_size": 64,
            "net.actor_hidden": [32],
            "net.critic_hidden": [32],
            "log.every_steps": 10,
            "algo.warmup_steps": 4,
            "log.checkpoint_every_s": 0.5,
        },
        "grid": {"utd": [0.125, 0.25]},
        "seeds": 3,
        "launcher": dict({"kind": "local", "population": 3, "local": {"runs_per_device": 2}}, **launcher),
    }


def test_a_sweep_packs_seeds_into_populations(tmp_path):
    """launcher.population=3: each UTD's 3 seeds train as one population whose members write the sweep's own
    run directories (each the single run its config says); a rerun launches nothing."""
    from pql_scaling.experiments import sweep

    spec = sweep.load_spec(_sweep_spec(tmp_path, 1200))
    rows = sweep.launch(spec)
    assert [r["state"] for r in rows] == ["completed"] * 6
    pops = os.listdir(os.path.join(spec.out, "_populations"))
    assert len(pops) == 2
    for r in rows:
        cfg = _yaml(os.path.join(r["path"], schema.CONFIG))
        facts = schema.read_facts(os.path.join(r["path"], schema.FACTS))
        assert cfg["seed"] == r["seed"] and facts["population"]["size"] == 3
        assert rows_of(r["path"])[-1]["env_steps"] == 1200
    again = sweep.launch(spec)
    assert [r["launches"] for r in again] == [0] * 6


def rows_of(path):
    return rows(path)


def test_a_killed_sweep_of_populations_resumes_every_run_once(tmp_path):
    """SIGKILL the sweep and its populations (the whole process group, as a dead machine) mid-run; the rerun
    resumes each population from its members' checkpoints: every run completed exactly once, one timeline
    each (env_steps strictly increasing in every metrics.jsonl)."""
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from pql_scaling.experiments import sweep

    d = _sweep_spec(tmp_path, 24000)
    path = str(tmp_path / "spec.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(d, f)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pql_scaling.cli", "sweep", path, "--live", "off"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    spec = sweep.load_spec(path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        got = [r for r in sweep.status(spec) if (r["env_steps"] or 0) >= 2400]
        if len(got) == 6:
            break
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = {r["path"]: r["env_steps"] for r in sweep.status(spec)}
    assert all(0 < s < 24000 for s in killed.values()), killed
    rows = sweep.launch(spec)
    assert [r["state"] for r in rows] == ["completed"] * 6
    for r in rows:
        steps = [x["env_steps"] for x in rows_of(r["path"])]
        assert steps[-1] == 24000 and all(a < b for a, b in zip(steps, steps[1:])), r["path"]
        assert r["launches"] == 1  # the population resumed once, not each run apart


def test_the_population_console_line():
    """One line per population: env steps per member, the members' latest returns as median [min, max] over those
    that have one, evaluation alike, members still training, the clock."""
    from pql_scaling.runtime.population import console_line

    latest = {"return_mean": {0: -300.0, 1: -200.0, 2: -1000.0}, "eval_return_mean": {}}
    line = console_line(12800, 200000, latest, 3, 12.4)
    assert line.startswith("population: 12,800/200,000 env steps per member")
    assert "return median -300.0 [-1000.0, -200.0] (3)" in line and "eval" not in line
    assert line.endswith("3 training  12 s")
    latest = {"return_mean": {}, "eval_return_mean": {0: -150.0, 1: -250.0}}
    line = console_line(400, None, latest, 2, 1.0)
    assert "return -" in line and "eval median -200.0 [-250.0, -150.0] (2)" in line


def test_a_population_prints_its_line_and_member_summaries(tmp_path, capsys):
    train(SMALL + ["run_dir=%s" % (tmp_path / "p"), "population.size=2", "log.console_every_s=0.001"])
    out = capsys.readouterr().out
    lines = [x for x in out.splitlines() if x.startswith("population: ")]
    assert lines and "1,200/1,200 env steps per member" in lines[-1] and "eval median" in lines[-1]
    assert "member 0 (seed 0): completed" in out and "member 1 (seed 1): completed" in out
