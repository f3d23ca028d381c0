"""Learner updates/s: eager vs compiled (vs CUDA-graphed, vs bf16), and achieved FLOP/s against torch.mm.

Each learner runs its real update (`learn`: gather from a full replay, normalise, loss, grads, clip,
AdamW, soft target update). Modes are timed in interleaved rounds (A B A B ...) so a shared machine's
load drifts into all of them alike; the medians are reported with the load average. The ceiling is
torch.mm's FLOP/s on the same (batch x in) @ (in x out) shapes as the critic's layers, same dtype, so
`critic_frac_of_mm` says how close the whole update comes to its matmuls alone (FLOP convention:
pql_scaling/core/nets.py).

    python benchmarks/learner_speed.py                         # CPU: Pendulum defaults and PQL's network
    python benchmarks/learner_speed.py --device cuda --sweep   # GPU: batch 1024-65536 x width 256-2048
"""

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

# PQL's network is [512,256,128] ELU (docs/science.md); Pendulum's CPU default is [64,64] ReLU (tasks/pendulum.yaml)
PQL_NET = ["net.activation=elu"]
CONFIGS = {  # name -> (obs_dim, act_dim, overrides); Pendulum's dims, Ant-sized dims for PQL's network
    "pendulum_default": (3, 1, ["task=pendulum"]),
    "pql_default": (
        60,
        8,
        [
            "task=pendulum",
            "net.actor_hidden=[512,256,128]",
            "net.critic_hidden=[512,256,128]",
            "algo.batch_size=8192",
        ]
        + PQL_NET,
    ),
}
MODES = {
    "eager": [],
    "compiled": ["perf.compile=default"],
    "graphed": ["perf.compile=reduce-overhead"],
    "bf16": ["perf.amp=bf16"],
    "compiled_bf16": ["perf.compile=default", "perf.amp=bf16"],
    "graphed_bf16": ["perf.compile=reduce-overhead", "perf.amp=bf16"],
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(obs_dim, act_dim, overrides, device):
    from pql_scaling import config
    from pql_scaling.core import nets
    from pql_scaling.core.replay import Normalizer, Replay
    from pql_scaling.runtime.learner import PLearner, VLearner

    cfg = config.load(["device=%s" % device, "task=pendulum"] + list(overrides))
    torch.manual_seed(0)
    actor, critic = (m.to(device) for m in nets.build(cfg, obs_dim, act_dim))
    norm = Normalizer(obs_dim, device)
    replay = Replay(cfg.algo.batch_size * 4, obs_dim, act_dim, cfg.algo.batch_size, device)
    for k, v in replay.data.items():
        v.normal_() if k not in ("discount", "weight") else v.fill_(0.9 if k == "discount" else 1.0)
    replay.rows = replay.capacity
    v, p = VLearner(cfg, critic, actor, norm, device), PLearner(cfg, actor, critic, norm, device, act_dim)
    return cfg, v, p, replay, nets.update_flops(actor, critic, cfg.algo.batch_size)


def timed(learner, replay, device, seconds):
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        learner.learn(replay)
        n += 1
    sync(device)
    return n / (time.perf_counter() - t0)


def mm_ceiling(sizes, batch, device, dtype, seconds=1.0):
    """FLOP/s of torch.mm alone over the layer shapes (batch x in) @ (in x out), twin critic = 2 of each."""
    mats = [
        (torch.randn(batch, i, device=device, dtype=dtype), torch.randn(i, o, device=device, dtype=dtype))
        for i, o in zip(sizes[:-1], sizes[1:])
    ]
    flops = 2 * sum(2 * batch * i * o for i, o in zip(sizes[:-1], sizes[1:]))
    for x, w in mats:
        torch.mm(x, w)
    sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        for _ in range(2):
            for x, w in mats:
                torch.mm(x, w)
        n += 1
    sync(device)
    return flops * n / (time.perf_counter() - t0)


def measure(name, obs_dim, act_dim, overrides, modes, device, seconds, rounds, roles=("critic", "policy")):
    built, row = {}, {"config": name, "overrides": overrides, "modes": {}, "errors": {}}
    for mode in modes:
        try:  # one mode that fails to compile (or runs out of memory) must not lose the others
            cfg, v, p, replay, flops = build(obs_dim, act_dim, overrides + MODES[mode], device)
            t0 = time.perf_counter()
            for learner in [x for r, x in (("critic", v), ("policy", p)) if r in roles]:
                for _ in range(3):  # compile (and, for graphs, record) before timing
                    learner.learn(replay)
            sync(device)
        except Exception as e:  # noqa: BLE001 - recorded in the JSON, with the mode
            row["errors"][mode] = "%s: %s" % (type(e).__name__, str(e)[:500])
            print("%-17s %-14s FAILED %s" % (name, mode, row["errors"][mode]), flush=True)
            continue
        built[mode] = (v, p, replay)
        row["modes"][mode] = {"compile_and_warmup_s": time.perf_counter() - t0, "critic": [], "policy": []}
        row.update(
            batch_size=cfg.algo.batch_size,
            critic_hidden=list(cfg.net.critic_hidden),
            critic_gflop_per_update=flops[0] / 1e9,
            policy_gflop_per_update=flops[1] / 1e9,
        )
    if not built:
        return row
    for _ in range(rounds):  # interleaved: every mode sees the same drift in load
        for mode, (v, p, replay) in built.items():
            for role, learner in (("critic", v), ("policy", p)):
                if role in roles:
                    row["modes"][mode][role].append(timed(learner, replay, device, seconds))
    sizes = [obs_dim + act_dim] + list(row["critic_hidden"]) + [1]
    for dtype in {torch.float32, torch.bfloat16} if any("bf16" in m for m in modes) else {torch.float32}:
        row["mm_gflops_per_s_" + str(dtype).split(".")[1]] = (
            mm_ceiling(sizes, row["batch_size"], device, dtype) / 1e9
        )
    for mode, m in row["modes"].items():
        for role in ("critic", "policy"):
            m[role + "_updates_per_s"] = statistics.median(m[role]) if m[role] else float("nan")
        m["critic_gflops_per_s"] = m["critic_updates_per_s"] * row["critic_gflop_per_update"]
        ceiling = row["mm_gflops_per_s_" + ("bfloat16" if "bf16" in mode else "float32")]
        m["critic_frac_of_mm"] = m["critic_gflops_per_s"] / ceiling
    base = row["modes"].get("eager")
    for mode, m in row["modes"].items():
        if base and mode != "eager":
            m["critic_speedup_vs_eager"] = m["critic_updates_per_s"] / base["critic_updates_per_s"]
            m["policy_speedup_vs_eager"] = m["policy_updates_per_s"] / base["policy_updates_per_s"]
        print(
            "%-17s %-14s critic %9.1f upd/s  policy %9.1f upd/s  critic %8.2f GFLOP/s (%4.0f%% of mm)"
            "  x%s  compile %.0f s"
            % (
                name,
                mode,
                m["critic_updates_per_s"],
                m["policy_updates_per_s"],
                m["critic_gflops_per_s"],
                100 * m["critic_frac_of_mm"],
                round(m.get("critic_speedup_vs_eager", 1.0), 2),
                m["compile_and_warmup_s"],
            ),
            flush=True,
        )
    del built
    torch._dynamo.reset()
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--modes", nargs="+", default=None, help="default: eager compiled (CPU); every mode (CUDA)"
    )
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS))
    ap.add_argument("--roles", nargs="+", default=["critic", "policy"], help="the sweep times only these")
    ap.add_argument("--sweep", action="store_true", help="also critic updates/s over batch x width (GPU)")
    ap.add_argument("--batches", nargs="+", type=int, default=[1024, 4096, 8192, 32768, 65536])
    ap.add_argument("--widths", nargs="+", type=int, default=[256, 512, 1024, 2048])
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads on CPU (tasks/pendulum.yaml uses 1)"
    )
    ap.add_argument("--seconds", type=float, default=1.5, help="per timed window")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per mode")
    ap.add_argument("--tf32", action="store_true", help="perf.tf32=true in every mode (CUDA)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    modes = args.modes or (["eager", "compiled"] if device.type == "cpu" else list(MODES))
    extra = ["perf.tf32=true"] if args.tf32 else []
    # every mode compiles the same function (Learner.step) for its own learners: allow that many variants
    for key in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, key):
            setattr(torch._dynamo.config, key, 64)
    load0 = os.getloadavg()[0]
    print("  ".join("%s=%s" % kv for kv in common.machine().items()), flush=True)
    tag = device.type if device.type == "cpu" else torch.cuda.get_device_name(device).replace(" ", "_")
    out = args.out or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results", "learner_speed_%s.json" % tag
    )
    rows, sweep = [], []

    def save():  # after every configuration: a time limit that stops the script keeps what it measured
        common.save(
            out,
            {
                "command": "python benchmarks/learner_speed.py "
                + " ".join(argv if argv is not None else sys.argv[1:]),
                "threads": torch.get_num_threads(),
                "device_name": tag,
                "configs": rows,
                "sweep": sweep,
                "loadavg_1m_before": load0,
                "loadavg_1m_after": os.getloadavg()[0],
            },
        )

    for n in args.configs:
        rows.append(
            measure(n, *CONFIGS[n][:2], CONFIGS[n][2] + extra, modes, device, args.seconds, args.rounds)
        )
        save()
    if args.sweep:
        for width in args.widths:
            for batch in args.batches:
                ov = (
                    [
                        "task=pendulum",
                        "net.critic_hidden=[%d,%d,%d]" % (width, width, width),
                        "net.actor_hidden=[%d,%d,%d]" % (width, width, width),
                        "algo.batch_size=%d" % batch,
                    ]
                    + PQL_NET
                    + extra
                )
                sweep.append(
                    measure("w%d_b%d" % (width, batch), 60, 8, ov, modes, device, args.seconds, 1, args.roles)
                )
                save()


if __name__ == "__main__":
    main()
