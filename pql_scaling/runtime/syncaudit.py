"""Count the host syncs a piece of code would make on a GPU, on any device (the CPU included).

A host sync is an op whose result the host must read: `.item()`, `int(t)`, `bool(t)`, indexing with a 0-dim
tensor, a data-dependent shape (`nonzero`, boolean masking). On a GPU each one waits for everything queued
before it, so the host can no longer run ahead of the device. They all reach the dispatcher as
`aten._local_scalar_dense` or as an op whose output shape depends on the data, which a dispatch mode sees on
any device: a CPU test can prove an update or an actor step makes none. (Explicit waits, event.synchronize()
and torch.cuda.synchronize(), do not go through the dispatcher; `torch.cuda.set_sync_debug_mode` reports the
implicit ones on a GPU.)
"""

import collections
import traceback

from torch.utils._python_dispatch import TorchDispatchMode

SYNC_OPS = ("_local_scalar_dense", "nonzero", "is_nonzero", "masked_select", "unique", "_unique")


class HostSyncs(TorchDispatchMode):
    """with HostSyncs() as syncs: ...; then syncs.count and syncs.where (op -> the first stack that made it)."""

    def __init__(self, stacks=False):
        super().__init__()
        self.count, self.ops, self.where, self.stacks = 0, collections.Counter(), {}, stacks

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket.__name__)
        if name in SYNC_OPS:
            self.count += 1
            self.ops[name] += 1
            if self.stacks and name not in self.where:
                self.where[name] = "".join(traceback.format_stack(limit=12)[:-2])
        return func(*args, **(kwargs or {}))
