"""What both learners set up around their update (runtime/learner.py): the AdamW optimiser and its state (so the
functional step reads and writes the same checkpoints as opt.step()), AdamW written out with a rate per member
for populations, and the checks and switches of perf.compile and perf.tf32."""

from typing import Any, Dict, Iterable, List, Union

import torch

from pql_scaling.core.members import broadcast_to_param

Tensor = torch.Tensor
Device = Union[str, torch.device]


def make_optimizer(
    params: Iterable[Any], lr: float, weight_decay: float, device: Device
) -> torch.optim.Optimizer:
    """AdamW as one fused kernel where this torch has it (CUDA; CPU from torch 2.4), else multi-tensor.

    On CUDA, capturable keeps the step counter on the device: no host sync, and the step can be
    captured in a CUDA graph.
    """
    params = list(params)
    cuda = torch.device(device).type == "cuda"
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True, capturable=cuda)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True, capturable=cuda)


def check_compiler(device: Device) -> None:
    """Inductor's CPU code is C++ that includes Python.h: say what is missing before the first update fails
    on it."""
    import os
    import shutil
    import sysconfig

    if torch.device(device).type != "cpu":
        return
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None and shutil.which("c++") is None:
        raise RuntimeError(
            "perf.compile on CPU needs a C++ compiler (%s not found): install one "
            "(Debian/Ubuntu: apt-get install build-essential python3-dev), or set "
            "perf.compile=off" % cxx
        )
    if not os.path.exists(os.path.join(sysconfig.get_path("include"), "Python.h")):
        raise RuntimeError(
            "perf.compile on CPU needs Python's C headers (no Python.h in %s): apt-get "
            "install python3-dev (or python3.X-dev for your Python), or set perf.compile=off"
            % sysconfig.get_path("include")
        )


def set_precision(perf: Any, device: Device) -> None:
    """perf.tf32 for CUDA matmuls and convolutions (a process-wide setting, so set by each learner's process).

    torch >= 2.9 has `fp32_precision` and deprecates `allow_tf32`; inductor refuses a mix of the two APIs, so
    use the new one wherever it exists and only it."""
    if torch.device(device).type == "cuda" and perf.tf32:
        set_tf32(True)


def set_tf32(on: bool) -> None:
    matmul, conv = torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)
    if hasattr(matmul, "fp32_precision") and conv is not None and hasattr(conv, "fp32_precision"):
        matmul.fp32_precision = conv.fp32_precision = "tf32" if on else "ieee"
    else:
        matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(on)


def compiling() -> bool:
    """Inside torch.compile's trace (torch >= 2.3; earlier torch: taken as not)."""
    return bool(getattr(torch.compiler, "is_compiling", lambda: False)())


def init_adamw_state(opt: torch.optim.Optimizer) -> None:
    """AdamW's per-parameter state as its first step() would create it (step on the parameter's device, as
    fused / capturable AdamW keeps it), so the functional step can update it in place from the start."""
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state[p]
            if not st:
                st["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def load_optimizer(opt: torch.optim.Optimizer, state: Dict[str, Any]) -> None:
    """opt.load_state_dict, copying the values into the state tensors the step already uses (a compiled graph,
    and a CUDA graph, hold their addresses) instead of replacing them."""
    old = {p: dict(st) for p, st in opt.state.items()}
    opt.load_state_dict(state)
    init_adamw_state(opt)
    for p, st in opt.state.items():
        for k, t in old.get(p, {}).items():
            t.copy_(st[k])
            st[k] = t


@torch.no_grad()
def adamw_member_step(opt: torch.optim.Optimizer, grads: List[Tensor], lr: Tensor) -> None:
    """AdamW (decoupled weight decay, bias-corrected moments) with a learning rate per member, `lr` (K,), on
    member-stacked parameters: torch.optim's step takes one rate per parameter tensor, so this is its math
    written out, elementwise, for a population whose members' rates differ."""
    i = 0
    for j, g in enumerate(opt.param_groups):
        (beta1, beta2), eps, wd = g["betas"], g["eps"], g["weight_decay"]
        for p in g["params"]:
            grad, st = grads[i], opt.state[p]
            i += 1
            st["step"] += 1
            # the network's group takes the members' rates; another (SAC's temperature) keeps its own
            lr_p = broadcast_to_param(lr, p) if j == 0 else g["lr"]
            p.mul_(1 - lr_p * wd)
            st["exp_avg"].lerp_(grad, 1 - beta1)
            st["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            bias1, bias2 = 1 - beta1 ** st["step"], 1 - beta2 ** st["step"]
            denom = (st["exp_avg_sq"].sqrt() / bias2.sqrt()).add_(eps)
            p.sub_(lr_p / bias1 * st["exp_avg"] / denom)
