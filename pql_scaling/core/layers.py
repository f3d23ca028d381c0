"""The ensemble layers every network here is built from: a weight per member, (k, in, out), applied with one
batched matmul (nets.py's docstring: why, and the FLOP convention their `matmuls()` follow)."""

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
