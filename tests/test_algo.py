import torch

from pql_scaling.core import losses as algo
from pql_scaling.core import nets
from pql_scaling.core.replay import Normalizer, Replay, sample
from pql_scaling.runtime.actor import NStepFolder


def test_c51_projection_hand_computed():
    support = torch.tensor([-1.0, 0.0, 1.0])
    probs = torch.tensor([[0.2, 0.5, 0.3], [0.2, 0.5, 0.3]])
    out = algo.c51_project(probs, torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]), support)
    # row 0: r + z = [-0.5, 0.5, 1.5 -> 1]: 0.2 splits 0.1/0.1 onto atoms 0/1, 0.5 splits 0.25/0.25
    # onto 1/2, 0.3 lands exactly on atom 2.  row 1 (terminal): every atom moves to 0.5 -> half/half on 1/2.
    assert torch.allclose(out, torch.tensor([[0.1, 0.35, 0.55], [0.0, 0.5, 0.5]]))
    assert torch.allclose(out.sum(1), torch.ones(2))


def reference_nstep(rewards, terms, dones, next_obs, n, gamma):
    """Plain-loop n-step targets for one env, for comparison."""
    out = []
    for s in range(len(rewards) - n + 1):
        ret, k = 0.0, 0
        while True:
            ret += gamma**k * rewards[s + k]
            if dones[s + k] or k == n - 1:
                break
            k += 1
        out.append((ret, gamma ** (k + 1) * (1 - terms[s + k]), next_obs[s + k]))
    return out


def test_nstep_folder_matches_loop_and_never_crosses_episode_ends():
    torch.manual_seed(0)
    n, gamma, T = 3, 0.9, 40
    rewards = torch.randn(T).tolist()
    dones = [1.0 if t in (5, 6, 17, 30) else 0.0 for t in range(T)]
    terms = [1.0 if t in (5, 30) else 0.0 for t in range(T)]  # 6 and 17 are truncations
    next_obs = [float(t) + 0.5 for t in range(T)]
    folder = NStepFolder(n, gamma, 1, 1, 1, "cpu")
    got = []
    for t in range(T):
        row = folder.push(
            torch.tensor([[float(t)]]),
            torch.zeros(1, 1),
            torch.tensor([rewards[t]]),
            torch.tensor([[next_obs[t]]]),
            torch.tensor([bool(terms[t])]),
            torch.tensor([bool(dones[t])]),
            torch.tensor([True]),
        )
        if folder.ready:
            obs, _, r, nxt, disc, _ = row
            assert obs.item() == t - n + 1  # the transition that started n - 1 steps ago
            got.append((r.item(), disc.item(), nxt.item()))
    want = reference_nstep(rewards, terms, dones, next_obs, n, gamma)
    assert len(got) == len(want)
    for (r, d, o), (r2, d2, o2) in zip(got, want):
        assert abs(r - r2) < 1e-5 and abs(d - d2) < 1e-6 and o == o2
    # a transition ending in a termination never bootstraps; one ending in a truncation does
    assert want[5][1] == 0.0 and want[6][1] > 0


def test_replay_ring_and_uniform_sampling():
    rb = Replay(10, 2, 1, num_envs=4, device="cpu")
    assert rb.capacity == 8
    for i in range(3):
        v = torch.full((4,), float(i))
        rb.add(v[:, None].repeat(1, 2), v[:, None], v, v[:, None].repeat(1, 2), v, torch.ones(4))
    assert rb.size == 8 and rb.rows == 12
    assert sorted(set(rb.data["reward"].tolist())) == [1.0, 2.0]  # step 0 overwritten
    b = sample(rb.data, 1000, rb.size, 0)
    assert set(b.reward.tolist()) == {1.0, 2.0}
    assert torch.equal(b.obs[:, 0], b.reward)


def test_normalizer_matches_batch_statistics():
    x = torch.randn(1000, 3) * torch.tensor([1.0, 5.0, 0.1]) + torch.tensor([2.0, -1.0, 0.0])
    norm = Normalizer(3, "cpu", clip=100.0)
    for chunk in x.split(100):
        norm.update(chunk)
    assert torch.allclose(norm.mean, x.mean(0), atol=1e-3)
    assert torch.allclose(norm.var, x.var(0, unbiased=False), rtol=1e-2)


def test_flop_and_parameter_counts_are_exact():
    """Through what run.json reports (nets.facts, nets.update_flops): counts written out by hand."""
    from pql_scaling import config

    cfg = config.load(["task=pendulum", "net.critic_hidden=[64,64]", "net.actor_hidden=[32]"])
    actor, critic = nets.build(cfg, 3, 1)
    assert nets.count_params(critic) == 2 * ((4 * 64 + 64) + (64 * 64 + 64) + (64 + 1))
    facts = nets.facts(cfg, actor, critic)
    critic_mm = 2 * (2 * 4 * 64 + 2 * 64 * 64 + 2 * 64)  # twin critic: every matmul twice
    actor_mm = 2 * 3 * 32 + 2 * 32
    assert facts["critic_flops_per_sample"] == {
        "forward": critic_mm + 2 * (64 + 64 + 1),
        "forward_matmul": critic_mm,
        "backward": 2 * (2 * 4 * 64 + 2 * (2 * 64 * 64) + 2 * (2 * 64)),  # the input layer: weight grads only
        "backward_input_only": critic_mm,
    }
    assert facts["actor_flops_per_sample"]["forward"] == actor_mm + 32 + 1
    B, actor_fwd, critic_fwd = 10, actor_mm + 33, critic_mm + 2 * 129
    actor_bwd, critic_bwd = 2 * 3 * 32 + 2 * (2 * 32), facts["critic_flops_per_sample"]["backward"]
    critic_update, policy_update = nets.update_flops(actor, critic, B)
    assert critic_update == B * (actor_fwd + 2 * critic_fwd + critic_bwd)  # next action, target + online, bwd
    assert policy_update == B * (actor_fwd + actor_bwd + critic_fwd + critic_mm)  # critic: input grads only


def test_critic_loss_is_zero_at_the_fixed_point_for_terminal_transitions():
    torch.manual_seed(0)
    actor, critic = nets.Actor(3, 1, [16]), nets.Critic(3, 1, [16])
    target = nets.Critic(3, 1, [16])
    b = algo.Batch(
        torch.randn(8, 3), torch.rand(8, 1), torch.randn(8), torch.randn(8, 3), torch.zeros(8), torch.ones(8)
    )
    with torch.no_grad():  # make Q(s, a) equal the reward exactly: last layer bias = reward, weights 0
        critic.net.layers[-1].weight.zero_()
        critic.net.layers[-1].bias.fill_(1.5)
    b = b._replace(reward=torch.full((8,), 1.5))
    loss, _ = algo.critic_loss(actor, critic, target, b, False, 0.2, 0.5)
    assert loss.item() < 1e-10
    # weight 0 removes a sample from the loss
    b2 = b._replace(reward=torch.full((8,), 100.0), weight=torch.zeros(8))
    assert algo.critic_loss(actor, critic, target, b2, False, 0.2, 0.5)[0].item() == 0.0


def test_sac_log_prob_is_the_density_of_the_sampled_actions():
    """Independent of the policy's parametrisation: sample one observation many times, recover the Gaussian
    behind the tanh from the samples (atanh), and compare the returned log-probs with torch.distributions'
    density of tanh(N(mu, std)) at the same actions."""
    torch.manual_seed(0)
    actor = nets.GaussianActor(3, 2, [16])
    obs = torch.randn(1, 3).expand(20000, 3)
    with torch.no_grad():
        a, logp = actor.sample(obs)
    u = torch.atanh(a.clamp(-1 + 1e-6, 1 - 1e-6)).double()
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(u.mean(0), u.std(0)), [torch.distributions.TanhTransform(cache_size=1)]
    )
    ref = dist.log_prob(a.double().clamp(-1 + 1e-6, 1 - 1e-6)).sum(-1)
    central = (a.abs() < 0.95).all(-1)  # away from the tanh's saturation, where atanh loses precision
    assert central.float().mean() > 0.5
    diff = (logp.double() - ref)[central].abs()  # the recovered mu, std carry sampling error (~1 %)
    assert diff.mean() < 0.03 and diff.max() < 0.25, (diff.mean(), diff.max())


def test_hot_paths_have_no_host_sync():
    """The update and step loops must not sync with the device (`.item()`, `.cpu()`, `.tolist()`, `float()`
    of a tensor, `.numpy()`, printing): only log points may. A static check, since CPU tensors cannot
    show a sync at run time."""
    import inspect
    import io
    import re
    import textwrap
    import tokenize

    from pql_scaling.core import replay
    from pql_scaling.envs import native
    from pql_scaling.runtime import actor, learner

    hot = [
        algo,
        learner.Learner.learn,
        learner.Learner.update,
        learner.Learner.step,
        learner.value_and_grads,
        learner.adamw_step,
        learner.clip_grads_,
        learner.soft_update,
        learner.Objective.forward,
        learner.VLearner.loss,
        learner.PLearner.loss,
        actor.ActorRole.step,
        actor.ActorRole.act,
        actor.ActorRole._track,
        replay.Replay.add,
        replay.sample,
        replay.draw,
        actor.NStepFolder.push,
        actor.Gate.wait,
        actor.Gate.commit,
        replay.Normalizer.update,
        replay.Normalizer.forward,
        native.NativeVecEnv.step,
        nets.MLP.forward,
        nets.BroNet.forward,
        nets.SoftMoE.forward,
        nets.MoENet.forward,
        nets.Critic.forward,
    ]
    forbidden = re.compile(
        r"\.item\(|\.cpu\(|\.tolist\(|\.numpy\(|(?<!\.)\bfloat\(|\bprint\(|\.any\(\)\s*:|\bif .*\.all\(\)"
    )
    for obj in hot:
        src = textwrap.dedent(inspect.getsource(obj))
        tokens = tokenize.generate_tokens(io.StringIO(src).readline)  # code only: no strings, no comments
        code = " ".join(t.string for t in tokens if t.type not in (tokenize.STRING, tokenize.COMMENT))
        code = code.replace(" . ", ".").replace(" (", "(")
        hits = forbidden.findall(code)
        assert not hits, "%s syncs with the device: %s" % (getattr(obj, "__qualname__", obj), hits)
