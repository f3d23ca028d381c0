"""The learner math of PQL (R4) and SAC, as short pure functions over tensors.

Each update (runtime/learner.py: loss -> gradients -> clip -> AdamW -> soft target update) calls one of
these losses, with no `.item()`, no host sync and no data-dependent Python branching, so it can be compiled
to one graph and captured in a CUDA graph. Losses come back as 0-dim tensors; the runtime reads them
only at log points.

Batches arrive with n-step returns already folded by the actor (runtime/actor.py NStepFolder):
`reward` = sum_k gamma^k r_{t+k} (reward-scaled), `discount` = gamma^n' * (1 - terminated) for the
n' <= n steps actually taken (0 after a termination, so we never bootstrap through one; truncations
keep it), `next_obs` = the observation to bootstrap from, `weight` = 0 for a transition that must not
be learned from (it spans two episodes). An asymmetric critic (the env's privileged `critic_obs`) also gets
`critic_obs` / `next_critic_obs`: the critic and its target read those, the actor the policy's; without them
(None) the critic reads the policy's, as it always has.
"""

from typing import NamedTuple, Optional

import torch

from pql_scaling.core.members import per_member_mean, per_member_plain_mean


class Batch(NamedTuple):
    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    discount: torch.Tensor
    weight: torch.Tensor
    critic_obs: Optional[torch.Tensor] = None
    next_critic_obs: Optional[torch.Tensor] = None


def critic_inputs(b):
    """(obs, next_obs) as the critic sees them: its privileged observations where the batch has them."""
    if b.critic_obs is None:
        return b.obs, b.next_obs
    return b.critic_obs, b.next_critic_obs


def weighted_mean(x, w, members=1):
    """The weighted mean over a batch; a population's batch (members-major rows): one mean per member, (K,)."""
    if members == 1:
        return (x * w).sum() / w.sum().clamp_min(1.0)
    return per_member_mean(x, w, members)


def mean(x, members=1, dim=0):
    """x.mean(); for a population, (K,) means: each member's rows along `dim` (members-major)."""
    if members == 1:
        return x.mean()
    return per_member_plain_mean(x.movedim(dim, 0), members)


def alpha_rows(log_alpha, n):
    """SAC's log temperature for n rows: a scalar (a single run), or (K,) per member over member-major rows."""
    return log_alpha if log_alpha.dim() == 0 else log_alpha.repeat_interleave(n // log_alpha.shape[0])


def smoothed_action(actor, obs, noise_std, noise_clip, randn_like=torch.randn_like):
    """TD3's target-policy smoothing: a' = clip(pi(s') + clip(N(0, std), +-c), -1, 1)."""
    a = actor(obs)
    noise = (randn_like(a) * noise_std).clamp(-noise_clip, noise_clip)
    return (a + noise).clamp(-1.0, 1.0)


def c51_project(next_probs, reward, discount, support):
    """Project the distribution r + discount * z (atoms `support`, probs (B, atoms)) back onto `support`.

    The mass of each shifted atom is split between its two neighbours in proportion to distance
    (Bellemare et al. 2017, Algorithm 1). Where the shifted atom lands exactly on a grid point,
    all of its mass goes there.
    """
    next_probs = next_probs.float()  # under bf16 autocast the probs arrive in bf16; the projection is float32
    v_min, v_max, atoms = support[0], support[-1], support.numel()
    dz = (v_max - v_min) / (atoms - 1)
    tz = (reward[:, None] + discount[:, None] * support[None, :]).clamp(v_min, v_max)
    b = (tz - v_min) / dz
    lower, upper = b.floor(), b.ceil()
    w_upper = b - lower  # 0 where lower == upper, so the whole mass goes to `lower`
    w_lower = 1.0 - w_upper
    out = torch.zeros_like(next_probs)
    out.scatter_add_(1, lower.long().clamp(0, atoms - 1), next_probs * w_lower)
    out.scatter_add_(1, upper.long().clamp(0, atoms - 1), next_probs * w_upper)
    return out


def critic_loss(
    actor,
    critic,
    critic_target,
    b,
    sac,
    target_noise,
    target_noise_clip,
    support=None,
    randn_like=torch.randn_like,
):
    """Clipped double-Q TD loss (twin critics, min over the target pair). A population's critic (`members`
    > 1) gives (K,) losses and Q means, one per member; `randn_like` draws the smoothing noise (per member)."""
    k = getattr(critic, "members", 1)
    c_obs, c_next_obs = critic_inputs(b)  # the actor still picks a' from the policy's next observation
    with torch.no_grad():
        if sac:
            next_a, next_logp = actor.sample(b.next_obs)
            entropy_bonus = -alpha_rows(actor.log_alpha, next_logp.shape[0]).exp() * next_logp
        else:
            next_a = smoothed_action(actor, b.next_obs, target_noise, target_noise_clip, randn_like)
            entropy_bonus = 0.0
        target_out = critic_target(c_next_obs, next_a)
        if support is None:
            target = b.reward + b.discount * (target_out.min(0).values + entropy_bonus)
        else:  # C51: take, per sample, the target member with the lower expected value
            probs = target_out.softmax(-1)
            pick = (probs * support).sum(-1).argmin(0)  # (B,)
            probs = torch.where(pick[:, None] == 0, probs[0], probs[1])
            target = c51_project(probs, b.reward, b.discount, support)
    out = critic(c_obs, b.action)
    if support is None:
        per_sample = ((out - target) ** 2).sum(0)
        q = out
    else:
        per_sample = -(target * out.log_softmax(-1)).sum(-1).sum(0)
        q = (out.softmax(-1) * support).sum(-1)
    return weighted_mean(per_sample, b.weight, k), mean(q, k, dim=1)


def q_value(critic, obs, action, support=None):
    """min over the twin critics of Q(s, a), through the critic without building its weight grads."""
    params = {k: v.detach() for k, v in critic.named_parameters()}
    out = torch.func.functional_call(critic, params, (obs, action))
    if support is not None:
        out = (out.softmax(-1) * support).sum(-1)
    return out.min(0).values


def actor_loss(actor, critic, b, sac, target_entropy, support=None):
    k = getattr(actor, "members", 1)
    c_obs = critic_inputs(b)[0]
    if sac:
        a, logp = actor.sample(b.obs)
        log_alpha = alpha_rows(actor.log_alpha, logp.shape[0])
        alpha = log_alpha.exp().detach()
        loss = weighted_mean(alpha * logp - q_value(critic, c_obs, a, support), b.weight, k)
        # temperature: raise alpha when entropy falls below target
        loss = loss - weighted_mean(log_alpha * (logp.detach() + target_entropy), b.weight, k)
        return loss, -mean(logp, k)
    a = actor(b.obs)
    return weighted_mean(-q_value(critic, c_obs, a, support), b.weight, k), mean(a.abs(), k)
