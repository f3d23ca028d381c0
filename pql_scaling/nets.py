"""Networks and their exact parameter / FLOP counts.

The twin critic is one *ensemble* MLP whose layers hold a weight per member, (k, in, out), applied
with one batched matmul: the two critics cost one kernel per layer instead of two, which matters
at PQL's batch sizes and keeps the update a short, graphable sequence of ops. New critic bodies
(residual LayerNorm blocks, Soft MoE layers) plug in as other `nn.Module`s with the same
(obs, action) -> (k, B[, atoms]) signature and their own `flops_per_sample()`.

FLOP convention (documented in the run's run.json): a dense layer costs 2*in*out per sample forward
(multiply-adds counted as 2) plus `out` for the bias; activations and norms are not counted. Backward
costs 2x forward (input and weight gradients); a backward pass that needs only input gradients
(the critic inside the actor loss) costs 1x forward.
"""
import math
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh, "gelu": nn.GELU}


class EnsembleLinear(nn.Module):
    def __init__(self, k, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, n_in, n_out))
        self.bias = nn.Parameter(torch.empty(k, 1, n_out))
        bound = 1.0 / math.sqrt(n_in)  # nn.Linear's default init, per member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x):  # (k, B, in) -> (k, B, out)
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    def __init__(self, k, n):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(k, 1, n))
        self.bias = nn.Parameter(torch.zeros(k, 1, n))

    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:]) * self.weight + self.bias


def dense_flops(sizes: List[int]) -> int:
    """Forward FLOPs per sample of a stack of dense layers with these widths."""
    return sum(2 * i * o + o for i, o in zip(sizes[:-1], sizes[1:]))


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class MLP(nn.Module):
    """k parallel MLPs (k=1 for an actor). Input (B, in) or (k, B, in); output (k, B, out)."""

    def __init__(self, sizes, activation="elu", layer_norm=False, k=1):
        super().__init__()
        self.k, self.sizes = k, list(sizes)
        layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(EnsembleLinear(k, n_in, n_out))
            if i < len(sizes) - 2:
                if layer_norm:
                    layers.append(EnsembleLayerNorm(k, n_out))
                layers.append(ACTIVATIONS[activation]())
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.k, -1, -1)
        return self.layers(x)

    def flops_per_sample(self):
        return self.k * dense_flops(self.sizes)


class Actor(nn.Module):
    """Deterministic tanh policy (PQL / TD3)."""

    def __init__(self, obs_dim, act_dim, hidden, activation="elu", layer_norm=False):
        super().__init__()
        self.net = MLP([obs_dim] + list(hidden) + [act_dim], activation, layer_norm)

    def forward(self, obs):
        return torch.tanh(self.net(obs)[0])

    def flops_per_sample(self):
        return self.net.flops_per_sample()


class GaussianActor(nn.Module):
    """Squashed Gaussian policy (SAC): tanh(mu + std * eps), log-prob with the tanh correction."""

    log_std_min, log_std_max = -5.0, 2.0

    def __init__(self, obs_dim, act_dim, hidden, activation="elu", layer_norm=False, init_alpha=1.0):
        super().__init__()
        self.act_dim = act_dim
        self.net = MLP([obs_dim] + list(hidden) + [2 * act_dim], activation, layer_norm)
        # The entropy temperature lives with the policy so that one policy snapshot carries it to the
        # critic learner (SAC's target needs it).
        self.log_alpha = nn.Parameter(torch.tensor(math.log(init_alpha)))

    def forward(self, obs):  # the deterministic (mean) action, used for evaluation
        return torch.tanh(self.net(obs)[0][:, : self.act_dim])

    def sample(self, obs):
        mu, log_std = self.net(obs)[0].chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(log_std) + 1)
        std = log_std.exp()
        u = mu + std * torch.randn_like(mu)
        action = torch.tanh(u)
        # log N(u; mu, std) - sum log(1 - tanh(u)^2), the latter in a numerically stable form
        log_prob = (-0.5 * ((u - mu) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return action, log_prob

    def flops_per_sample(self):
        return self.net.flops_per_sample()


class Critic(nn.Module):
    """Twin (k=2) Q networks on concat(obs, action); `atoms` > 1 makes each a C51 head of logits."""

    def __init__(self, obs_dim, act_dim, hidden, activation="elu", layer_norm=False, k=2, atoms=1):
        super().__init__()
        self.atoms = atoms
        self.net = MLP([obs_dim + act_dim] + list(hidden) + [atoms], activation, layer_norm, k=k)

    def forward(self, obs, action):  # -> (k, B) Q values, or (k, B, atoms) logits
        out = self.net(torch.cat([obs, action], dim=-1))
        return out.squeeze(-1) if self.atoms == 1 else out

    def flops_per_sample(self):
        return self.net.flops_per_sample()


def build(cfg, obs_dim, act_dim):
    """(actor, critic) for a resolved config."""
    n = cfg.net
    if cfg.algo.name == "sac":
        actor = GaussianActor(obs_dim, act_dim, n.actor_hidden, n.activation, n.layer_norm, cfg.algo.init_alpha)
    else:
        actor = Actor(obs_dim, act_dim, n.actor_hidden, n.activation, n.layer_norm)
    atoms = cfg.algo.num_atoms if cfg.algo.distributional else 1
    critic = Critic(obs_dim, act_dim, n.critic_hidden, n.activation, n.layer_norm, atoms=atoms)
    return actor, critic


def update_flops(actor, critic, batch_size):
    """FLOPs of one critic update and one policy update (see the module docstring's convention)."""
    a, c = actor.flops_per_sample(), critic.flops_per_sample()
    critic_update = batch_size * (a + c + 3 * c)  # next action, target critics, online fwd + bwd
    policy_update = batch_size * (3 * a + 2 * c)  # actor fwd + bwd, critic fwd + input-grad bwd
    return critic_update, policy_update
