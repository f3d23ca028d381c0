"""Networks and their exact parameter / FLOP counts.

The twin critic is one *ensemble* network whose layers hold a weight per member, (k, in, out), applied
with one batched matmul: the two critics cost one kernel per layer instead of two, which matters
at PQL's batch sizes and keeps the update a short, graphable sequence of ops. Three critic bodies share
the (obs, action) -> (k, B[, atoms]) signature (`net.critic_arch`):
  mlp      dense layers (today's PQL critic);
  bro      BroNet (Nauman et al. 2024): Dense-LN-ReLU, then residual blocks x + LN(D(ReLU(LN(D(x))))), head;
  softmoe  an MLP whose penultimate dense layer is a Soft MoE layer (Puigcerver et al. 2023, placed as in
           Obando-Ceron et al. 2024): per-sample tokens, dispatch softmax over tokens, combine softmax over
           slots, each expert Dense-ReLU-Dense on its slots.

FLOP convention (in run.json): every matmul costs 2*m*n*k (what torch.utils.flop_counter counts), a
dense layer adds `out` per sample for its bias in the forward pass; activations, norms and softmaxes
are not counted. Each body lists its matmuls with a kind, from which the backward cost is exact:
  "in"  dense layer on the network input: backward = weight grad only (1x), or input grad only (1x)
        when the input needs a gradient and the weights do not (the critic inside the actor loss);
  "w"   dense layer on a hidden activation: 2x with weight grads, 1x input-only;
  "aa"  product of two activations (Soft MoE dispatch / combine): 2x either way.
"""

import math

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


def dense_ops(k, sizes):
    """Matmul list of a dense stack: (FLOPs per sample, kind), the first layer on the input."""
    return [(2 * k * i * o, "in" if j == 0 else "w") for j, (i, o) in enumerate(zip(sizes[:-1], sizes[1:]))]


def _expand(x, k):
    return x.unsqueeze(0).expand(k, -1, -1) if x.dim() == 2 else x


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
        return self.layers(_expand(x, self.k))

    def matmuls(self):
        return dense_ops(self.k, self.sizes)

    def bias_flops(self):
        return self.k * sum(self.sizes[1:])


ARCHS = ("mlp", "bro", "softmoe")


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def forward_flops(net, matmul_only=False):
    """Forward FLOPs per sample of a body with `matmuls()` and `bias_flops()`."""
    return sum(f for f, _ in net.matmuls()) + (0 if matmul_only else net.bias_flops())


def backward_flops(net, weight_grads=True):
    """Backward matmul FLOPs per sample: with weight grads (the net's own update, its input needs no
    grad) or input grads only (a frozen net differentiated w.r.t. its input)."""
    cost = {True: {"in": 1, "w": 2, "aa": 2}, False: {"in": 1, "w": 1, "aa": 2}}[bool(weight_grads)]
    return sum(f * cost[kind] for f, kind in net.matmuls())


def body(arch, n_in, n_out, hidden, activation="elu", layer_norm=False, k=1, moe=None):
    """The network body of an architecture; `hidden` = the dense widths (mlp), [width] * blocks + 1 (bro:
    blocks = len(hidden) - 1), [width] * depth (softmoe: depth = len(hidden))."""
    from pql_scaling.core.bodies import BroNet, MoENet  # the dense default needs neither

    if arch == "mlp":
        return MLP([n_in] + list(hidden) + [n_out], activation, layer_norm, k)
    if arch == "bro":
        return BroNet(n_in, n_out, hidden[0], len(hidden) - 1, k)
    if arch == "softmoe":
        return MoENet(n_in, n_out, hidden[0], len(hidden), moe or {}, activation, layer_norm, k)
    raise ValueError("unknown architecture %r; choose one of %s" % (arch, ARCHS))


def by_member(net, x, members):
    """A member-stacked body on member-major rows: (K*n, in) -> (K*n, out), member k's rows through its net
    (one member: the body's single ensemble entry, as a single run has always computed it)."""
    if members == 1:
        return net(x)[0]
    out = net(x.reshape(members, -1, x.shape[-1]))
    return out.reshape(-1, out.shape[-1])


class Actor(nn.Module):
    """Deterministic tanh policy (PQL / TD3); `members` policies for a population (rows member-major)."""

    def __init__(self, obs_dim, act_dim, hidden, activation="elu", layer_norm=False, arch="mlp", members=1):
        super().__init__()
        self.members = members
        self.net = body(arch, obs_dim, act_dim, hidden, activation, layer_norm, k=members)

    def forward(self, obs):
        return torch.tanh(by_member(self.net, obs, self.members))


class GaussianActor(nn.Module):
    """Squashed Gaussian policy (SAC): tanh(mu + std * eps), log-prob with the tanh correction."""

    log_std_min, log_std_max = -5.0, 2.0

    def __init__(
        self,
        obs_dim,
        act_dim,
        hidden,
        activation="elu",
        layer_norm=False,
        init_alpha=1.0,
        arch="mlp",
        members=1,
    ):
        super().__init__()
        self.act_dim, self.members = act_dim, members
        self.net = body(arch, obs_dim, 2 * act_dim, hidden, activation, layer_norm, k=members)
        # The entropy temperature lives with the policy so that one policy snapshot carries it to the
        # critic learner (SAC's target needs it); one per member in a population.
        alpha = torch.tensor(math.log(init_alpha))
        self.log_alpha = nn.Parameter(alpha if members == 1 else alpha.repeat(members))
        self.randn_like = torch.randn_like  # a population's: each member's noise from its own stream

    def forward(self, obs):  # the deterministic (mean) action, used for evaluation
        return torch.tanh(by_member(self.net, obs, self.members)[:, : self.act_dim])

    def sample(self, obs):
        mu, log_std = by_member(self.net, obs, self.members).chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(log_std) + 1)
        std = log_std.exp()
        u = mu + std * self.randn_like(mu)
        action = torch.tanh(u)
        # log N(u; mu, std) - sum log(1 - tanh(u)^2), the latter in a numerically stable form
        log_prob = (-0.5 * ((u - mu) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return action, log_prob


class Critic(nn.Module):
    """Twin (k=2) Q networks on concat(obs, action); `atoms` > 1 makes each a C51 head of logits. A population's
    critic holds members x k ensemble entries (member-major) and takes member-major rows."""

    def __init__(
        self,
        obs_dim,
        act_dim,
        hidden,
        activation="elu",
        layer_norm=False,
        k=2,
        atoms=1,
        arch="mlp",
        moe=None,
        members=1,
    ):
        super().__init__()
        self.atoms, self.k, self.members = atoms, k, members
        self.net = body(arch, obs_dim + act_dim, atoms, hidden, activation, layer_norm, k * members, moe)

    def forward(self, obs, action):  # -> (k, B) Q values, or (k, B, atoms) logits
        x = torch.cat([obs, action], dim=-1)
        if self.members == 1:
            out = self.net(x)
            return out.squeeze(-1) if self.atoms == 1 else out
        m, k = self.members, self.k
        x = x.reshape(m, 1, -1, x.shape[-1]).expand(m, k, -1, -1).reshape(m * k, -1, x.shape[-1])
        out = self.net(x)  # (m*k, B, atoms): member-major ensemble entries
        out = (
            out.reshape((m, k) + tuple(out.shape[1:])).transpose(0, 1).reshape((k, -1) + tuple(out.shape[2:]))
        )
        return out.squeeze(-1) if self.atoms == 1 else out


def hidden_of(n, role):
    """The hidden widths of a role ("critic" / "actor") from net.<role>_hidden, or from
    net.<role>_width x net.<role>_depth when the width is set (one key scales N)."""
    width, depth = n.get(role + "_width"), n.get(role + "_depth")
    if width is None:
        return list(n[role + "_hidden"])
    return [int(width)] * int(depth if depth is not None else 2)


def moe_kwargs(n):
    width = hidden_of(n, "critic")[0]
    tokens = int(n.tokens)
    d = width // max(tokens, 1)
    return {
        "tokens": tokens,
        "experts": int(n.experts),
        "slots": int(n.slots_per_expert),
        "hidden": int(n.expert_hidden) if n.expert_hidden else d,
        "normalize": bool(n.moe_norm),
    }


def build(cfg, obs_dim, act_dim, critic_obs_dim=0):
    """(actor, critic) for a resolved config; the critic reads `critic_obs_dim` privileged inputs when > 0 (an
    asymmetric critic), else the policy's `obs_dim` (so its parameter and FLOP counts follow)."""
    n = cfg.net
    ah, ch = hidden_of(n, "actor"), hidden_of(n, "critic")
    aarch, carch = n.get("actor_arch", "mlp"), n.get("critic_arch", "mlp")
    if cfg.algo.name == "sac":
        actor = GaussianActor(obs_dim, act_dim, ah, n.activation, n.layer_norm, cfg.algo.init_alpha, aarch)
    else:
        actor = Actor(obs_dim, act_dim, ah, n.activation, n.layer_norm, aarch)
    atoms = cfg.algo.num_atoms if cfg.algo.distributional else 1
    moe = moe_kwargs(n) if carch == "softmoe" else None
    c_in = critic_obs_dim or obs_dim
    critic = Critic(c_in, act_dim, ch, n.activation, n.layer_norm, atoms=atoms, arch=carch, moe=moe)
    return actor, critic


def build_population(cfg, obs_dim, act_dim, seeds, critic_obs_dim=0):
    """A population's (actor, critic) stacked member-major, and each member's CPU RNG state after its init
    (index 0: None). Member 0's networks are drawn from torch's global RNG exactly as a single run's (so a
    population of one is that run); member k's under its own seed in a forked RNG, exactly as a single run
    seeded with seeds[k] would draw them; the global stream moves only by member 0's draws."""
    members = len(seeds)
    n = cfg.net
    ah, ch = hidden_of(n, "actor"), hidden_of(n, "critic")
    aarch, carch = n.get("actor_arch", "mlp"), n.get("critic_arch", "mlp")
    atoms = cfg.algo.num_atoms if cfg.algo.distributional else 1
    moe = moe_kwargs(n) if carch == "softmoe" else None
    with torch.random.fork_rng(devices=[]):  # shapes only: every entry is overwritten below
        if cfg.algo.name == "sac":
            actor = GaussianActor(
                obs_dim, act_dim, ah, n.activation, n.layer_norm, cfg.algo.init_alpha, aarch, members=members
            )
        else:
            actor = Actor(obs_dim, act_dim, ah, n.activation, n.layer_norm, aarch, members=members)
        critic = Critic(
            critic_obs_dim or obs_dim,
            act_dim,
            ch,
            n.activation,
            n.layer_norm,
            atoms=atoms,
            arch=carch,
            moe=moe,
            members=members,
        )
    states = [None]
    for m, seed in enumerate(seeds):
        if m == 0:
            one = build(cfg, obs_dim, act_dim, critic_obs_dim)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                one = build(cfg, obs_dim, act_dim, critic_obs_dim)
                states.append(torch.get_rng_state())
        with torch.no_grad():
            for net1, net in zip(one, (actor, critic)):
                for p, p1 in zip(net.parameters(), net1.parameters()):
                    if p1.dim() == 0:  # SAC's log alpha: one per member
                        p[m].copy_(p1)
                        continue
                    e = p1.shape[0]  # ensemble entries per member
                    p[m * e : (m + 1) * e].copy_(p1)
    return actor, critic, states


def per_sample(net):
    """{forward, backward, backward_input_only} FLOPs per sample of a body (run.json)."""
    return {
        "forward": forward_flops(net),
        "forward_matmul": forward_flops(net, True),
        "backward": backward_flops(net, True),
        "backward_input_only": backward_flops(net, False),
    }


def update_flops(actor, critic, batch_size, matmul_only=False):
    """FLOPs of one critic update and one policy update (see the module docstring's convention):
    critic update = next action (actor fwd) + target critics fwd + online critics fwd + bwd;
    policy update = actor fwd + bwd, critic fwd + input-grad-only bwd."""
    a, c = actor.net, critic.net
    af, cf = forward_flops(a, matmul_only), forward_flops(c, matmul_only)
    critic_update = batch_size * (af + 2 * cf + backward_flops(c, True))
    policy_update = batch_size * (af + backward_flops(a, True) + cf + backward_flops(c, False))
    m = getattr(critic, "members", 1)  # a population's nets: every count is members x one member's
    return critic_update // m, policy_update // m


def facts(cfg, actor, critic):
    """run.json's architecture facts: arch, knobs, widths and the per-sample FLOPs of both nets."""
    n = cfg.net
    carch = n.get("critic_arch", "mlp")
    out = {
        "critic_arch": carch,
        "actor_arch": n.get("actor_arch", "mlp"),
        "critic_hidden": hidden_of(n, "critic"),
        "actor_hidden": hidden_of(n, "actor"),
        "critic_width": hidden_of(n, "critic")[0],
        "critic_depth": len(hidden_of(n, "critic")),
        "experts": int(n.experts) if carch == "softmoe" else 0,
        "critic_flops_per_sample": per_sample(critic.net),
        "actor_flops_per_sample": per_sample(actor.net),
    }
    if carch == "softmoe":
        out["moe"] = moe_kwargs(n)
    return out


def __getattr__(name):
    """nets.BroNet, nets.SoftMoE, nets.MoENet: the bodies of core/bodies.py (which imports this module)."""
    if name in ("BroNet", "SoftMoE", "MoENet"):
        from pql_scaling.core import bodies

        return getattr(bodies, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
