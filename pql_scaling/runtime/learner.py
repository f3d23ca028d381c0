"""The two learner roles: the V-learner (critic) and the P-learner (policy).

Each owns its network and optimiser and *reads* the other's network: in `mode=sync` the very
module, in `mode=trio` a snapshot copied from shared memory.

One update per learner, `Learner.step`: (gather a batch from replay storage) -> normalise -> loss ->
gradients -> clip -> AdamW -> soft target update -> statistics (summed on the device, read only at log
points). It runs as is when perf.compile=off (the deterministic reference) and is wrapped once by
torch.compile otherwise (LeanRL's switch), as one graph. Two primitives differ between the two, each
giving the same numbers: traced, the gradients come from torch.func (autograd.grad breaks the graph; run
eagerly, torch.func costs ~1.7x autograd's time on Pendulum's update on a CPU) and AdamW is foreach
(dynamo does not trace the fused kernel). The step is torch.optim's functional AdamW over the optimiser's
own state tensors, so both read and write the same checkpoints. bf16 autocast (perf.amp) is inside.

Populations (a leading member dimension): the parameters stacked by member, as the twin critic's
ensemble layers already are, give per-member gradients from either primitive (the loss sums over
members; torch.func's also composes with vmap); the rest of the step is elementwise over
parameter-shaped tensors, but for the clip, whose norm must then be taken per member. Compiled, a
population's update is one graph too: its per-member learning rates and batch masks are tensors, and a failed
(non-finite) member is only a status (runtime/population.py), nothing the graph branches on, so neither
recompiles; its members' draws come from their own generators, made just before the graph runs
(core/members.py's Tape), the first update run eagerly to record them.
"""

import copy
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import torch
from torch.optim.adamw import adamw

from pql_scaling.core import losses as algo
from pql_scaling.core.losses import Batch
from pql_scaling.core.members import Streams, Tape, broadcast_to_param, per_member_sq_norm
from pql_scaling.core.replay import Replay, Window, draw, sample, to_device
from pql_scaling.runtime.optim import (  # noqa: F401 - set_tf32: the GPU tests' name for it
    adamw_member_step,
    check_compiler,
    compiling,
    init_adamw_state,
    load_optimizer,
    make_optimizer,
    set_precision,
    set_tf32,
)

COMPILE_MODES = {"default": None, "max-autotune": "max-autotune", "reduce-overhead": "reduce-overhead"}

Tensor = torch.Tensor
Device = Union[str, torch.device]
Loss = Callable[[Batch, torch.nn.Module], Tuple[Tensor, Tensor]]  # (batch, trained net) -> (loss, aux)


@torch.no_grad()
def adamw_step(opt: torch.optim.Optimizer, grads: List[Tensor]) -> None:
    """opt.step() on `grads` (in the optimiser's parameter order): torch.optim's functional AdamW with the
    optimiser's own flags and state tensors, so eagerly the same kernels run. Dynamo does not trace the fused
    kernel: compiled, the step is foreach (the same math, which inductor fuses itself)."""
    fused_ok = not compiling()
    i = 0
    for g in opt.param_groups:
        ps, fused = g["params"], bool(g["fused"]) and fused_ok
        st = [opt.state[p] for p in ps]
        adamw(
            ps,
            grads[i : i + len(ps)],
            [s["exp_avg"] for s in st],
            [s["exp_avg_sq"] for s in st],
            [],
            [s["step"] for s in st],
            foreach=not fused,
            fused=fused,
            capturable=g["capturable"],
            amsgrad=False,
            beta1=g["betas"][0],
            beta2=g["betas"][1],
            lr=g["lr"],
            weight_decay=g["weight_decay"],
            eps=g["eps"],
            maximize=False,
        )
        i += len(ps)


def clip_grads_(grads: List[Tensor], max_norm: float, members: int = 1) -> None:
    """clip_grad_norm_'s math (and kernels) on a list of gradients (torch.func returns them apart from the
    parameters): scaled in place by min(1, max_norm / (total norm + 1e-6)). A population's (member-stacked)
    gradients: each member's by its own norm."""
    if members == 1:
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        torch._foreach_mul_(grads, (max_norm / (norm + 1e-6)).clamp(max=1.0))
        return
    scale = (max_norm / (per_member_sq_norm(grads, members).sqrt() + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(broadcast_to_param(scale, g))


@torch.no_grad()
def soft_update(target: torch.nn.Module, source: torch.nn.Module, tau: float) -> None:
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


def c51_support(algo_cfg: Any, device: Device) -> Optional[Tensor]:
    """The C51 atoms, or None for a scalar critic."""
    a = algo_cfg
    return torch.linspace(a.v_min, a.v_max, a.num_atoms, device=device) if a.distributional else None


class Objective(torch.nn.Module):
    """A loss as a module over the network it trains, so torch.func can differentiate it w.r.t. that network
    (functional_call swaps in its parameters, including those read through methods like sample())."""

    def __init__(self, fn: Loss, name: str, net: torch.nn.Module):
        super().__init__()
        self.fn, self.name, self.nets = fn, name, torch.nn.ModuleDict({name: net})

    def forward(self, batch: Batch) -> Tuple[Tensor, Tensor]:
        return self.fn(batch, self.nets[self.name])


def value_and_grads(
    objective: Objective,
    params: Dict[str, Tensor],
    batch: Batch,
    amp: bool,
    functional: Optional[bool] = None,
) -> Tuple[List[Tensor], Tuple[Tensor, Tensor]]:
    """([gradient per parameter], (loss, aux)) of `objective` w.r.t. `params` (the trained module's own
    parameters, by name), under bf16 autocast when `amp`; loss and aux float32. `functional` (default: when
    torch.compile traces): by torch.func, over detached parameters, as a graph needs (autograd.grad breaks
    it); else by autograd.grad, the same numbers bit for bit without torch.func's per-op cost."""

    def f(p):
        with torch.autocast(batch.obs.device.type, dtype=torch.bfloat16, enabled=amp):
            loss, aux = objective(batch) if p is None else torch.func.functional_call(objective, p, (batch,))
        loss, aux = loss.float(), aux.float()
        # a population's losses are (K,), one per member: their sum gives each member its own gradients
        return (loss.sum() if loss.dim() else loss), (loss, aux)

    if compiling() if functional is None else functional:
        grads, (_, out) = torch.func.grad_and_value(f, has_aux=True)(
            {n: p.detach() for n, p in params.items()}
        )
        return [grads[n] for n in params], out
    with torch.enable_grad():
        total, (loss, aux) = f(None)
    return list(torch.autograd.grad(total, list(params.values()))), (loss.detach(), aux.detach())


class Learner:
    """What both learners share: the optimiser, the statistics, the update count and the one update `step`,
    run as is or compiled. A learner trains `net` (called `name` in its checkpoint) with `loss`; AdamW over
    `groups` (the first group is the network and is gradient-clipped; SAC's temperature is a second group);
    `target`, if given, follows `net` by a soft update after every step.

    A population (`members` > 1: member-stacked nets, core/members.py) draws each member's batch from its own
    ring and stream, clips each member's gradients by its own norm and keeps statistics per member; `lr` and
    `batch_sizes` may differ by member (a list: a per-member rate in the AdamW step; the largest batch is
    sampled and each member's rows past its own size weigh 0)."""

    stat_names = ("loss", "aux")

    def __init__(
        self,
        cfg,
        norm: torch.nn.Module,
        device,
        name: str,
        net: torch.nn.Module,
        loss: Loss,
        groups: List[Dict[str, Any]],
        lr: Union[float, List[float]],
        target: Optional[torch.nn.Module] = None,
        members: int = 1,
        streams: Optional[Streams] = None,
        batch_sizes: Optional[List[int]] = None,
    ):
        a, perf = cfg.algo, cfg.perf
        self.cfg, self.norm, self.name, self.net, self.target = cfg, norm, name, net, target
        self.members, self.streams = members, streams
        # loss sum, aux sum, count (per member in a population)
        self.stats = torch.zeros((3,) if members == 1 else (members, 3), device=device)
        self.device = self.stats.device  # a tensor's device (cuda:0, not cuda), to compare with the replay's
        self.updates = 0
        lrs = [float(x) for x in lr] if isinstance(lr, (list, tuple)) else [float(lr)] * members
        # a single run: torch.optim's AdamW. A population: the step written out with a rate per member, also
        # when the rates agree: torch's fused kernel rounds a member's elements by where they fall in the
        # stacked tensor, so member 0 would drift in its last bits with the population's size
        self.member_lr = None if members == 1 else torch.tensor(lrs, device=device)
        self.opt = make_optimizer(groups, lrs[0], a.weight_decay, device)
        init_adamw_state(self.opt)  # the step updates the state in place, from the first step on
        self.params = [p for g in self.opt.param_groups for p in g["params"]]  # the optimiser's order
        names = {id(p): "nets.%s.%s" % (name, n) for n, p in net.named_parameters()}  # Objective's names
        self.named = {names[id(p)]: p for p in self.params}  # in the optimiser's order, as the grads come
        self.clipped = list(range(len(self.opt.param_groups[0]["params"])))
        self.objective = Objective(loss, name, net)
        # plain numbers: dynamo cannot trace OmegaConf
        self.batch_size, self.grad_clip, self.tau = int(a.batch_size), float(a.grad_clip), float(a.tau)
        self.batch_mask = None  # a population whose members' batch sizes differ: weight 0 past a member's own
        if batch_sizes is not None and len(set(batch_sizes)) > 1:
            self.batch_size = max(batch_sizes)
            rows = torch.arange(self.batch_size, device=device)
            self.batch_mask = torch.cat([(rows < b).float() for b in batch_sizes])
        self.amp = perf.amp == "bf16"
        self.size = torch.zeros((), dtype=torch.int64, device=device)  # the Window's bounds when compiled
        self.start = torch.zeros((), dtype=torch.int64, device=device)
        set_precision(perf, device)
        self.compiled = perf.compile != "off"
        self.run = self.step
        self.static = set()
        # a compiled population's random draws, made before its graph runs (core/members.py)
        self.tape = Tape() if self.compiled and members > 1 else None
        if self.compiled:
            check_compiler(device)
            # CUDA graphs (reduce-overhead) copy every input whose address is not known to be fixed into a
            # buffer of their own before each replay: say which are (the optimiser state, the statistics, the
            # bounds, the normaliser, a population's rates and masks; the replay storage and a population's
            # tape on first use), so nothing is copied
            self.mark_static(
                [t for st in self.opt.state.values() for t in st.values()]
                + [self.stats, self.size, self.start]
                + list(norm.buffers())
                + [t for t in (self.member_lr, self.batch_mask) if t is not None]
            )
            mode = COMPILE_MODES[perf.compile]
            self.run = torch.compile(self.step, mode=mode, fullgraph=True, dynamic=False)

    def mark_static(self, tensors: Iterable[Tensor]) -> None:
        mark = getattr(torch._dynamo, "mark_static_address", None)  # torch >= 2.1
        for t in tensors:
            if mark is not None and id(t) not in self.static:
                mark(t)
                self.static.add(id(t))

    def learn(self, replay: Replay, size: Optional[int] = None, start: int = 0) -> None:
        """One update on a uniform batch of `size` replay rows from `start` on (default: all filled rows).
        Compiled, with the replay on this learner's device, the step gathers the batch itself (one graph, the
        bounds copied in as device tensors, never read back); otherwise it is sampled here and copied over."""
        size = replay.size if size is None else size
        data = replay.data
        if not self.compiled:
            self.update(Window(data, size, start))
        elif data["obs"].device == self.device:
            self.mark_static(data.values())
            self.size.fill_(size)  # a kernel with the value as its argument: no host sync, no copy
            self.start.fill_(start)
            self.update(Window(data, self.size, self.start))
        else:  # the replay lives on another device (trio placement): the graph gets a batch on its own
            batch = sample(data, self.batch_size, size, start, self.members, self.streams)
            self.update(to_device(batch, self.device))

    def update(self, batch: Union[Batch, Window]) -> None:
        """One update (the step, compiled or not) on a batch, or on a Window of replay rows; counted here."""
        # the gradients are taken inside regardless; no autograd graph around the compiled call, so
        # AOTAutograd builds an inference graph that CUDA graphs can capture whole (the in-place
        # parameter updates included)
        with torch.no_grad():
            if self.tape is None:
                self.run(batch)
            else:
                self._taped(batch)
        self.updates += 1

    def _taped(self, batch: Union[Batch, Window]) -> None:
        """A compiled population's update: its members' draws onto the tape, then the graph; the first update
        runs eagerly and records what it draws."""
        tape, streams = self.tape, self.streams
        try:
            if tape.spec is None:
                tape.start()
                streams.tape = tape
                try:
                    self.step(batch)
                except BaseException:
                    tape.spec = None  # a partial record: the next update records again
                    raise
                self.mark_static(tape.buffers)
            else:
                streams.fill(tape)
                streams.tape = tape
                self.run(batch)
        finally:
            streams.tape, tape.recording = None, False

    def step(self, batch: Union[Batch, Window]) -> None:
        """The whole update: (gather,) normalise, loss, gradients, clip, AdamW, soft target update, stats.
        Everything but the loss (core/losses.py, which calls the nets) is here or in `draw` (core/replay.py)."""
        batch = draw(batch, self.batch_size, self.norm, self.device, self.members, self.streams)
        if self.batch_mask is not None:
            batch = batch._replace(weight=batch.weight * self.batch_mask)
        grads, (loss, aux) = value_and_grads(self.objective, self.named, batch, self.amp)
        if self.grad_clip > 0:
            clip_grads_([grads[i] for i in self.clipped], self.grad_clip, self.members)
        if self.member_lr is None:
            adamw_step(self.opt, grads)
        else:
            adamw_member_step(self.opt, grads, self.member_lr)
        if self.target is not None:
            soft_update(self.target, self.net, self.tau)
        self.stats += torch.stack([loss, aux, torch.ones_like(aux)], dim=-1)

    def pop_stats(self) -> Dict[str, float]:
        """The mean loss and aux since the last call (a population: `member_stats` has each member's)."""
        if self.members > 1:
            return {}
        loss, aux, n = self.stats.tolist()
        self.stats.zero_()
        return dict(zip(self.stat_names, (loss / n, aux / n))) if n else {}

    def member_stats(self) -> List[Dict[str, float]]:
        """pop_stats per member of a population (one read of the device)."""
        out = []
        for loss, aux, n in self.stats.tolist():
            out.append(dict(zip(self.stat_names, (loss / n, aux / n))) if n else {})
        self.stats.zero_()
        return out

    def state_dict(self) -> dict:
        s = {self.name: self.net.state_dict()}
        if self.target is not None:
            s[self.name + "_target"] = self.target.state_dict()
        s.update({self.name + "_opt": self.opt.state_dict(), "updates": self.updates})
        return s

    def load_state_dict(self, s: dict) -> None:
        self.net.load_state_dict(s[self.name])
        if self.target is not None:
            self.target.load_state_dict(s[self.name + "_target"])
        load_optimizer(self.opt, s[self.name + "_opt"])
        self.updates = s["updates"]


class VLearner(Learner):
    stat_names = ("critic_loss", "q_mean")

    def __init__(
        self,
        cfg: Any,
        critic: torch.nn.Module,
        actor_view: torch.nn.Module,
        norm: torch.nn.Module,
        device: Device,
        streams: Optional[Streams] = None,
        vary: Optional[Dict[str, list]] = None,
    ) -> None:
        a, vary = cfg.algo, vary or {}
        self.critic, self.actor_view = critic, actor_view
        self.critic_target = copy.deepcopy(critic).requires_grad_(False)
        self.sac, self.support = a.name == "sac", c51_support(a, device)
        self.noise = (float(a.target_noise), float(a.target_noise_clip))
        members = getattr(critic, "members", 1)
        self.randn_like = torch.randn_like if members == 1 else streams.randn_like
        groups = [{"params": list(critic.parameters())}]
        super().__init__(
            cfg,
            norm,
            device,
            "critic",
            critic,
            self.loss,
            groups,
            vary.get("algo.critic_lr", a.critic_lr),
            target=self.critic_target,
            members=members,
            streams=streams,
            batch_sizes=vary.get("algo.batch_size"),
        )

    def loss(self, batch: Batch, critic: torch.nn.Module) -> Tuple[Tensor, Tensor]:
        return algo.critic_loss(
            self.actor_view,
            critic,
            self.critic_target,
            batch,
            self.sac,
            *self.noise,
            self.support,
            self.randn_like,
        )


class PLearner(Learner):
    def __init__(
        self,
        cfg: Any,
        actor: torch.nn.Module,
        critic_view: torch.nn.Module,
        norm: torch.nn.Module,
        device: Device,
        act_dim: int,
        streams: Optional[Streams] = None,
        vary: Optional[Dict[str, list]] = None,
    ) -> None:
        a, vary = cfg.algo, vary or {}
        self.actor, self.critic_view = actor, critic_view
        self.sac, self.support = a.name == "sac", c51_support(a, device)
        self.target_entropy = float(-act_dim if a.target_entropy is None else a.target_entropy)
        self.stat_names = ("actor_loss", "entropy" if self.sac else "action_abs_mean")
        groups = [{"params": [p for n, p in actor.named_parameters() if n != "log_alpha"]}]
        if self.sac:
            groups.append({"params": [actor.log_alpha], "lr": a.alpha_lr, "weight_decay": 0.0})
        super().__init__(
            cfg,
            norm,
            device,
            "actor",
            actor,
            self.loss,
            groups,
            vary.get("algo.actor_lr", a.actor_lr),
            members=getattr(actor, "members", 1),
            streams=streams,
            batch_sizes=vary.get("algo.batch_size"),
        )

    def loss(self, batch: Batch, actor: torch.nn.Module) -> Tuple[Tensor, Tensor]:
        return algo.actor_loss(actor, self.critic_view, batch, self.sac, self.target_entropy, self.support)

    def pop_stats(self) -> Dict[str, float]:
        out = super().pop_stats()
        if out and self.sac:
            out["alpha"] = float(self.actor.log_alpha.detach().exp())
        return out

    def member_stats(self) -> List[Dict[str, float]]:
        out = super().member_stats()
        if self.sac:
            for row, alpha in zip(out, self.actor.log_alpha.detach().exp().tolist()):
                if row:
                    row["alpha"] = alpha
        return out
