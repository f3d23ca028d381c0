"""The learner math against references written here from the papers' definitions, on inputs where a
wrong choice shows: distinct target members, discount > 0 and varying, a C51 support with spacing != 1
and mass past both ends, a reversed soft update.

Targets are read back through autograd: with an online critic that outputs a free tensor q, the squared
TD loss has dL/dq = 2 (q - target) w / sum(w) per member, and the C51 cross-entropy has
dL/dlogits = (softmax(logits) - target) w / sum(w); so the target the code built is recovered exactly,
whatever the loss's own bookkeeping.
"""

import math

import pytest
import torch

from pql_scaling.core import losses as algo
from pql_scaling.runtime.learner import clip_grads_, soft_update

B, OBS, ACT = 64, 3, 1


class FreeCritic(torch.nn.Module):
    """The online critic: outputs a free tensor (k, B[, atoms]) whatever the input."""

    def __init__(self, shape):
        super().__init__()
        self.q = torch.nn.Parameter(torch.zeros(shape))

    def forward(self, obs, action):
        return self.q


class KnownTargets(torch.nn.Module):
    """Two target members with known, distinct values: either member is the lower one on some samples."""

    def forward(self, obs, action):
        s, a = obs.sum(-1), action.sum(-1)
        return torch.stack([s + 2.0 * a, 0.5 * s - a + 0.3])


class TanhActor(torch.nn.Module):
    def forward(self, obs):
        return torch.tanh(obs[:, :ACT] - 0.2 * obs[:, 1:2])


def batch(seed=0, n=B):
    g = torch.Generator().manual_seed(seed)
    discount = 0.99 ** torch.randint(1, 4, (n,), generator=g).float()  # gamma^k for k = 1..3 steps
    discount[::5] = 0.0  # terminations
    return algo.Batch(
        torch.randn(n, OBS, generator=g),
        torch.rand(n, ACT, generator=g) * 2 - 1,
        torch.randn(n, generator=g),
        torch.randn(n, OBS, generator=g),
        discount,
        torch.ones(n),
    )


def recovered_td_target(b, **kw):
    critic = FreeCritic((2, len(b.reward)))
    loss, _ = algo.critic_loss(TanhActor(), critic, KnownTargets(), b, **kw)
    loss.backward()
    target = critic.q.detach() - critic.q.grad * len(b.reward) / 2.0
    assert torch.allclose(target[0], target[1], atol=1e-5)  # one target for both members
    return target[0]


def test_td_target_is_reward_plus_discount_times_min_of_the_target_pair():
    b = batch()
    target = recovered_td_target(b, sac=False, target_noise=0.0, target_noise_clip=0.5)
    q1, q2 = KnownTargets()(b.next_obs, TanhActor()(b.next_obs))
    assert bool((q1 < q2).any()) and bool((q2 < q1).any())  # min and max differ on both sides
    want = b.reward + b.discount * torch.minimum(q1, q2)
    torch.testing.assert_close(target, want, rtol=0, atol=1e-5)


def test_target_policy_smoothing_noise_is_clipped_and_the_action_clamped():
    """TD3's a' = clip(pi(s') + clip(N(0, std), -c, c), -1, 1), recovered from the target per sample."""
    n, std, clip = 4000, 0.3, 0.2
    b = batch(1, n)._replace(discount=torch.full((n,), 0.5))

    class FirstMemberLower(KnownTargets):
        def forward(self, obs, action):  # min is member 0, linear in a': the target gives a' back
            return torch.stack([obs.sum(-1) + 2.0 * action.sum(-1), obs.sum(-1) + 100.0])

    critic = FreeCritic((2, n))
    torch.manual_seed(0)
    loss, _ = algo.critic_loss(
        TanhActor(), critic, FirstMemberLower(), b, sac=False, target_noise=std, target_noise_clip=clip
    )
    loss.backward()
    target = -critic.q.grad[0] * n / 2.0
    a_next = ((target - b.reward) / 0.5 - b.next_obs.sum(-1)) / 2.0
    pi = TanhActor()(b.next_obs)[:, 0]
    assert bool((a_next.abs() <= 1.0 + 1e-4).all())
    unclamped = (pi + clip).abs() < 1.0 - 1e-3
    unclamped &= (pi - clip).abs() < 1.0 - 1e-3
    noise = (a_next - pi)[unclamped]
    assert bool((noise.abs() <= clip + 1e-4).all())
    # a clipped N(0, 0.3): P(|N| > 0.2) = 2 (1 - Phi(0.2 / 0.3)) = 0.505 of the samples sit on the bound
    at_bound = float(((noise.abs() - clip).abs() < 1e-3).float().mean())
    p = 2 * (1 - 0.5 * (1 + math.erf(clip / std / math.sqrt(2))))
    assert abs(at_bound - p) < 0.04, (at_bound, p)
    assert abs(float(noise.mean())) < 0.02


class KnownSacActor(torch.nn.Module):
    """A SAC policy stand-in whose sample() gives a known action and log-probability."""

    def __init__(self):
        super().__init__()
        self.log_alpha = torch.nn.Parameter(torch.tensor(math.log(0.3)))

    def sample(self, obs):
        return torch.tanh(obs[:, :ACT]), obs[:, 1] * 0.7 - 1.0


def test_sac_target_subtracts_alpha_times_the_next_log_prob():
    b = batch(2)
    critic = FreeCritic((2, B))
    loss, _ = algo.critic_loss(
        KnownSacActor(), critic, KnownTargets(), b, sac=True, target_noise=0.0, target_noise_clip=0.0
    )
    loss.backward()
    target = -critic.q.grad[0] * B / 2.0
    a, logp = KnownSacActor().sample(b.next_obs)
    q1, q2 = KnownTargets()(b.next_obs, a)
    want = b.reward + b.discount * (torch.minimum(q1, q2) - 0.3 * logp)
    torch.testing.assert_close(target, want, rtol=0, atol=1e-5)


def test_weight_zero_removes_a_sample_from_the_critic_loss():
    b = batch(3)
    w = torch.ones(B)
    w[::2] = 0.0
    critic = FreeCritic((2, B))
    loss, _ = algo.critic_loss(
        TanhActor(),
        critic,
        KnownTargets(),
        b._replace(weight=w),
        sac=False,
        target_noise=0.0,
        target_noise_clip=0.5,
    )
    loss.backward()
    assert bool((critic.q.grad[:, ::2] == 0).all()) and bool((critic.q.grad[:, 1::2] != 0).all())


# ---------------------------------------------------------------- actor losses


def test_deterministic_actor_loss_is_minus_the_min_q_and_its_step_raises_q():
    torch.manual_seed(0)
    b = batch(4)

    class Bowl(torch.nn.Module):  # Q peaks at a = 0.5 (member 0) and a = 0.3 (member 1)
        def forward(self, obs, action):
            a = action[:, 0]
            return torch.stack([-((a - 0.5) ** 2), -((a - 0.3) ** 2) - 0.1])

    actor = torch.nn.Sequential(torch.nn.Linear(OBS, ACT), torch.nn.Tanh())
    wrapped = lambda obs: actor(obs)
    loss, _ = algo.actor_loss(wrapped, Bowl(), b, False, 0.0)
    q = Bowl()(b.obs, actor(b.obs))
    torch.testing.assert_close(loss, -torch.minimum(q[0], q[1]).mean())
    opt = torch.optim.SGD(actor.parameters(), lr=0.05)
    before = float(torch.minimum(*Bowl()(b.obs, actor(b.obs))).mean().detach())
    for _ in range(50):
        opt.zero_grad()
        algo.actor_loss(wrapped, Bowl(), b, False, 0.0)[0].backward()
        opt.step()
    after = float(torch.minimum(*Bowl()(b.obs, actor(b.obs))).mean().detach())
    assert after > before + 0.01, (before, after)


def test_sac_actor_loss_and_temperature_direction():
    b = batch(5)

    class Actor(KnownSacActor):
        def __init__(self):
            super().__init__()
            self.shift = torch.nn.Parameter(torch.zeros(()))

        def sample(self, obs):
            return torch.tanh(obs[:, :ACT] + self.shift), obs[:, 1] * 0.7 - 1.0

    actor = Actor()
    loss, _ = algo.actor_loss(actor, KnownTargets(), b, True, target_entropy=-1.0)
    a, logp = actor.sample(b.obs)
    q1, q2 = KnownTargets()(b.obs, a)
    alpha = 0.3
    want = (alpha * logp - torch.minimum(q1, q2)).mean() - (math.log(0.3) * (logp + -1.0)).mean()
    torch.testing.assert_close(loss, want)
    loss.backward()
    # entropy -logp below the target (-1) <=> logp + target > 0 on average: alpha must rise (grad < 0)
    mean_gap = float((logp - 1.0).mean())
    assert (actor.log_alpha.grad.item() < 0) == (mean_gap > 0)


# ---------------------------------------------------------------- C51


def project_reference(probs, reward, discount, support):
    """Bellemare et al. 2017, Algorithm 1, as a plain loop per sample and atom."""
    v_min, v_max = float(support[0]), float(support[-1])
    n = len(support)
    dz = (v_max - v_min) / (n - 1)
    out = torch.zeros_like(probs, dtype=torch.float64)
    for i in range(probs.shape[0]):
        for j in range(n):
            tz = min(max(float(reward[i]) + float(discount[i]) * float(support[j]), v_min), v_max)
            pos = (tz - v_min) / dz
            lo, hi = math.floor(pos), math.ceil(pos)
            if lo == hi:
                out[i, lo] += float(probs[i, j])
            else:
                out[i, lo] += float(probs[i, j]) * (hi - pos)
                out[i, hi] += float(probs[i, j]) * (pos - lo)
    return out.float()


def test_c51_projection_on_a_support_with_spacing_not_one_and_mass_past_both_ends():
    support = torch.linspace(-2.0, 2.0, 9)  # spacing 0.5
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(6, 9, generator=g)
    probs = probs / probs.sum(1, keepdim=True)
    reward = torch.tensor([0.3, -1.7, 1.9, 0.0, 0.25, -0.6])  # -1.7 and 1.9 push atoms past both ends
    discount = torch.tensor([0.9, 0.9, 0.9, 0.0, 0.5, 0.99])
    out = algo.c51_project(probs, reward, discount, support)
    torch.testing.assert_close(out, project_reference(probs, reward, discount, support), rtol=0, atol=1e-6)
    torch.testing.assert_close(out.sum(1), torch.ones(6))
    # the mass pushed past an end is all on that end's atom
    shifted = (reward[1] + discount[1] * support).clamp(-2.0, 2.0)
    assert float(out[1, 0]) >= float(probs[1][shifted == -2.0].sum()) - 1e-6  # all clamped mass on the end
    assert float(out[2, -1]) >= float(probs[2][(reward[2] + discount[2] * support) >= 2.0].sum()) - 1e-6
    # terminal (discount 0): everything lands on reward 0.0, an atom: one-hot
    torch.testing.assert_close(out[3], (support == 0.0).float())


def test_c51_target_takes_per_sample_the_member_with_the_lower_expected_value():
    atoms, n = 11, 8
    support = torch.linspace(-3.0, 2.0, atoms)  # spacing 0.5
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, n, atoms, generator=g) * 2

    class Logits(torch.nn.Module):
        def forward(self, obs, action):
            return logits

    probs = logits.softmax(-1)
    mean = (probs * support).sum(-1)
    lower = mean.argmin(0)
    assert bool((lower == 0).any()) and bool((lower == 1).any()), "need both members chosen somewhere"
    b = batch(6, n)
    critic = FreeCritic((2, n, atoms))
    loss, _ = algo.critic_loss(TanhActor(), critic, Logits(), b, False, 0.0, 0.5, support=support)
    loss.backward()
    uniform = torch.full((atoms,), 1.0 / atoms)
    target = uniform - critic.q.grad[0] * n  # dCE/dlogits = softmax - target, averaged over the batch
    chosen = torch.stack([probs[lower[i], i] for i in range(n)])
    want = project_reference(chosen, b.reward, b.discount, support)
    torch.testing.assert_close(target, want, rtol=0, atol=1e-5)


# ---------------------------------------------------------------- soft update


def test_soft_update_moves_the_target_tau_of_the_way_to_the_source():
    target, source = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    with torch.no_grad():
        for p in target.parameters():
            p.fill_(1.0)
        for p in source.parameters():
            p.fill_(3.0)
    soft_update(target, source, 0.05)
    for p, s in zip(target.parameters(), source.parameters()):
        assert torch.allclose(p, torch.full_like(p, 1.1)) and torch.equal(s, torch.full_like(s, 3.0))


@pytest.mark.parametrize("tau", [0.0, 1.0])
def test_soft_update_limits(tau):
    target, source = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in target.parameters()]
    soft_update(target, source, tau)
    want = before if tau == 0.0 else [p.detach() for p in source.parameters()]
    assert all(torch.equal(p, w) for p, w in zip(target.parameters(), want))


# ---------------------------------------------------------------- gradient clip


@pytest.mark.parametrize("max_norm", [0.05, 100.0])
def test_clip_grads_is_clip_grad_norm_bit_for_bit(max_norm):
    """The learner clips its gradient list with clip_grads_; the autograd reference is clip_grad_norm_."""
    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in [(3, 4), (4,), (2, 5, 6)]]
    grads = [torch.randn(p.shape, generator=g) for p in params]
    for p, x in zip(params, grads):
        p.grad = x.clone()
    total = lambda xs: float(torch.stack([x.norm() for x in xs]).norm())
    before = total(grads)
    torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    clip_grads_(grads, max_norm)
    assert all(torch.equal(p.grad, x) for p, x in zip(params, grads))
    assert total(grads) == pytest.approx(min(max_norm, before), rel=1e-4)  # clipped to max_norm, or untouched
