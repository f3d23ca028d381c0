"""`launcher.population: auto`: members per population from the memory one member needs and the memory one
process may use where it runs.

A member's footprint is computed from its resolved config: its replay ring (capacity x row bytes, allocated in
full at start; a row: obs, next obs, action, reward, discount, weight, and a privileged critic's two
observations), its networks five times over (weights, gradients, two AdamW moments, a target copy), the sampled
batch and its activations, and its envs' buffers (mode=trio: the networks and the batch twice, the learner
processes' own beside the actor process's). One process may use FRACTION of its share of the target's memory,
less BASE_BYTES for the interpreter, torch and a CUDA context (the trio: three times, one per process):

    K = floor((FRACTION * process memory - BASE_BYTES) / member bytes), at least 1, at most the configuration's
        runs, MAX_MEMBERS and (local) ceil(runs / pool slots), so that packing never leaves a slot idle.

The process's share: `launcher.memory_gb` when given; else local: the GPU's memory / runs_per_device, or
available host RAM / the pool's CPU processes; Ray: measured by a probe task with the runs' resources (its
GPU's memory x num_gpus, or its node's available RAM x num_cpus / the node's CPUs); SLURM: slurm.mem_gb.
"""

import math
from dataclasses import dataclass
from typing import Optional, Tuple

from pql_scaling.experiments.sweep.spec import SpecError

FRACTION = 0.8  # as runtime/resources.py: room for what the footprint leaves out (allocator slack, fragments)
BASE_BYTES = 512 * 2**20  # one process before any member: Python, torch, a CUDA context
MAX_MEMBERS = 64  # the largest population measured (benchmarks/population_speed.py)
NET_COPIES = 5  # weights, gradients, AdamW's two moments, a target network
ACTIVATION_COPIES = 8  # per hidden unit and sample: twin critics, pre/post activation, their gradients


@dataclass
class Target:
    """The memory one population process may use where it runs."""

    memory: int  # bytes
    what: str  # where that number comes from (for the INFO line)
    slots: int = 0  # processes the launcher runs at once (0: no cap from it)


def _params(cfg, obs_dim, act_dim):
    """Parameters of the member's (actor, critic), built without allocating (meta device where torch has it)."""
    import torch

    from pql_scaling.core import nets

    meta = torch.device("meta")
    if hasattr(meta, "__enter__"):
        with meta:
            actor, critic = nets.build(cfg, obs_dim, act_dim)
    else:  # an older torch: build on the CPU
        with torch.random.fork_rng(devices=[]):
            actor, critic = nets.build(cfg, obs_dim, act_dim)
    return nets.count_params(actor) + nets.count_params(critic)


# env_kwargs of backend=mjwarp that the CPU backend of the same MJCF tasks does not take (none changes a dim)
_MJWARP_ONLY = ("nconmax", "njmax", "cuda_graph")


def _dims(cfg):
    """(obs_dim, act_dim, critic_obs_dim) of the config's env, read off a one-env instance (its task
    parameters, env_kwargs.privileged_critic among them, decide them); an mjwarp task's off backend=mujoco's
    (the same MJCF task, on the CPU: a sweep's driver needs no GPU)."""
    from pql_scaling import config as config_lib
    from pql_scaling import envs

    backend = cfg.backend or envs.default_backend(cfg.task)
    options = config_lib.env_options(cfg, backend)
    if backend == "mjwarp":
        backend, options = "mujoco", {k: v for k, v in options.items() if k not in _MJWARP_ONLY}
    env = envs.make(cfg.task, 1, backend=backend, **options)
    try:
        return int(env.obs_dim), int(env.act_dim), int(getattr(env, "critic_obs_dim", 0) or 0)
    finally:
        env.close()


def member_bytes(cfg):
    """{part: bytes} of one member of a population of `cfg`."""
    from pql_scaling.core import nets
    from pql_scaling.runtime import resources

    obs_dim, act_dim, critic_obs_dim = _dims(cfg)
    # a privileged critic's observation and next observation ride in the replay too (float32)
    row = resources.replay_row_bytes(obs_dim, act_dim) + 2 * 4 * critic_obs_dim
    n = int(cfg.num_envs)
    batch = int(cfg.algo.batch_size)
    hidden = sum(nets.hidden_of(cfg.net, "actor")) + sum(nets.hidden_of(cfg.net, "critic"))
    # the trio: each learner process holds its own nets and optimiser beside the actor process's mirrors (and
    # the snapshots), and samples its own batch; the replay is shared
    copies = 2 if cfg.mode == "trio" else 1
    return {
        "replay": max(int(cfg.algo.buffer_size) // n, 1) * n * row,
        "networks": copies * 4 * NET_COPIES * _params(cfg, obs_dim, act_dim),
        "batch": copies * batch * (2 * row + 4 * ACTIVATION_COPIES * hidden),
        "envs": 4 * n * row,
    }


def base_bytes(cfg):
    """A population's processes before any member: one, or the trio's three (the actor and two learners)."""
    return BASE_BYTES * (3 if cfg.mode == "trio" else 1)


def auto_size(cfg, runs, target: Target, total: Optional[int] = None) -> Tuple[int, str]:
    """(members per population, why) for `runs` runs of `cfg` differing only in their seed; `total`: the runs
    packed in this round (the local pool's slot cap)."""
    parts = member_bytes(cfg)
    member = sum(parts.values())
    base = base_bytes(cfg)
    usable = FRACTION * target.memory - base
    fit = int(usable // member) if usable > 0 else 0
    caps = [(runs, "its %d seeds" % runs), (MAX_MEMBERS, "the maximum %d" % MAX_MEMBERS)]
    if target.slots and total:
        caps.append((math.ceil(total / target.slots), "%d pool slots busy" % target.slots))
    k, why = fit, "memory"
    for cap, reason in caps:
        if cap < k:
            k, why = cap, reason
    detail = "a member needs %s (%s); a process may use %s (%d%% of %s, less %s)" % (
        _gb(member),
        ", ".join("%s %s" % (p, _gb(b)) for p, b in parts.items()),
        _gb(max(usable, 0)),
        int(FRACTION * 100),
        target.what,
        _gb(base),
    )
    if k < 1:
        return 1, "one member does not fit: %s" % detail
    return k, "limited by %s: %s" % (why, detail)


def _gb(b):
    if b >= 1e8:
        return "%.2f GB" % (b / 1e9)
    return "%.1f MB" % (b / 1e6) if b >= 1e5 else "%.0f kB" % (b / 1e3)


def given(spec) -> Optional[Target]:
    gb = spec.launcher.memory_gb
    return None if gb is None else Target(int(gb * 2**30), "launcher.memory_gb=%g" % gb)


def local_target(spec, devices) -> Target:
    """One process's share on the local pool: `devices` resolved (cpu or GPU indices)."""
    per, slots = spec.launcher.local.runs_per_device, len(devices) * spec.launcher.local.runs_per_device
    t = given(spec)
    if t is not None:
        return Target(t.memory, t.what, slots)
    gpus = [d for d in devices if d != "cpu"]
    shares = []
    if gpus:
        import torch

        for d in gpus:  # the device's total memory (asking for the free memory would open a CUDA context)
            total = torch.cuda.get_device_properties(int(d)).total_memory
            shares.append((total // per, "GPU %s's %s / %d runs per device" % (d, _gb(total), per)))
    cpus = len(devices) - len(gpus)
    if cpus:
        shares.append(host_share(cpus * per))
    memory, what = min(shares)
    return Target(int(memory), what, slots)


def host_share(processes):
    """(bytes, what) of this machine's available RAM for one of `processes` processes."""
    from pql_scaling.runtime import resources

    avail = resources.host_available()
    if avail is None:
        raise SpecError(
            "launcher.population=auto: this machine's available memory cannot be read; set "
            "launcher.memory_gb (GB one process may use) or an integer launcher.population"
        )
    return avail // processes, "available host RAM %s / %d processes" % (_gb(avail), processes)


def ray_probe(num_cpus, num_gpus):
    """(bytes, what), run as a Ray task with the runs' resources: its share of the node it landed on."""
    import os

    if num_gpus > 0:
        import torch

        total = torch.cuda.get_device_properties(0).total_memory
        share = min(float(num_gpus), 1.0)
        return int(total * share), "a Ray task's GPU: %s x %g" % (_gb(total), share)
    cpus = os.cpu_count() or 1
    memory, _ = host_share(1)
    share = min(float(num_cpus) / cpus, 1.0)
    return int(memory * share), "a Ray node's available RAM %s x %g CPUs / %d" % (_gb(memory), num_cpus, cpus)


def slurm_target(spec) -> Target:
    t = given(spec)
    if t is not None:
        return t
    o = spec.launcher.slurm
    if o.gpus_per_task:
        raise SpecError(
            "launcher.population=auto with launcher.slurm.gpus_per_task=%d: the nodes' GPU memory is not "
            "visible from here; set launcher.memory_gb to one task's GPU memory (e.g. 80 on an 80 GB A100) "
            "or give launcher.population an integer" % o.gpus_per_task
        )
    if not o.mem_gb:
        raise SpecError(
            "launcher.population=auto with launcher.kind=slurm needs the memory of one task: set "
            "launcher.slurm.mem_gb (what SLURM grants it) or launcher.memory_gb, or give launcher.population "
            "an integer"
        )
    return Target(int(o.mem_gb * 2**30), "launcher.slurm.mem_gb=%g" % o.mem_gb)
