"""The GPU check's probes, one per stage of benchmarks/gpu_check.py; each writes one JSON and prints a summary.

    python benchmarks/gpu_probe.py preflight --out env.json     # versions, GPU, /dev/shm, compiler, CUDA IPC smoke
    python benchmarks/gpu_probe.py syncs --out syncs.json       # host syncs per actor step and per update
    python benchmarks/gpu_probe.py compile --out compile.json   # one compile per family: seconds, skips, breaks

With no CUDA device each probe runs its plumbing on the CPU at toy sizes and says which parts it skipped.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"


def save(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, default=str)


def _ipc_child(t, q):
    t.add_(1)  # writes the parent's tensor in place (CUDA IPC on a GPU, shared memory on the CPU)
    if t.is_cuda:
        torch.cuda.synchronize()
    q.put(float(t.sum()))


def preflight(args):
    out = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": CUDA,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    for mod in (
        "omegaconf",
        "numpy",
        "scipy",
        "pandas",
        "matplotlib",
        "yaml",
        "rich",
        "pytest",
        "pytest_timeout",
        "gymnasium",
        "mujoco",
    ):
        try:
            m = __import__(mod)
            out["pkg_" + mod] = getattr(m, "__version__", "present")
        except Exception as e:  # noqa: BLE001 - what is missing is the answer
            out["pkg_" + mod] = "missing (%s)" % type(e).__name__
    st = os.statvfs("/dev/shm") if os.path.exists("/dev/shm") else None
    out["dev_shm_free_gb"] = st.f_bavail * st.f_frsize / 1e9 if st else None
    out["cxx"] = shutil.which("g++") or shutil.which("c++")
    if CUDA:
        out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        out["capability"] = list(torch.cuda.get_device_capability(0))
        free, total = torch.cuda.mem_get_info(0)
        out["mem_free_gb"], out["mem_total_gb"] = free / 1e9, total / 1e9
        try:
            out["nvidia_smi"] = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,mig.mode.current",
                    "--format=csv,noheader",
                ],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            out["nvidia_smi"] = "unavailable (%s)" % e
    ctx = torch.multiprocessing.get_context("spawn")
    t = torch.zeros(1 << 20, device=DEVICE)
    if not CUDA:
        t.share_memory_()
    q = ctx.SimpleQueue()
    t0 = time.perf_counter()
    p = ctx.Process(target=_ipc_child, args=(t, q))
    p.start()
    p.join(60)
    got = q.get() if p.exitcode == 0 else None
    out["ipc_smoke"] = {
        "ok": got == float(1 << 20) and float(t.sum()) == float(1 << 20),
        "exitcode": p.exitcode,
        "seconds": round(time.perf_counter() - t0, 2),
        "kind": "cuda_ipc" if CUDA else "shared_memory",
    }
    save(args.out, out)
    print(json.dumps(out, indent=1, default=str))
    return 0 if out["ipc_smoke"]["ok"] else 1


def _session(num_envs, extra=()):
    from pql_scaling import config as config_lib
    from pql_scaling import envs
    from pql_scaling.rundir.rundir import RunDir
    from pql_scaling.runtime.train import Session

    cfg = config_lib.load(
        [
            "task=pendulum",
            "device=%s" % DEVICE,
            "mode=sync",
            "num_envs=%d" % num_envs,
            "max_env_steps=100000000",
            "algo.warmup_steps=2",
        ]
        + list(extra)
    )
    env = envs.make("pendulum", cfg.num_envs, seed=0, device=cfg.device)
    return Session(cfg, RunDir(tempfile.mkdtemp(prefix="syncs-")), env)


def _count(fn, n):
    """Host syncs over n calls: the dispatcher's count, and CUDA's own sync debug warnings where there is CUDA."""
    from pql_scaling.runtime.syncaudit import HostSyncs

    caught = []
    if CUDA:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as w, HostSyncs(stacks=True) as syncs:
            warnings.simplefilter("always")
            for _ in range(n):
                fn()
        caught = [str(x.message)[:200] for x in w if "synchroniz" in str(x.message).lower()]
    finally:
        if CUDA:
            torch.cuda.set_sync_debug_mode(0)
    return {
        "per_call": syncs.count / n,
        "ops": dict(syncs.ops),
        "where": syncs.where,
        "cuda_debug_warnings_per_call": len(caught) / n,
        "cuda_debug_examples": caught[:3],
    }


def syncs(args):
    """Host syncs per actor step and per eager update at the GPU Pendulum defaults (4096 envs; 16 on the CPU)."""
    num_envs = 4096 if CUDA else 16
    s = _session(num_envs)
    for _ in range(6):
        s.actor.step(s.p_learner.actor)
    out = {
        "device": DEVICE,
        "num_envs": num_envs,
        "defaults": s.facts["defaults"],
        "actor_step": _count(lambda: s.actor.step(s.p_learner.actor), 5),
        "critic_update": _count(lambda: s.v_learner.learn(s.replay), 5),
        "policy_update": _count(lambda: s.p_learner.learn(s.replay), 5),
    }
    s.run.close()
    out["target"] = "0 per update and per actor step (issue 19)"
    out["met"] = all(
        out[k]["per_call"] == 0 and out[k]["cuda_debug_warnings_per_call"] == 0
        for k in ("actor_step", "critic_update", "policy_update")
    )
    save(args.out, out)
    print(
        json.dumps(
            {
                k: (v["per_call"], v["cuda_debug_warnings_per_call"]) if isinstance(v, dict) else v
                for k, v in out.items()
            },
            default=str,
        )
    )
    return 0 if out["met"] else 1


FAMILIES = {
    "default": ["perf.compile=default"],
    "reduce-overhead": ["perf.compile=reduce-overhead"],
    "bf16": ["perf.compile=default", "perf.amp=bf16"],
}


def compile_probe(args):
    """One compile of each family at PQL's network (CUDA; the trio tests compile the same shapes after this, warm
    caches): compile seconds, agreement with eager after 4 updates, dynamo/inductor counters. Without CUDA: dynamo's
    trace of each family at toy sizes (no code generation), to check the plumbing."""
    from torch._dynamo.utils import counters

    from pql_scaling.core.replay import Window
    from tests import test_compile

    out = {"device": DEVICE, "families": {}}
    for family, extra in FAMILIES.items():
        counters.clear()
        torch._dynamo.reset()
        row = out["families"][family] = {}
        try:
            if not CUDA:
                real, torch.compile = (
                    torch.compile,
                    lambda fn, **kw: fn,
                )  # dynamo's trace only, no compiled object
                try:
                    _, v, _, replay = test_compile.make("pql", *extra)
                finally:
                    torch.compile = real
                v.size.fill_(replay.size)
                t0 = time.perf_counter()
                ex = torch._dynamo.explain(v.step)(Window(replay.data, v.size, v.start))
                row.update(
                    status="traced only: no CUDA",
                    trace_s=round(time.perf_counter() - t0, 2),
                    graphs=ex.graph_count,
                    graph_breaks=ex.graph_break_count,
                )
                continue
            big = (
                [
                    "net.actor_hidden=[512,256,128]",
                    "net.critic_hidden=[512,256,128]",
                    "algo.batch_size=8192",
                    "net.activation=elu",
                ]
                if args.big
                else []
            )
            _, v0, _, replay = test_compile.make("pql", *big, device="cuda")
            _, v1, _, _ = test_compile.make("pql", *(big + extra), device="cuda")
            import torch._inductor.config as inductor_config

            with inductor_config.patch(fallback_random=True):
                times = []
                for step in range(4):
                    torch.manual_seed(step)
                    v0.learn(replay)
                    torch.manual_seed(step)
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    v1.learn(replay)
                    torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
            diff = max(
                float((a - b).abs().max()) for a, b in zip(v0.critic.parameters(), v1.critic.parameters())
            )
            row.update(
                status="ok",
                first_call_s=round(times[0], 2),
                later_call_ms=round(1e3 * min(times[2:]), 3),
                max_abs_diff_vs_eager=diff,
            )
        except Exception as e:  # noqa: BLE001 - one family failing must not lose the others
            row.update(status="error", error="%s: %s" % (type(e).__name__, str(e)[:800]))
        finally:
            row["counters"] = {
                k: dict(v) for k, v in counters.items() if k in ("stats", "inductor", "graph_break")
            }
            row["cudagraph_skips"] = sum(
                counters["inductor"].get(k, 0) for k in counters["inductor"] if "cudagraph_skip" in k
            )
    save(args.out, out)
    print(
        json.dumps(
            {f: {k: v for k, v in r.items() if k != "counters"} for f, r in out["families"].items()},
            default=str,
        )
    )
    return 0 if all(r.get("status") != "error" for r in out["families"].values()) else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("probe", choices=["preflight", "syncs", "compile"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--big", action="store_true", help="compile: PQL's network (512-256-128, batch 8192)")
    args = ap.parse_args()
    return {"preflight": preflight, "syncs": syncs, "compile": compile_probe}[args.probe](args)


if __name__ == "__main__":
    sys.exit(main())
