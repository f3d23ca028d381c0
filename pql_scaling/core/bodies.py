"""The critic bodies beside the dense MLP (nets.py): BroNet (Nauman et al. 2024) and an MLP with a Soft MoE layer
(Puigcerver et al. 2023, placed as in Obando-Ceron et al. 2024), on nets.py's ensemble layers and FLOP
convention. nets.body() builds them; `nets.BroNet` etc. name them too."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from pql_scaling.core.nets import ACTIVATIONS, MLP, EnsembleLayerNorm, EnsembleLinear, _expand


class BroNet(nn.Module):
    """BroNet: Dense-LN-ReLU to `width`, `blocks` residual blocks x + LN(D(ReLU(LN(D(x))))), dense head."""

    def __init__(self, n_in, n_out, width, blocks, k=1):
        super().__init__()
        self.k, self.n_in, self.n_out, self.width, self.blocks = k, n_in, n_out, width, blocks
        self.stem = nn.Sequential(EnsembleLinear(k, n_in, width), EnsembleLayerNorm(k, width), nn.ReLU())
        self.res = nn.ModuleList(
            nn.Sequential(
                EnsembleLinear(k, width, width),
                EnsembleLayerNorm(k, width),
                nn.ReLU(),
                EnsembleLinear(k, width, width),
                EnsembleLayerNorm(k, width),
            )
            for _ in range(blocks)
        )
        self.head = EnsembleLinear(k, width, n_out)

    def forward(self, x):
        x = self.stem(_expand(x, self.k))
        for block in self.res:
            x = x + block(x)
        return self.head(x)

    def matmuls(self):
        w, k = self.width, self.k
        return (
            [(2 * k * self.n_in * w, "in")]
            + [(2 * k * w * w, "w")] * (2 * self.blocks)
            + [(2 * k * w * self.n_out, "w")]
        )

    def bias_flops(self):
        return self.k * (self.width * (1 + 2 * self.blocks) + self.n_out)


class SoftMoE(nn.Module):
    """Soft MoE layer on a (k, B, width) activation, tokens per sample (never mixed across the batch).

    The vector is cut into `tokens` tokens of d = width / tokens; Phi (d, experts * slots) scores every
    (token, slot); dispatch D = softmax over tokens per slot, slot inputs = D^T X; expert e runs
    Dense(d, hidden)-ReLU-Dense(hidden, d) on its `slots` slot inputs; combine C = softmax over all slots
    per token, output = C Y~. `normalize`: L2-normalise the tokens and Phi's columns and scale the logits
    by a learned scalar (Puigcerver et al. 2023, sec. 2.3), which keeps the softmaxes from saturating.
    """

    def __init__(self, width, tokens, experts, slots, hidden, normalize=True, k=1):
        super().__init__()
        if width % tokens:
            raise ValueError("Soft MoE: width %d is not divisible by net.tokens=%d" % (width, tokens))
        self.k, self.m, self.d, self.n, self.p, self.h = k, tokens, width // tokens, experts, slots, hidden
        self.normalize = normalize
        s = experts * slots
        self.phi = nn.Parameter(torch.randn(k, self.d, s) / math.sqrt(self.d))
        self.scale = nn.Parameter(torch.ones(k, 1, 1, 1))
        b1, b2 = 1.0 / math.sqrt(self.d), 1.0 / math.sqrt(hidden)
        self.w1 = nn.Parameter(torch.empty(k, experts, self.d, hidden).uniform_(-b1, b1))
        self.b1 = nn.Parameter(torch.empty(k, 1, experts, 1, hidden).uniform_(-b1, b1))
        self.w2 = nn.Parameter(torch.empty(k, experts, hidden, self.d).uniform_(-b2, b2))
        self.b2 = nn.Parameter(torch.empty(k, 1, experts, 1, self.d).uniform_(-b2, b2))

    def forward(self, x):  # (k, B, m*d) -> (k, B, m*d)
        k, B = x.shape[0], x.shape[1]
        x = x.reshape(k, B, self.m, self.d)
        if self.normalize:
            logits = (
                torch.einsum("kbmd,kds->kbms", F.normalize(x, dim=-1), F.normalize(self.phi, dim=1))
                * self.scale
            )
        else:
            logits = torch.einsum("kbmd,kds->kbms", x, self.phi)
        dispatch = logits.softmax(dim=2)  # over tokens, per slot
        combine = logits.softmax(dim=3)  # over slots, per token
        slots = torch.einsum("kbms,kbmd->kbsd", dispatch, x).reshape(k, B, self.n, self.p, self.d)
        h = torch.relu(torch.einsum("kbnpd,kndh->kbnph", slots, self.w1) + self.b1)
        y = (torch.einsum("kbnph,knhd->kbnpd", h, self.w2) + self.b2).reshape(k, B, self.n * self.p, self.d)
        return torch.einsum("kbms,kbsd->kbmd", combine, y).reshape(k, B, self.m * self.d)

    def matmuls(self):
        k, m, d, s, h = self.k, self.m, self.d, self.n * self.p, self.h
        return [
            (2 * k * m * d * s, "w"),
            (2 * k * s * m * d, "aa"),
            (2 * k * s * d * h, "w"),
            (2 * k * s * h * d, "w"),
            (2 * k * m * s * d, "aa"),
        ]

    def bias_flops(self):
        return self.k * self.n * self.p * (self.h + self.d)


class MoENet(nn.Module):
    """Dense trunk to `width` (depth - 2 hidden dense layers after the first), a Soft MoE layer where the
    penultimate dense layer would be, the activation, then the dense head."""

    def __init__(self, n_in, n_out, width, depth, moe, activation="elu", layer_norm=False, k=1):
        super().__init__()
        if depth < 2:
            raise ValueError("softmoe needs net.critic_depth >= 2 (a dense layer before the Soft MoE layer)")
        self.k = k
        self.trunk = MLP([n_in] + [width] * (depth - 1), activation, layer_norm, k)
        self.act = nn.Sequential(
            *([EnsembleLayerNorm(k, width)] if layer_norm else []), ACTIVATIONS[activation]()
        )
        self.moe = SoftMoE(width, k=k, **moe)
        self.head = EnsembleLinear(k, width, n_out)
        self.width, self.n_out = width, n_out

    def forward(self, x):
        x = self.act(self.trunk(x))
        return self.head(self.act(self.moe(x)))

    def matmuls(self):
        return self.trunk.matmuls() + self.moe.matmuls() + [(2 * self.k * self.width * self.n_out, "w")]

    def bias_flops(self):
        return self.trunk.bias_flops() + self.moe.bias_flops() + self.k * self.n_out
