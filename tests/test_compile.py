"""perf.compile / perf.amp: each learner's one update function (`Learner.step`) is one graph, computes what
loss.backward() and opt.step() compute, and compiled computes what it does eagerly.

Compiling costs CPU time, so the shapes are tiny and only one configuration goes through inductor;
the graph-break checks trace with dynamo only (no code generation).
"""

import copy

import pytest
import torch

from pql_scaling import config as config_lib
from pql_scaling.core import nets
from pql_scaling.core.members import Streams
from pql_scaling.core.replay import Normalizer, Replay, Window, draw, sample
from pql_scaling.runtime.learner import PLearner, VLearner, soft_update, value_and_grads

OBS, ACT, ENVS = 3, 2, 8
KINDS = {
    "pql": [],
    "sac": ["algo=sac"],
    "c51": ["algo.distributional=true", "algo.v_min=-5", "algo.v_max=5", "algo.num_atoms=11"],
}


def make(kind, *extra, device="cpu"):
    cfg = config_lib.load(
        [
            "task=pendulum",
            "device=%s" % device,
            "algo.batch_size=32",
            "net.actor_hidden=[16]",
            "net.critic_hidden=[16,16]",
            "algo.weight_decay=0.01",
        ]
        + KINDS[kind]
        + list(extra)
    )
    torch.manual_seed(0)
    actor, critic = (m.to(device) for m in nets.build(cfg, OBS, ACT))
    norm = Normalizer(OBS, device)
    replay = Replay(64, OBS, ACT, ENVS, device)
    g = torch.Generator().manual_seed(1)
    for k, v in replay.data.items():
        v.copy_(torch.rand(v.shape, generator=g) * (2 if k != "weight" else 1) - (1 if k != "weight" else 0))
    replay.data["discount"].clamp_(min=0)
    replay.rows = 48  # partly filled: the sampler's bound matters
    norm.update(replay.data["obs"][:48])
    v = VLearner(cfg, critic, actor, norm, device)
    p = PLearner(cfg, actor, critic, norm, device, ACT)
    return cfg, v, p, replay


def state(v, p):
    return [
        t.detach().clone()
        for t in list(v.critic.parameters()) + list(v.critic_target.parameters()) + list(p.actor.parameters())
    ] + [v.stats.clone(), p.stats.clone()]


def window(replay, size, start):
    return Window(replay.data, torch.tensor(size), torch.tensor(start))


@pytest.mark.parametrize("amp", ["off", "bf16"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_update_is_one_graph(kind, amp):
    """No graph breaks anywhere in either learner's whole update, the replay gather included (dynamo's
    trace; no inductor needed), with and without bf16 autocast inside torch.func's gradient (the
    compiled_bf16 / graphed_bf16 modes)."""
    _, v, p, replay = make(kind, "perf.compile=default", "perf.amp=%s" % amp)
    for learner in (v, p):
        out = torch._dynamo.explain(learner.step)(window(replay, replay.size, 0))
        assert out.graph_break_count == 0 and out.graph_count == 1, (
            kind,
            [b.reason for b in out.break_reasons],
        )
    torch._dynamo.reset()


def autograd_update(learner, replay, size, start):
    """The update as loss.backward() and opt.step() on the module's own parameters, the reference."""
    batch = draw(
        sample(replay.data, learner.batch_size, size, start),
        learner.batch_size,
        learner.norm,
        torch.device("cpu"),
    )
    loss, aux = learner.objective(batch)
    learner.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(learner.opt.param_groups[0]["params"], learner.grad_clip, foreach=True)
    learner.opt.step()
    if learner.target is not None:
        soft_update(learner.target, learner.net, learner.tau)
    learner.stats += torch.stack([loss.detach(), aux.detach(), torch.ones_like(aux)])


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_update_is_autograd_and_opt_step_bit_for_bit(kind):
    """The one update run eagerly (autograd.grad, clip_grads_, torch.optim's functional AdamW with the
    optimiser's flags) against loss.backward() + clip_grad_norm_ + opt.step(), 3 updates from the same
    state and random stream, one of them over a window that wraps the ring: equal bit for bit, the
    optimiser state too. So is the compiled path's gather (a Window: the bounds as tensors) run eagerly."""
    _, v0, p0, replay = make(kind)
    _, v1, p1, _ = make(kind)
    _, v2, p2, _ = make(kind, "perf.compile=default")
    for step, (size, start) in enumerate([(48, 0), (40, 30), (48, 0)]):
        for a, b, c in ((v0, v1, v2), (p0, p1, p2)):
            torch.manual_seed(10 + step)
            autograd_update(a, replay, size, start)
            torch.manual_seed(10 + step)
            b.learn(replay, size, start)
            torch.manual_seed(10 + step)
            c.step(window(replay, size, start))  # the function torch.compile compiles, run eagerly
    assert (v1.updates, p1.updates) == (3, 3)
    for a, b, c in zip(state(v0, p0), state(v1, p1), state(v2, p2)):
        assert torch.equal(a, b) and torch.equal(a, c)
    for a, b in ((v0, v1), (p0, p1)):
        s0, s1 = a.opt.state_dict(), b.opt.state_dict()
        assert s0["param_groups"] == s1["param_groups"] and s0["state"].keys() == s1["state"].keys()
        for i, st in s0["state"].items():
            other = s1["state"][i]
            assert st.keys() == other.keys()
            assert all(t.dtype == other[k].dtype and torch.equal(t, other[k]) for k, t in st.items())


@pytest.mark.parametrize("amp", [False, True])
@pytest.mark.parametrize("kind", list(KINDS))
def test_torch_func_gradients_are_autograd_gradients(kind, amp):
    """Traced, the step takes its gradients with torch.func; eagerly with autograd.grad: run both eagerly
    from the same random stream, they are the same numbers bit for bit (with bf16 autocast too)."""
    _, v, p, replay = make(kind)
    for learner in (v, p):
        batch = draw(
            Window(replay.data, replay.size, 0), learner.batch_size, learner.norm, torch.device("cpu")
        )
        out = []
        for functional in (False, True):
            torch.manual_seed(5)
            grads, (loss, aux) = value_and_grads(learner.objective, learner.named, batch, amp, functional)
            out.append(grads + [loss, aux])
        assert all(a.dtype == torch.float32 and torch.equal(a, b) for a, b in zip(*out)), kind


def test_compiled_update_matches_eager_and_checkpoints():
    """Through inductor (the real compiled code): pql, 3 critic and policy updates against eager within 1e-4
    (kernels reorder float sums); the RNG is eager's (fallback_random) so both draw the same batches and noise.
    The optimiser state round-trips through the eager learner's checkpoint format."""
    import torch._inductor.config as inductor_config

    _, v0, p0, replay = make("pql")
    _, v1, p1, _ = make("pql", "perf.compile=default")
    with inductor_config.patch(fallback_random=True):
        for step in range(3):
            for a, b in ((v0, v1), (p0, p1)):
                torch.manual_seed(20 + step)
                a.learn(replay)
                torch.manual_seed(20 + step)
                b.learn(replay)
    for a, b in zip(state(v0, p0), state(v1, p1)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert (v1.updates, p1.updates) == (3, 3)
    # checkpoints: the compiled learner's state loads into an eager one and back
    _, v2, _, _ = make("pql")
    v2.load_state_dict(copy.deepcopy(v1.state_dict()))
    torch.testing.assert_close(
        v2.opt.state_dict()["state"][0]["exp_avg"],
        v0.opt.state_dict()["state"][0]["exp_avg"],
        rtol=1e-4,
        atol=1e-6,
    )
    torch._dynamo.reset()


def test_bf16_update_is_close_and_keeps_fp32_state():
    """perf.amp=bf16 (eager): the weights and AdamW state stay float32, and one update takes nearly the fp32 step.

    Adam's first step moves each weight by ~lr * sign(grad), so where bf16 rounding flips the sign of a near-zero
    gradient that weight's step differs by up to 2 * lr: bound every difference by that, and require the steps to
    agree everywhere else (a handful of flips at most, and the same direction overall)."""
    cfg, v0, _, replay = make("pql")
    _, v1, _, _ = make("pql", "perf.amp=bf16")
    assert_bf16_step_close(v0, v1, replay, cfg.algo.critic_lr)


def assert_bf16_step_close(v0, v1, replay, lr, before_v1=None):
    """One update of the fp32 learner v0 and the bf16 learner v1 from the same weights and random stream: the
    weights and AdamW state of v1 stay float32, and its step is the fp32 step but for a few sign flips."""
    w0 = [p.detach().clone() for p in v0.critic.parameters()]
    torch.manual_seed(3)
    v0.learn(replay)
    if before_v1 is not None:
        before_v1()
    torch.manual_seed(3)
    v1.learn(replay)
    assert all(p.dtype == torch.float32 for p in v1.critic.parameters())
    assert all(t.dtype == torch.float32 for st in v1.opt.state.values() for t in st.values())
    d32 = torch.cat([(p - w).flatten() for p, w in zip(v0.critic.parameters(), w0)])
    d16 = torch.cat([(p - w).flatten() for p, w in zip(v1.critic.parameters(), w0)])
    gap = (d32 - d16).abs()
    assert gap.max() <= 2.05 * lr, gap.max()
    assert (gap > 0.1 * lr).float().mean() < 0.02, (gap > 0.1 * lr).sum()
    assert torch.nn.functional.cosine_similarity(d32, d16, dim=0) > 0.95


def test_perf_keys_are_checked():
    with pytest.raises(config_lib.ConfigError, match="perf.compile"):
        config_lib.load(["perf.compile=fast"])
    with pytest.raises(config_lib.ConfigError, match="perf.amp"):
        config_lib.load(["perf.amp=fp16"])
    assert config_lib.load(["perf.compile=off"]).perf.compile == "off"  # not YAML's False


def test_trio_and_sync_train_with_compiled_updates(tmp_path):
    """perf.compile in both runtimes: each trio learner process compiles its own update; counts stay exact,
    publish_every=2 shows in the logged staleness, and sync mode runs the same compiled learners."""
    from pql_scaling.runtime.train import train
    from tests.runs import rows, status
    from tests.test_trio import SMALL, expected_counts

    steps = 120
    path = train(
        SMALL
        + [
            "mode=trio",
            "perf.compile=default",
            "perf.publish_every=2",
            "max_env_steps=%d" % (16 * steps),
            "max_time_s=0",  # compiling on a loaded machine can outlast pendulum.yaml's 150 s
            "run_dir=%s" % (tmp_path / "trio"),
        ],
        quiet=True,
    )
    assert status(path)["status"] == "completed"
    last = rows(path)[-1]
    assert (last["critic_updates"], last["policy_updates"]) == expected_counts(steps, 16, 64, 2, 0.5)
    assert any(
        0 < r["v_snapshot_lag"] < 1 for r in rows(path)
    )  # published every other update: some trail by one
    assert all(
        r["critic_loss"] == r["critic_loss"] for r in rows(path) if "critic_loss" in r
    )  # finite, not NaN
    sync = train(
        SMALL
        + [
            "mode=sync",
            "perf.compile=default",
            "max_env_steps=%d" % (16 * 40),
            "max_time_s=0",
            "run_dir=%s" % (tmp_path / "sync"),
        ],
        quiet=True,
    )
    assert rows(sync)[-1]["critic_updates"] == expected_counts(40, 16, 64, 2, 0.5)[0]


# ------------------------------------------------------------------------------------- populations


def make_population(kind, *extra, members=2):
    """A population's learners (member-stacked nets, one stream per member) with per-member critic learning
    rates and batch sizes (population.vary), on a filled replay of `members` rings."""
    cfg = config_lib.load(
        [
            "task=pendulum",
            "algo.batch_size=16",
            "net.actor_hidden=[16]",
            "net.critic_hidden=[16,16]",
            "algo.weight_decay=0.01",
            "population.size=%d" % members,
        ]
        + KINDS[kind]
        + list(extra)
    )
    torch.manual_seed(0)
    seeds = list(range(members))
    actor, critic, states = nets.build_population(cfg, OBS, ACT, seeds)
    streams = Streams(seeds, "cpu", states)
    if hasattr(actor, "randn_like"):  # SAC: the policy's noise from each member's stream
        actor.randn_like = streams.randn_like
    norm = Normalizer(OBS, "cpu", members=members)
    replay = Replay(64, OBS, ACT, ENVS * members, "cpu", members=members)
    g = torch.Generator().manual_seed(1)
    for k, v in replay.data.items():
        v.copy_(torch.rand(v.shape, generator=g) * (2 if k != "weight" else 1) - (1 if k != "weight" else 0))
    replay.data["discount"].clamp_(min=0)
    replay.rows = 48
    norm.update(replay.data["obs"][: 48 * members])
    vary = {"algo.critic_lr": [1e-3, 3e-3, 5e-4][:members], "algo.batch_size": [16, 8, 12][:members]}
    v = VLearner(cfg, critic, actor, norm, "cpu", streams, vary)
    p = PLearner(cfg, actor, critic, norm, "cpu", ACT, streams, vary)
    return v, p, replay


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_populations_update_is_one_graph(kind):
    """A population's update (per-member rates and batch masks, each member's draws from its own generator,
    drawn onto the tape before the graph: dynamo breaks a graph at a torch.Generator) has no graph breaks
    either (dynamo's trace only). The first update runs eagerly and records the tape."""
    v, p, replay = make_population(kind, "perf.compile=default")
    for learner in (v, p):
        learner.update(Window(replay.data, replay.size, 0))
        assert learner.tape.spec and learner.updates == 1  # recorded: the sampler's uniforms at least
        learner.streams.fill(learner.tape)
        learner.streams.tape = learner.tape
        try:
            out = torch._dynamo.explain(learner.step)(window(replay, replay.size, 0))
        finally:
            learner.streams.tape = None
        assert out.graph_break_count == 0 and out.graph_count == 1, (
            kind,
            [b.reason for b in out.break_reasons],
        )
    torch._dynamo.reset()


def test_a_compiled_population_matches_eager_and_never_recompiles():
    """Through inductor: a population of 2 (critic rates 1e-3 / 3e-3, batches 16 / 8) compiles one graph per
    learner and, update for update, computes what the eager population does (within test_compiled_update_
    matches_eager's 1e-4: kernels reorder float sums; the draws are the same numbers, made from each member's
    generator before the graph). Member 1 turned non-finite (a diverged member, which the population only
    marks failed) compiles nothing new and leaves member 0 matching eager."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    v0, p0, replay = make_population("pql")
    v1, p1, _ = make_population("pql", "perf.compile=default")
    graphs = counters["stats"]["unique_graphs"]
    for step in range(6):
        if step == 3:
            with torch.no_grad():
                for v in (v0, v1):
                    e = v.critic.net.layers[0].weight.shape[0] // 2
                    v.critic.net.layers[0].weight[e:].fill_(float("nan"))
        for a, b in ((v0, v1), (p0, p1)):
            torch.manual_seed(30 + step)
            a.learn(replay)
            torch.manual_seed(30 + step)
            b.learn(replay)
            if step < 3:  # both members alike
                for x, y in zip(state(v0, p0), state(v1, p1)):
                    torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
    assert counters["stats"]["unique_graphs"] - graphs == 2  # one graph each, compiled once
    assert (v1.updates, p1.updates) == (6, 6)
    for a, b in zip(state(v0, p0), state(v1, p1)):  # member 0 (the first half of every tensor) still matches
        e = a.shape[0] // 2
        torch.testing.assert_close(a[:e], b[:e], rtol=1e-4, atol=1e-5)
    assert torch.isnan(v1.critic.net.layers[0].weight[2:]).all()  # member 1's twin critics
    torch._dynamo.reset()


def test_sync_and_trio_populations_train_with_compiled_updates(tmp_path):
    """perf.compile for populations in both runtimes: a sync population of 2 (per-member critic rates) trains
    with each learner's update compiled once, its members' metrics those of the eager population (counts
    exactly; losses, Q means and returns within 1e-4); a trio population of 2, each learner process compiling its
    own update, ends with the trio's exact counts for every member."""
    from torch._dynamo.utils import counters

    from pql_scaling.runtime.train import train
    from tests.runs import rows, status
    from tests.test_population import SMALL as POP
    from tests.test_population import member_dirs
    from tests.test_trio import expected_counts

    pop = ["population.size=2", "population.vary={algo.critic_lr: [5e-4, 1e-3]}", "max_time_s=0"]
    steps = 40
    runs, graphs = {}, {}
    torch._dynamo.reset()
    for mode in ("off", "default"):
        before = counters["stats"]["unique_graphs"]
        root = train(
            POP
            + pop
            + [
                "perf.compile=%s" % mode,
                "max_env_steps=%d" % (8 * steps),
                "eval.every_steps=0",
                "run_dir=%s" % (tmp_path / mode),
            ],
            quiet=True,
        )
        runs[mode] = [rows(d) for d in member_dirs(root)]
        graphs[mode] = counters["stats"]["unique_graphs"] - before
        assert all(status(d)["status"] == "completed" for d in member_dirs(root))
    exact = ("env_steps", "critic_updates", "policy_updates", "episodes")
    close = ("critic_loss", "q_mean", "actor_loss", "action_abs_mean", "return_mean")
    assert graphs == {"off": 0, "default": 2}  # one graph per learner, compiled once
    for eager, compiled in zip(runs["off"], runs["default"]):
        assert len(eager) == len(compiled) >= 3
        assert eager[-1]["critic_updates"] == expected_counts(steps, 8, 64, 2, 0.5)[0]
        for a, b in zip(eager, compiled):
            assert [a.get(k) for k in exact] == [b.get(k) for k in exact]
            for k in close:
                if a.get(k) is not None:
                    assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), (k, a, b)
    assert runs["off"][0] != runs["off"][1]  # members differ
    trio = train(
        POP
        + pop
        + [
            "mode=trio",
            "perf.compile=default",
            "algo.policy_updates_per_critic_update=0.5",
            "max_env_steps=%d" % (8 * steps),
            "eval.every_steps=0",
            "run_dir=%s" % (tmp_path / "trio"),
        ],
        quiet=True,
    )
    for d in member_dirs(trio):
        assert status(d)["status"] == "completed"
        last = rows(d)[-1]
        assert (last["critic_updates"], last["policy_updates"]) == expected_counts(steps, 8, 64, 2, 0.5)
        assert last["critic_loss"] == last["critic_loss"]  # finite, not NaN
    torch._dynamo.reset()
