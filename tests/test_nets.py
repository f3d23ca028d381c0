"""Critic architectures (mlp, bro, softmoe): shapes, Soft MoE semantics, exact parameter and FLOP counts
against torch.utils.flop_counter (forward, backward, and whole learner updates)."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pql_scaling import config
from pql_scaling.core import losses as algo
from pql_scaling.core import nets
from pql_scaling.core.replay import Normalizer
from pql_scaling.runtime.learner import PLearner, VLearner

OBS, ACT, B = 11, 3, 7
MOE = {"tokens": 4, "experts": 3, "slots": 2, "hidden": 10, "normalize": True}
CASES = [
    ("mlp", [32, 24, 16], 1),
    ("mlp", [32, 32], 5),
    ("bro", [32, 32, 32], 1),
    ("bro", [24, 24], 5),
    ("softmoe", [32, 32], 1),
    ("softmoe", [32, 32, 32], 5),
]


def count(fn):
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def expected_params(arch, hidden, atoms, k=2, moe=MOE):
    n_in, w = OBS + ACT, hidden[0]
    if arch == "mlp":
        sizes = [n_in] + hidden + [atoms]
        return k * sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))
    if arch == "bro":
        blocks = len(hidden) - 1
        return k * ((n_in * w + w + 2 * w) + blocks * 2 * (w * w + w + 2 * w) + (w * atoms + atoms))
    d, s, h = w // moe["tokens"], moe["experts"] * moe["slots"], moe["hidden"]
    trunk = (n_in * w + w) + (len(hidden) - 2) * (w * w + w)
    layer = d * s + 1 + moe["experts"] * (d * h + h + h * d + d)
    return k * (trunk + layer + w * atoms + atoms)


@pytest.mark.parametrize("arch,hidden,atoms", CASES)
def test_parameter_and_flop_counts_match_the_flop_counter(arch, hidden, atoms):
    torch.manual_seed(0)
    critic = nets.Critic(OBS, ACT, hidden, atoms=atoms, arch=arch, moe=MOE)
    assert nets.count_params(critic) == expected_params(arch, hidden, atoms)
    obs, act = torch.randn(B, OBS), torch.randn(B, ACT)
    out = critic(obs, act)
    assert out.shape == ((2, B) if atoms == 1 else (2, B, atoms))
    f = nets.per_sample(critic.net)
    assert count(lambda: critic(obs, act)) == pytest.approx(B * f["forward_matmul"], rel=0.01)
    # backward with weight grads (inputs need none): the critic's own update
    fwd = count(lambda: critic(obs, act))
    both = count(lambda: critic(obs, act).sum().backward())
    assert both - fwd == pytest.approx(B * f["backward"], rel=0.01)
    # input grads only (the frozen critic inside the actor loss)
    frozen = {n: p.detach() for n, p in critic.named_parameters()}
    a = act.clone().requires_grad_(True)
    inp = count(lambda: torch.func.functional_call(critic, frozen, (obs, a)).sum().backward())
    assert inp - fwd == pytest.approx(B * f["backward_input_only"], rel=0.01)


@pytest.mark.parametrize(
    "arch,width,depth,distributional,algo_name,actor_arch",
    [
        ("mlp", 32, 3, False, "pql", "mlp"),
        ("bro", 32, 3, True, "pql", "mlp"),
        ("softmoe", 32, 2, False, "pql", "bro"),
        ("softmoe", 32, 3, True, "pql", "mlp"),
        ("bro", 32, 2, False, "sac", "bro"),
    ],
)
def test_whole_updates_cost_what_run_json_says(arch, width, depth, distributional, algo_name, actor_arch):
    cfg = config.load(
        [
            f"net.critic_arch={arch}",
            f"net.critic_width={width}",
            f"net.critic_depth={depth}",
            "net.tokens=4",
            "net.experts=2",
            "net.slots_per_expert=3",
            f"algo.name={algo_name}",
            f"algo.distributional={str(distributional).lower()}",
            f"net.actor_arch={actor_arch}",
            "net.actor_width=16",
            "algo.batch_size=9",
            "mode=sync",
        ]
    )
    torch.manual_seed(0)
    actor, critic = nets.build(cfg, OBS, ACT)
    norm = Normalizer(OBS, "cpu", clip=5.0)
    v = VLearner(cfg, critic, actor, norm, "cpu")
    p = PLearner(cfg, actor, critic, norm, "cpu", ACT)
    n = cfg.algo.batch_size
    batch = algo.Batch(
        torch.randn(n, OBS),
        torch.rand(n, ACT) * 2 - 1,
        torch.randn(n),
        torch.randn(n, OBS),
        torch.full((n,), 0.99),
        torch.ones(n),
    )
    cu, pu = nets.update_flops(actor, critic, n, matmul_only=True)
    assert count(lambda: v.update(batch)) == pytest.approx(cu, rel=0.01)
    assert count(lambda: p.update(batch)) == pytest.approx(pu, rel=0.01)
    facts = nets.facts(cfg, actor, critic)
    assert facts["critic_arch"] == arch and facts["critic_width"] == width
    assert facts["experts"] == (2 if arch == "softmoe" else 0)


def _softmoe_reference(layer, x):
    """Soft MoE of docs/science.md 5 for one member and one sample, written out with explicit loops."""
    m, d, n, p = layer.m, layer.d, layer.n, layer.p
    X = x.reshape(m, d)
    phi = layer.phi[0]
    if layer.normalize:
        L = (
            (X / X.norm(dim=1, keepdim=True))
            @ (phi / phi.norm(dim=0, keepdim=True))
            * layer.scale[0, 0, 0, 0]
        )
    else:
        L = X @ phi
    D = torch.softmax(L, dim=0)  # each slot's weights over the tokens
    C = torch.softmax(L, dim=1)  # each token's weights over the slots
    Xs = D.T @ X
    Ys = []
    for s in range(n * p):
        e = s // p
        h = torch.relu(Xs[s] @ layer.w1[0, e] + layer.b1[0, 0, e, 0])
        Ys.append(h @ layer.w2[0, e] + layer.b2[0, 0, e, 0])
    return (C @ torch.stack(Ys)).reshape(-1)


@pytest.mark.parametrize("normalize", [True, False])
def test_softmoe_matches_the_definition_and_never_mixes_samples(normalize):
    torch.manual_seed(0)
    layer = nets.SoftMoE(12, tokens=3, experts=2, slots=2, hidden=5, normalize=normalize, k=1)
    x = torch.randn(1, 6, 12)
    y = layer(x)
    for b in range(6):
        torch.testing.assert_close(y[0, b], _softmoe_reference(layer, x[0, b]), rtol=1e-5, atol=1e-6)
    x2 = x.clone()
    x2[0, 1:] = torch.randn(5, 12) * 10  # other samples change: sample 0's output does not
    torch.testing.assert_close(layer(x2)[0, 0], y[0, 0])


def test_config_rejects_bad_architecture_settings():
    with pytest.raises(config.ConfigError, match="critic_arch"):
        config.load(["net.critic_arch=transformer"])
    with pytest.raises(config.ConfigError, match="divisible by net.tokens"):
        config.load(["net.critic_arch=softmoe", "net.critic_width=30", "net.tokens=8"])
    with pytest.raises(config.ConfigError, match="one width"):
        config.load(["net.critic_arch=bro", "net.critic_hidden=[64,32]"])
    with pytest.raises(config.ConfigError, match="residual block"):
        config.load(["net.critic_arch=bro", "net.critic_width=64", "net.critic_depth=1"])


@pytest.mark.parametrize("arch", ["bro", "softmoe"])
def test_training_with_a_scalable_critic_writes_its_facts(arch, tmp_path):
    """A short sync run with each new critic (and a BRO actor): run.json names the architecture, its knobs
    and parameter count, and the logged FLOPs follow the per-update counts."""
    import json
    import os

    from pql_scaling.runtime.train import train
    from tests.runs import rows

    d = train(
        [
            "task=pendulum",
            "mode=sync",
            "num_envs=8",
            "algo.batch_size=32",
            "log.every_steps=20",
            "threads=1",
            "log.live=off",
            "algo.warmup_steps=4",
            "max_env_steps=480",
            f"net.critic_arch={arch}",
            "net.critic_width=16",
            "net.critic_depth=3",
            "net.tokens=4",
            "net.actor_arch=bro",
            "net.actor_width=16",
            "run_dir=%s" % (tmp_path / "r"),
        ],
        quiet=True,
    )
    facts = json.load(open(os.path.join(d, "run.json")))
    assert facts["critic_arch"] == arch and facts["actor_arch"] == "bro" and facts["critic_width"] == 16
    assert facts["critic_depth"] == 3 and facts["critic_hidden"] == [16, 16, 16]
    cfg = config.load(
        [
            f"net.critic_arch={arch}",
            "net.critic_width=16",
            "net.critic_depth=3",
            "net.tokens=4",
            "net.actor_arch=bro",
            "net.actor_width=16",
            "task=pendulum",
        ]
    )
    actor, critic = nets.build(cfg, facts["obs_dim"], facts["act_dim"])
    assert facts["critic_params"] == nets.count_params(critic)
    assert facts["critic_flops_per_sample"] == nets.per_sample(critic.net)
    if arch == "softmoe":
        assert facts["experts"] == 4 and facts["moe"]["tokens"] == 4 and facts["moe"]["hidden"] == 4
    last = rows(d)[-1]
    assert (
        last["critic_updates"] > 0
        and last["flops"]
        == last["critic_updates"] * facts["flops_per_critic_update"]
        + last["policy_updates"] * facts["flops_per_policy_update"]
    )
