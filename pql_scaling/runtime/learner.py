"""The two learner roles: the V-learner (critic) and the P-learner (policy).

Each owns its network and optimiser and *reads* the other's network: in `mode=sync` the very
module, in `mode=trio` a snapshot copied from shared memory. An update is sample -> normalise ->
loss -> step; statistics are summed on the device and read only at log points.

Two implementations of the same update. `perf.compile=off, perf.amp=off`: `update(batch)`, plain
eager autograd and `opt.step()` (the deterministic reference). Otherwise `Fast.step`: the whole
update (sample gather, normalise, loss, gradients, clip, AdamW, soft target update) as one function
that torch.compile turns into one graph. It takes gradients with torch.func (`loss.backward()` and
`optimizer.step()` would each break the graph: torch.optim breaks it around every step on purpose)
and steps with torch.optim's own functional AdamW over the optimiser's state tensors, so both paths
read and write the same checkpoints.
"""
import copy

import torch
from torch.optim.adamw import adamw

from pql_scaling.core import losses as algo
from pql_scaling.core.replay import FIELDS

COMPILE_MODES = {"default": None, "max-autotune": "max-autotune", "reduce-overhead": "reduce-overhead"}


def make_optimizer(params, lr, weight_decay, device):
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


def check_compiler(device):
    """Inductor's CPU code is C++ that includes Python.h: say what is missing before the first update fails on it."""
    import os
    import shutil
    import sysconfig

    if torch.device(device).type != "cpu":
        return
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None and shutil.which("c++") is None:
        raise RuntimeError("perf.compile on CPU needs a C++ compiler (%s not found): install one (Debian/Ubuntu: "
                           "apt-get install build-essential python3-dev), or set perf.compile=off" % cxx)
    if not os.path.exists(os.path.join(sysconfig.get_path("include"), "Python.h")):
        raise RuntimeError("perf.compile on CPU needs Python's C headers (no Python.h in %s): apt-get install "
                           "python3-dev (or python3.X-dev for your Python), or set perf.compile=off"
                           % sysconfig.get_path("include"))


def set_precision(perf, device):
    """perf.tf32 for CUDA matmuls and convolutions (a process-wide setting, so set by each learner's process).

    torch >= 2.9 has `fp32_precision` and deprecates `allow_tf32`; inductor refuses a mix of the two APIs, so
    use the new one wherever it exists and only it."""
    if torch.device(device).type == "cuda" and perf.tf32:
        set_tf32(True)


def set_tf32(on):
    matmul, conv = torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)
    if hasattr(matmul, "fp32_precision") and conv is not None and hasattr(conv, "fp32_precision"):
        matmul.fp32_precision = conv.fp32_precision = "tf32" if on else "ieee"
    else:
        matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(on)


def init_adamw_state(opt):
    """AdamW's per-parameter state as its first step() would create it (step on the parameter's device, as
    fused / capturable AdamW keeps it), so the functional step can update it in place from the start."""
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state[p]
            if not st:
                st["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def load_optimizer(opt, state, keep):
    """opt.load_state_dict; `keep`: copy the values into the state tensors the compiled step already uses (its
    graph, and a CUDA graph, hold their addresses) instead of replacing them."""
    old = {p: dict(st) for p, st in opt.state.items()} if keep else {}
    opt.load_state_dict(state)
    if keep:
        init_adamw_state(opt)
        for p, st in opt.state.items():
            for k, t in old.get(p, {}).items():
                t.copy_(st[k])
                st[k] = t


@torch.no_grad()
def adamw_step(opt, grads):
    """opt.step() as torch.optim's functional AdamW (the same math; foreach, so inductor can fuse it)."""
    i = 0
    for g in opt.param_groups:
        ps = g["params"]
        st = [opt.state[p] for p in ps]
        adamw(ps, grads[i : i + len(ps)], [s["exp_avg"] for s in st], [s["exp_avg_sq"] for s in st], [],
                [s["step"] for s in st], foreach=True, capturable=g["capturable"], amsgrad=False,
                beta1=g["betas"][0], beta2=g["betas"][1], lr=g["lr"], weight_decay=g["weight_decay"],
                eps=g["eps"], maximize=False)
        i += len(ps)


def uniform_index(batch_size, size, start, capacity):
    """Replay.sample's indices with the bounds as 0-dim device tensors: one graph for every replay size."""
    u = torch.rand(batch_size, device=size.device)
    idx = torch.minimum((u * size).long(), (size - 1).clamp(min=0))
    return (idx + start) % capacity


class Objective(torch.nn.Module):
    """A loss as a module over the networks it uses, so torch.func can differentiate it w.r.t. one of them
    (functional_call swaps in that network's parameters, including those read through methods like sample())."""

    def __init__(self, fn, **nets):
        super().__init__()
        self.fn, self.nets = fn, torch.nn.ModuleDict(nets)

    def forward(self, batch):
        return self.fn(batch, **self.nets)


class Fast:
    """The compiled (or bf16) update of one learner, which trains the network `name` with `learner.loss`."""

    def __init__(self, learner, name, net, clip_names, device):
        perf, a = learner.cfg.perf, learner.cfg.algo
        self.learner, self.net_name = learner, name
        self.device = learner.stats.device  # a tensor's device (cuda:0, not cuda), to compare with the replay's
        self.batch_size, self.grad_clip = int(a.batch_size), float(a.grad_clip)  # plain numbers: dynamo cannot trace OmegaConf
        self.objective = Objective(learner.loss, **{name: net})
        named = {id(p): n for n, p in net.named_parameters()}
        own = [named[id(p)] for p in learner.params_all]  # in the optimiser's order, as the grads must be
        self.names = ["nets.%s.%s" % (name, n) for n in own]
        self.clip = [i for i, n in enumerate(own) if n in clip_names]
        self.amp = perf.amp == "bf16"
        self.size = torch.zeros((), dtype=torch.int64, device=device)
        self.start = torch.zeros((), dtype=torch.int64, device=device)
        # CUDA graphs (reduce-overhead) copy every input whose address is not known to be fixed into a buffer
        # of their own before each replay: say which are (the optimiser state, the statistics, the bounds,
        # the normaliser; the replay storage on first use), so nothing is copied
        self.static = set()
        self.mark_static([t for st in learner.opt.state.values() for t in st.values()]
                         + [learner.stats, self.size, self.start] + list(learner.norm.buffers()))
        fn = self.step
        if perf.compile != "off":
            check_compiler(device)
            fn = torch.compile(fn, mode=COMPILE_MODES[perf.compile], fullgraph=True, dynamic=False)
        self.fn = fn

    def mark_static(self, tensors):
        mark = getattr(torch._dynamo, "mark_static_address", None)  # torch >= 2.1
        for t in tensors:
            if mark is not None and id(t) not in self.static:
                mark(t)
                self.static.add(id(t))

    def grads(self, params, batch):
        def f(p):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                loss, aux = torch.func.functional_call(self.objective, p, (batch,))
            return loss.float(), aux.float()

        return torch.func.grad_and_value(f, has_aux=True)(params)

    def step(self, data, size, start, gather):
        """The whole update; `gather`: sample from replay storage `data` here, else `data` is the batch."""
        L = self.learner
        if gather:
            idx = uniform_index(self.batch_size, size, start, data["obs"].shape[0])
            batch = algo.Batch(*(data[k][idx] for k in FIELDS))
        else:
            batch = data
        batch = normalised(batch, L.norm)
        params = {n: p.detach() for n, p in zip(self.names, L.params_all)}  # grads from torch.func alone
        grads, (loss, aux) = self.grads(params, batch)
        grads = [grads[n] for n in self.names]
        if self.grad_clip > 0:
            algo.clip_grads_([grads[i] for i in self.clip], self.grad_clip)
        adamw_step(L.opt, grads)
        L.after_step()
        L.stats += torch.stack([loss.detach(), aux.detach(), torch.ones_like(aux)])

    @torch.no_grad()  # torch.func takes its gradients regardless; no autograd graph around the compiled call, so
    # AOTAutograd builds an inference graph that CUDA graphs can capture whole (the in-place parameter updates included)
    def __call__(self, replay, size, start):
        """One update from `size` rows of `replay` from row `start` on (host ints; copied in, never read back)."""
        if replay.data["obs"].device == self.device:
            self.mark_static(replay.data.values())
            self.size.fill_(size)  # a kernel with the value as its argument: no host sync, no copy
            self.start.fill_(start)
            self.fn(replay.data, self.size, self.start, True)
        else:  # the replay is on another device: gather there, copy the batch over, run the rest compiled
            self.fn(sample_to(replay, self.batch_size, size, start, self.device), None, None, False)


def sample_to(replay, batch_size, size, start, device):
    """replay.sample, copied to `device` when the replay lives on another one (trio placement)."""
    batch = replay.sample(batch_size, size=size, start=start)
    if batch.obs.device != device:
        batch = algo.Batch(*(x.to(device, non_blocking=True) for x in batch))
    return batch


def normalised(batch, norm):
    return batch._replace(obs=norm(batch.obs), next_obs=norm(batch.next_obs))


def c51_support(algo_cfg, device):
    """The C51 atoms, or None for a scalar critic."""
    a = algo_cfg
    return torch.linspace(a.v_min, a.v_max, a.num_atoms, device=device) if a.distributional else None


class Learner:
    """What both learners share: `learn` samples and updates, eagerly or through the compiled `Fast` step."""

    def learn(self, replay, size=None, start=0):
        """One update on a uniform batch of `size` replay rows from `start` on (default: all filled rows)."""
        if self.fast is None:
            self.update(sample_to(replay, self.cfg.algo.batch_size, size, start, self.stats.device))
        else:
            self.fast(replay, replay.size if size is None else size, start)
            self.updates += 1


class VLearner(Learner):
    def __init__(self, cfg, critic, actor_view, norm, device):
        a = cfg.algo
        self.cfg, self.critic, self.actor_view, self.norm = cfg, critic, actor_view, norm
        self.critic_target = copy.deepcopy(critic).requires_grad_(False)
        self.opt = make_optimizer(critic.parameters(), a.critic_lr, a.weight_decay, device)
        self.params = list(critic.parameters())
        self.support = c51_support(a, device)
        self.sac = a.name == "sac"
        self.stats = torch.zeros(3, device=device)  # loss sum, q sum, count
        self.updates = 0
        self.params_all = self.params
        self.noise, self.tau = (float(a.target_noise), float(a.target_noise_clip)), float(a.tau)
        self.fast = None
        set_precision(cfg.perf, device)
        if cfg.perf.compile != "off" or cfg.perf.amp != "off":
            init_adamw_state(self.opt)
            self.fast = Fast(self, "critic", critic, [n for n, _ in critic.named_parameters()], device)

    def loss(self, batch, critic):
        return algo.critic_loss(self.actor_view, critic, self.critic_target, batch, self.sac, *self.noise, self.support)

    def after_step(self):
        algo.soft_update(self.critic_target, self.critic, self.tau)

    def update(self, batch):
        a = self.cfg.algo
        loss, q = algo.critic_loss(self.actor_view, self.critic, self.critic_target, normalised(batch, self.norm),
                                   self.sac, a.target_noise, a.target_noise_clip, self.support)
        algo.step(loss, self.opt, self.params, a.grad_clip)
        algo.soft_update(self.critic_target, self.critic, a.tau)
        self.stats += torch.stack([loss.detach(), q.detach(), torch.ones_like(q)])
        self.updates += 1

    def pop_stats(self):
        loss, q, n = self.stats.tolist()
        self.stats.zero_()
        return {"critic_loss": loss / n, "q_mean": q / n} if n else {}

    def state_dict(self):
        return {"critic": self.critic.state_dict(), "critic_target": self.critic_target.state_dict(),
                "critic_opt": self.opt.state_dict(), "updates": self.updates}

    def load_state_dict(self, s):
        self.critic.load_state_dict(s["critic"])
        self.critic_target.load_state_dict(s["critic_target"])
        load_optimizer(self.opt, s["critic_opt"], keep=self.fast is not None)
        self.updates = s["updates"]


class PLearner(Learner):
    def __init__(self, cfg, actor, critic_view, norm, device, act_dim):
        a = cfg.algo
        self.cfg, self.actor, self.critic_view, self.norm = cfg, actor, critic_view, norm
        self.sac = a.name == "sac"
        self.target_entropy = float(-act_dim if a.target_entropy is None else a.target_entropy)
        net_params = [p for n, p in actor.named_parameters() if n != "log_alpha"]
        groups = [{"params": net_params}]
        if self.sac:
            groups.append({"params": [actor.log_alpha], "lr": a.alpha_lr, "weight_decay": 0.0})
        self.opt = make_optimizer(groups, a.actor_lr, a.weight_decay, device)
        self.params = net_params
        self.support = c51_support(a, device)
        self.stats = torch.zeros(3, device=device)  # loss sum, (entropy | mean |action|) sum, count
        self.updates = 0
        self.params_all = [p for g in groups for p in g["params"]]  # the optimiser's order
        self.fast = None
        set_precision(cfg.perf, device)
        if cfg.perf.compile != "off" or cfg.perf.amp != "off":
            init_adamw_state(self.opt)
            names = [n for n, _ in actor.named_parameters() if n != "log_alpha"]
            self.fast = Fast(self, "actor", actor, names, device)

    def loss(self, batch, actor):
        return algo.actor_loss(actor, self.critic_view, batch, self.sac, self.target_entropy, self.support)

    def after_step(self):
        pass

    def update(self, batch):
        loss, aux = algo.actor_loss(self.actor, self.critic_view, normalised(batch, self.norm), self.sac,
                                    self.target_entropy, self.support)
        algo.step(loss, self.opt, self.params, self.cfg.algo.grad_clip)
        self.stats += torch.stack([loss.detach(), aux.detach(), torch.ones_like(aux)])
        self.updates += 1

    def pop_stats(self):
        loss, aux, n = self.stats.tolist()
        self.stats.zero_()
        if not n:
            return {}
        out = {"actor_loss": loss / n, ("entropy" if self.sac else "action_abs_mean"): aux / n}
        if self.sac:
            out["alpha"] = float(self.actor.log_alpha.detach().exp())
        return out

    def state_dict(self):
        return {"actor": self.actor.state_dict(), "actor_opt": self.opt.state_dict(), "updates": self.updates}

    def load_state_dict(self, s):
        self.actor.load_state_dict(s["actor"])
        load_optimizer(self.opt, s["actor_opt"], keep=self.fast is not None)
        self.updates = s["updates"]
