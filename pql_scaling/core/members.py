"""A population's member dimension: K agents trained as one batch, each on its own random stream.

Every per-member tensor is stacked member-major on its leading dimension: K * n rows, member k's rows
k*n .. (k+1)*n - 1 (envs, replay rows, a sampled batch), and every network parameter is an ensemble weight
whose leading dimension holds the members' networks (the twin critic: members x 2). Nothing flows between
members: each loss is a per-member mean, summed over members, so each member's gradients are its own.

Random numbers are drawn per member from its own generator, so a member's draws do not depend on how many
members there are or on what they draw: member 0 uses torch's default generator, exactly as a single run does
(a population of one is today's run, bit for bit); member k >= 1 a generator that continues the stream a
single run seeded with its seed would have (see nets.build).

A compiled update (perf.compile) cannot draw from a torch.Generator inside its graph (dynamo breaks the graph
there): its draws are made eagerly just before the graph runs, from the same generators in the same order, onto a
`Tape` the graph reads (so compiled and eager updates draw the same numbers, bit for bit).
"""

from typing import Callable, List, Optional, Sequence, Tuple

import torch

Tensor = torch.Tensor


def _compiling() -> bool:
    """Inside torch.compile's trace (torch >= 2.3; earlier torch: taken as not)."""
    return bool(getattr(torch.compiler, "is_compiling", lambda: False)())


class Tape:
    """One compiled update's random draws, made before its graph runs. The update's first call runs eagerly and
    records what it draws (function, shape, device, in order: `recording`); before every later call `fill`
    redraws them into the same buffers (fixed addresses, as CUDA graphs want), and the traced update reads them
    back in that order (`next`). The draws' shapes are static, so the record holds for every update."""

    def __init__(self) -> None:
        self.spec: Optional[List[Tuple[Callable[..., Tensor], Tuple[int, ...], torch.device]]] = None
        self.buffers: List[Tensor] = []
        self.recording = False
        self.read = 0

    def start(self) -> None:
        self.spec, self.buffers, self.recording = [], [], True

    def record(self, fn: Callable[..., Tensor], shape: Sequence[int], device, out: Tensor) -> None:
        self.spec.append((fn, tuple(shape), torch.device(device)))
        self.buffers.append(torch.empty_like(out))

    def next(self) -> Tensor:
        t = self.buffers[self.read]
        self.read += 1
        return t


class Streams:
    """One random stream per member. `cpu_states[k]`: member k's CPU generator state (k >= 1; index 0 is
    ignored); on another device member k's generator is seeded with `seeds[k]`."""

    def __init__(self, seeds: Sequence[int], device, cpu_states: Optional[List[Tensor]] = None):
        self.members, self.device = len(seeds), torch.device(device)
        self.gens: List[Optional[torch.Generator]] = [None]  # member 0: torch's default generator
        self.tape: Optional[Tape] = None  # set by a compiled update around its call (runtime/learner.py)
        for k in range(1, self.members):
            g = torch.Generator(device=self.device)
            if self.device.type == "cpu" and cpu_states is not None:
                g.set_state(cpu_states[k])
            else:
                g.manual_seed(int(seeds[k]))
            self.gens.append(g)

    def draw(self, fn: Callable[..., Tensor], shape: Sequence[int], device=None) -> Tensor:
        """fn(shape) (torch.rand / torch.randn), member-major: member k's shape[0] / K rows from its stream."""
        device = self.device if device is None else device
        if self.members == 1:
            return fn(tuple(shape), device=device)
        tape = self.tape
        if tape is not None and _compiling():  # drawn before the graph: see Tape
            return tape.next()
        per = (shape[0] // self.members,) + tuple(shape[1:])
        out = torch.cat([fn(per, device=device, generator=g) for g in self.gens])
        if tape is not None and tape.recording:
            tape.record(fn, shape, device, out)
        return out

    def fill(self, tape: Tape) -> None:
        """Draw a compiled update's numbers onto its tape (eagerly, before the graph runs), as the update would."""
        assert tape.spec is not None, "a tape is recorded by an eager update first"
        self.tape = None
        for buf, (fn, shape, device) in zip(tape.buffers, tape.spec):
            buf.copy_(self.draw(fn, shape, device))
        tape.read = 0

    def rand(self, *shape: int, device=None) -> Tensor:
        return self.draw(torch.rand, shape, device)

    def randn(self, *shape: int, device=None) -> Tensor:
        return self.draw(torch.randn, shape, device)

    def randn_like(self, x: Tensor) -> Tensor:
        return self.draw(torch.randn, x.shape, x.device)

    def state_dict(self) -> List[Optional[Tensor]]:
        return [None] + [g.get_state() for g in self.gens[1:]]

    def load_state_dict(self, states: List[Optional[Tensor]]) -> None:
        for g, s in zip(self.gens[1:], states[1:]):
            g.set_state(s)


def per_member_mean(x: Tensor, w: Tensor, members: int) -> Tensor:
    """(members,) weighted means of x over each member's rows (weights w; a member with no weight: 0).

    Summed in float64: torch's row reductions may order a row's sum by the number of rows (vectorised across
    rows), so a float32 mean of member 0 would change in its last bit with the population's size; float64
    sums of float32 rows round back to the same float32."""
    x, w = (x * w).double().reshape(members, -1), w.double().reshape(members, -1)
    return (x.sum(1) / w.sum(1).clamp_min(1.0)).float()


def per_member_plain_mean(x: Tensor, members: int) -> Tensor:
    """(members,) means of each member's rows, summed in float64 (see per_member_mean)."""
    return x.double().reshape(members, -1).mean(1).float()


def per_member_sq_norm(grads: List[Tensor], members: int) -> Tensor:
    """(members,) squared L2 norm of each member's slice of the gradients (ensemble-stacked, member-major)."""
    return sum(
        g.reshape(members, -1).double().pow(2).sum(1) for g in grads
    ).float()  # float64: see per_member_mean


def broadcast_to_param(v: Tensor, p: Tensor) -> Tensor:
    """A (members,) value as a tensor that broadcasts over a member-major ensemble parameter `p`."""
    members = v.shape[0]
    per = p.shape[0] // members  # ensemble entries per member (2 for the twin critic)
    return v.repeat_interleave(per).reshape((p.shape[0],) + (1,) * (p.dim() - 1))
