"""Asymmetric critic observations (issue 22): the critic (V-learner, its target, the critic inside the actor loss)
reads the env's privileged `critic_obs`, normalised by their own statistics; the actor reads the policy's.

Each test fails if the critic is fed the policy observation: the hidden-coin env below gives the policy zeros
and only the critic the coin that decides the reward, so a critic fed the policy's observation cannot tell the
coins apart. Sync, trio, resume and a population of two train through a native task with
`env_kwargs.privileged_critic=1`; tests/test_critic_obs_unchanged.py pins the symmetric path bit for bit."""

import json
import os

import pytest
import torch

from pql_scaling import config as config_lib
from pql_scaling import envs
from pql_scaling.config import ConfigError
from pql_scaling.core.replay import Normalizer
from pql_scaling.rundir.rundir import RunDir
from pql_scaling.runtime.train import Session, train
from tests.runs import TINY_PENDULUM, rows, same_curve, status

SMALL = TINY_PENDULUM + ["eval.every_steps=0", "log.checkpoint_every_s=1e9"]
PRIVILEGED = ["env_kwargs.privileged_critic=1"]


class HiddenCoinEnv:
    """One-step episodes whose reward is a coin (+1 or -1) that only the critic sees: the policy observes zeros,
    the critic observation is the coin. Q(s, a) is the coin (times the reward scale) whatever the action."""

    obs_dim, act_dim, critic_obs_dim, max_episode_steps, backend = 2, 1, 1, 1, "hidden_coin"

    def __init__(self, num_envs, seed=0):
        self.num_envs, self.device = num_envs, torch.device("cpu")
        self.gen = torch.Generator().manual_seed(seed)
        self.critic_obs = self._flip()

    def _flip(self):
        return torch.randint(0, 2, (self.num_envs, 1), generator=self.gen).float() * 2 - 1

    def reset(self):
        self.critic_obs = self._flip()
        return torch.zeros(self.num_envs, self.obs_dim)

    def step(self, action):
        reward, final = self.critic_obs[:, 0].clone(), self.critic_obs
        self.critic_obs = self._flip()  # every episode ends: the next one's coin
        done = torch.ones(self.num_envs, dtype=torch.bool)
        zeros = torch.zeros(self.num_envs, self.obs_dim)
        return zeros, reward, done, ~done, {"final_obs": zeros, "final_critic_obs": final}


def _session(tmp_path, env, extra=()):
    cfg = config_lib.load(SMALL + ["save_replay=false", "algo.nstep=1"] + list(extra))
    run = RunDir(str(tmp_path / "run"))
    return Session(cfg, run, env), run


def _train_steps(s, steps):
    for _ in range(steps):
        s.actor.step(s.p_learner.actor)
        if s.replay.size >= s.learning_starts:
            s.v_learner.learn(s.replay)
            s.p_learner.learn(s.replay)


def test_the_critic_learns_a_value_only_its_own_observation_carries(tmp_path):
    """The policy sees zeros, the critic the coin: the learned Q must tell +1 from -1 (0.1 apart at reward scale
    0.1 each way). A critic fed the policy observation sees the same zeros for both coins and learns their mean."""
    env = HiddenCoinEnv(16)
    s, run = _session(tmp_path, env, ["algo.reward_scale=0.1", "algo.critic_lr=3e-3"])
    try:
        _train_steps(s, 150)
        coins = torch.tensor([[1.0], [-1.0]])
        with torch.no_grad():
            q = s.v_learner.critic(s.norm.critic(coins), torch.zeros(2, 1)).mean(0)
        loss = s.v_learner.pop_stats()["critic_loss"]
    finally:
        run.close()
    assert q[0] - q[1] > 0.15, q  # the truth: 0.2 (Q = +0.1 and -0.1)
    assert abs(float(q[0]) - 0.1) < 0.05 and abs(float(q[1]) + 0.1) < 0.05, q
    assert loss < 0.2 * 2 * 0.1**2  # twin critics' squared errors, far below the coin's variance


def test_the_critic_network_reads_critic_obs_and_the_actor_policy_obs(tmp_path):
    """The critic's first layer takes critic_obs_dim + act_dim inputs, and every observation that reaches the
    critic, its target (V-learner) and the critic inside the actor loss (P-learner) is a normalised critic
    observation from the replay; the actor sees policy observations only."""
    env = envs.make("pendulum", 8, seed=0, privileged_critic=1)
    c_dim = env.critic_obs_dim
    assert c_dim == env.obs_dim + env.task.state_dim + 1
    s, run = _session(tmp_path, env, PRIVILEGED)
    seen = {"critic": [], "target": [], "actor": []}

    def record(role):
        def hook(module, args):
            x = args[0].detach()
            if role == "actor":
                seen[role].append(x.shape[1])
                return
            # every critic input row must be a replay row's critic observation, normalised with the statistics
            # of this very update
            data, size = s.replay.data, s.replay.size
            rows_ = torch.cat([data["critic_obs"][:size], data["next_critic_obs"][:size]])
            dist = torch.cdist(x, s.norm.critic(rows_), compute_mode="donot_use_mm_for_euclid_dist")
            ok = x.shape[1] == c_dim and bool((dist.min(1).values < 1e-6).all())
            seen[role].append(ok)

        return hook

    hooks = [
        s.v_learner.critic.register_forward_pre_hook(record("critic")),
        s.v_learner.critic_target.register_forward_pre_hook(record("target")),
        s.p_learner.actor.register_forward_pre_hook(record("actor")),
    ]
    try:
        _train_steps(s, 12)
        assert s.v_learner.updates > 0 and s.p_learner.updates > 0
        for h in hooks:
            h.remove()
        first = s.v_learner.critic.net.layers[0].weight
        assert first.shape[1] == c_dim + env.act_dim  # (ensemble, inputs, outputs)
        assert s.v_learner.critic_target.net.layers[0].weight.shape[1] == c_dim + env.act_dim
        assert s.p_learner.actor.net.layers[0].weight.shape[1] == env.obs_dim
        assert s.replay.data["critic_obs"].shape[1] == c_dim and s.replay.data["obs"].shape[1] == env.obs_dim
        # V-learner: online critic and target; P-learner: the critic inside the actor loss (the same module)
        n_updates = s.v_learner.updates + s.p_learner.updates
        assert len(seen["critic"]) == n_updates and len(seen["target"]) == s.v_learner.updates
        assert all(seen["critic"]) and all(seen["target"])
        assert seen["actor"] and set(seen["actor"]) == {env.obs_dim}  # the actor: policy observations only
    finally:
        run.close()
    assert s.norm.critic.mean.shape == (c_dim,)  # the critic observation's own statistics
    assert not torch.equal(s.norm.critic.mean[: env.obs_dim], torch.zeros(env.obs_dim))


def _facts(path):
    with open(os.path.join(path, "run.json")) as f:
        return json.load(f)


def test_sync_and_trio_train_with_critic_obs_and_count_its_flops(tmp_path):
    """Both modes train, evaluate (the policy on its own observation) and count the critic's FLOPs at its input
    size; the trio run resumes from its checkpoint."""
    base = SMALL + PRIVILEGED + ["max_env_steps=800", "eval.every_steps=400", "eval.episodes=2"]
    sync_dir = train(base + ["run_dir=%s" % (tmp_path / "sync")], quiet=True)
    trio_dir = train(base + ["mode=trio", "run_dir=%s" % (tmp_path / "trio")], quiet=True)
    plain = train(SMALL + ["max_env_steps=80", "run_dir=%s" % (tmp_path / "plain")], quiet=True)
    for path in (sync_dir, trio_dir):
        assert status(path)["status"] == "completed"
        last = rows(path)[-1]
        assert last["env_steps"] == 800 and last["critic_updates"] > 0 and last["policy_updates"] > 0
        assert last["eval_episodes"] == 2
    a, b, p = _facts(sync_dir), _facts(trio_dir), _facts(plain)
    assert a["critic_obs_dim"] == b["critic_obs_dim"] == 3 + 2 + 1 and p["critic_obs_dim"] == 0
    # sync and trio count the same updates (exact ratios) and the same FLOPs per update
    assert rows(sync_dir)[-1]["critic_updates"] == rows(trio_dir)[-1]["critic_updates"]
    assert a["flops_per_critic_update"] == b["flops_per_critic_update"]
    # the critic's first layer grows by (6 - 3) inputs x 32 widths x 2 twins; the actor is the same
    assert a["critic_params"] - p["critic_params"] == 3 * 32 * 2 and a["actor_params"] == p["actor_params"]
    extra = 3 * 32 * 2 * 2 * 64  # 2mnk per twin over the batch, per forward of the first layer
    # critic update: 2 forwards (online + target) + the first layer's weight gradient; policy update: the critic
    # forward + its input-only backward
    assert a["flops_per_critic_update"] - p["flops_per_critic_update"] == 3 * extra
    assert a["flops_per_policy_update"] - p["flops_per_policy_update"] == 2 * extra
    train(["resume=" + trio_dir, "max_env_steps=1200"], quiet=True)
    assert status(trio_dir)["status"] == "completed" and rows(trio_dir)[-1]["env_steps"] == 1200


def test_resume_with_critic_obs_continues_bit_for_bit_and_refuses_a_mismatch(tmp_path):
    """A sync run with critic observations stopped and resumed (replay segments included) logs what an
    uninterrupted one does; resuming it without them, or a run without them with them, is refused by name."""
    base = SMALL + PRIVILEGED + ["save_replay=true", "num_envs=4", "log.every_steps=20"]
    whole = train(base + ["max_env_steps=1600", "run_dir=%s" % (tmp_path / "whole")], quiet=True)
    part = str(tmp_path / "part")
    train(base + ["max_env_steps=800", "run_dir=" + part], quiet=True)
    assert os.listdir(os.path.join(part, "checkpoints", "replay"))
    with pytest.raises(ConfigError, match="no critic observation"):
        train(["resume=" + part, "max_env_steps=1600", "env_kwargs.privileged_critic=0"], quiet=True)
    train(["resume=" + part, "max_env_steps=1600"], quiet=True)
    assert status(part)["status"] == "completed"
    a, b = same_curve(rows(whole)), same_curve(rows(part))
    assert len(a) == len(b) == 20 and a == b
    plain = train(SMALL + ["max_env_steps=80", "run_dir=%s" % (tmp_path / "plain")], quiet=True)
    with pytest.raises(ConfigError, match="critic_obs_dim=6"):
        train(["resume=" + plain, "max_env_steps=160"] + PRIVILEGED, quiet=True)


def test_old_replay_segments_without_critic_obs_are_refused_by_name(tmp_path):
    from pql_scaling.core.replay import Replay
    from pql_scaling.rundir.replay_store import ReplayStore

    old = Replay(64, 3, 1, 8, "cpu")
    old.add(*(torch.ones(8, d) if d else torch.ones(8) for d in (3, 1, 0, 3, 0, 0)))
    ReplayStore(str(tmp_path), old.capacity).save(old)
    new = Replay(64, 3, 1, 8, "cpu", critic_obs_dim=6)
    with pytest.raises(ValueError, match="critic observations differ"):
        ReplayStore(str(tmp_path), new.capacity).load(new, old.rows)


def test_a_population_of_two_with_critic_obs_keeps_its_members_apart(tmp_path):
    """Each member its own normalisers (the critic observation's too), nets and replay: member 0 of a population
    of two logs the same metrics bit for bit whatever member 1's seed, and a member's checkpoint resumes it
    alone as a single run with critic observations."""
    base = SMALL + PRIVILEGED + ["max_env_steps=800", "seed=3", "population.size=2"]
    pops = []
    for other in (4, 9):
        root = train(
            base + ["population.seeds=[3,%d]" % other, "run_dir=%s" % (tmp_path / ("pop%d" % other))],
            quiet=True,
        )
        with open(os.path.join(root, "population.json")) as f:
            pops.append(json.load(f)["members"])
    (a0, a1), (b0, b1) = pops
    assert same_curve(rows(a0)) == same_curve(rows(b0))
    assert same_curve(rows(a1)) != same_curve(rows(b1))
    assert _facts(a1)["critic_obs_dim"] == 6
    out = train(["resume=" + a1, "max_env_steps=960"], quiet=True)
    assert status(out)["status"] == "completed" and rows(out)[-1]["env_steps"] == 960


def test_a_population_keeps_each_members_critic_statistics():
    norm = Normalizer(3, "cpu", members=2, critic_dim=5)
    x = torch.cat([torch.zeros(4, 5), torch.ones(4, 5) * 7])  # member-major rows
    norm.critic.update(x)
    assert torch.equal(norm.critic.mean[0], torch.zeros(1, 5))  # (the prior count 1e-4 weighs the start 0)
    assert torch.allclose(norm.critic.mean[1], 7 * torch.ones(1, 5), atol=1e-3)
    assert torch.equal(norm.mean, torch.zeros(2, 1, 3))  # the policy's statistics are apart


def test_an_env_that_breaks_the_critic_obs_contract_is_named(tmp_path):
    class NoFinal(HiddenCoinEnv):
        def step(self, action):
            out = super().step(action)
            del out[4]["final_critic_obs"]
            return out

    s, run = _session(tmp_path, NoFinal(4))
    try:
        with pytest.raises(ValueError, match="final_critic_obs"):
            s.actor.step(s.p_learner.actor)
    finally:
        run.close()
    bad = HiddenCoinEnv(4)
    bad.critic_obs_dim = 3
    with pytest.raises(ValueError, match="critic_obs_dim=3 but its critic_obs"):
        _session(tmp_path, bad)


# ---------------------------------------------------------------- perf.compile (tests/test_compile.py's set-up)

C_OBS = 5


def _compile_learners(kind, *extra):
    """tests/test_compile.py's make() with a privileged critic observation of C_OBS columns in the replay."""
    from pql_scaling.core import nets
    from pql_scaling.core.replay import Replay
    from pql_scaling.runtime.learner import PLearner, VLearner
    from tests.test_compile import ACT, ENVS, KINDS, OBS

    cfg = config_lib.load(
        ["task=pendulum", "algo.batch_size=32", "net.actor_hidden=[16]", "net.critic_hidden=[16,16]"]
        + KINDS[kind]
        + list(extra)
    )
    torch.manual_seed(0)
    actor, critic = nets.build(cfg, OBS, ACT, C_OBS)
    norm = Normalizer(OBS, "cpu", critic_dim=C_OBS)
    replay = Replay(64, OBS, ACT, ENVS, "cpu", critic_obs_dim=C_OBS)
    g = torch.Generator().manual_seed(1)
    for k, v in replay.data.items():
        v.copy_(torch.rand(v.shape, generator=g) * 2 - (1 if k != "weight" else 0))
    replay.data["discount"].clamp_(min=0)
    replay.rows = 48
    norm.update(replay.data["obs"][:48])
    norm.critic.update(replay.data["critic_obs"][:48] * 3 + 1)  # statistics of their own
    return VLearner(cfg, critic, actor, norm, "cpu"), PLearner(cfg, actor, critic, norm, "cpu", ACT), replay


@pytest.mark.parametrize("kind", ["pql", "sac", "c51"])
def test_compiled_update_with_critic_obs_is_one_graph(kind):
    from tests.test_compile import window

    v, p, replay = _compile_learners(kind, "perf.compile=default")
    for learner in (v, p):
        out = torch._dynamo.explain(learner.step)(window(replay, replay.size, 0))
        assert out.graph_break_count == 0 and out.graph_count == 1, [b.reason for b in out.break_reasons]
    torch._dynamo.reset()


def test_compiled_update_with_critic_obs_matches_eager():
    """Through inductor: 2 critic and policy updates with critic observations against eager (tolerances as
    tests/test_compile.py's), the RNG eager's so both draw the same batches."""
    import torch._inductor.config as inductor_config

    from tests.test_compile import state

    v0, p0, replay = _compile_learners("pql")
    v1, p1, _ = _compile_learners("pql", "perf.compile=default")
    with inductor_config.patch(fallback_random=True):
        for step in range(2):
            for a, b in ((v0, v1), (p0, p1)):
                torch.manual_seed(20 + step)
                a.learn(replay)
                torch.manual_seed(20 + step)
                b.learn(replay)
    for a, b in zip(state(v0, p0), state(v1, p1)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch._dynamo.reset()
