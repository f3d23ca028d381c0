"""Fault drills (issue 11): kill a trio run's actor, V-learner or P-learner at seeded random moments, or send
SIGTERM as a cluster's preemption does; after each fault check what a study depends on:

  - status.json names the cause (time from the fault to that, and to the last process gone)
  - no process of the run is left (learners, multiprocessing's resource tracker) and nothing of it in /dev/shm
  - `resume=` continues the counters; the final metrics have one log point per env_steps value
  - the realised UTD (critic_updates / env_steps) is within 2% of the configured one, and the critic updates are
    exactly sync mode's count for the steps taken (`updates_lost` = 0: the checkpoint's owed updates are paid)
  - data lost = log points superseded (the work since the last checkpoint), nothing else

    python benchmarks/drills.py --n 3 --out benchmarks/results/drills.json     # 3 of each kind, seeded

tests/test_drills.py runs the short form (one drill of two kinds)."""

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a checkout
from pql_scaling.rundir import schema  # noqa: E402

KINDS = ("sigkill_actor", "sigkill_v_learner", "sigkill_p_learner", "sigterm_actor")
ARGS = [
    "task=pendulum",
    "mode=trio",
    "num_envs=16",
    "algo.batch_size=32",
    "net.actor_hidden=[32,32]",
    "net.critic_hidden=[32,32]",
    "algo.critic_updates_per_step=2",
    "algo.policy_updates_per_critic_update=0.5",
    "log.every_steps=20",
    "threads=1",
    "log.live=off",
    "log.checkpoint_every_s=2",
    "max_time_s=0",
]
CONFIGURED_UTD = 2 / 16


def cli(args):
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=ROOT)
    return subprocess.Popen(
        [sys.executable, "-m", "pql_scaling.cli", "train"] + args,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def rows(d):
    """metrics.jsonl's log points (lines that are not JSON objects skipped); [] before it exists."""
    try:
        return schema.read_metrics(os.path.join(d, schema.METRICS))[0]
    except OSError:
        return []


def status(d):
    """status.json; {} while it is missing or being rewritten."""
    try:
        return schema.read_status(os.path.join(d, schema.STATUS))
    except (OSError, ValueError):
        return {}


def descendants(pid):
    """Every live process whose ancestry reaches pid (from /proc)."""
    parent = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    parent[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier and p not in out}
        out |= frontier
    return out


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(cond, timeout):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            return None
        time.sleep(0.02)
    return time.monotonic() - t0


def shm_mapped(pids):
    """The /dev/shm files (named semaphores, shared tensors) these processes map that still have a name:
    exactly what would leak if nobody unlinked them (other users' files on a shared machine are not
    counted)."""
    out = set()
    for q in pids:
        try:
            with open("/proc/%d/maps" % q) as f:
                for line in f:
                    path = line.split(None, 5)[-1].strip() if len(line.split()) >= 6 else ""
                    if path.startswith("/dev/shm/") and not path.endswith("(deleted)"):
                        out.add(path)
        except OSError:
            pass
    return out


def drill(kind, d, rng, leg_env_steps=3200):
    """One fault and its resume; returns a result row."""
    res = {"kind": kind, "run_dir": d}
    t_start = time.monotonic()
    p = cli(ARGS + ["max_env_steps=100000000", "run_dir=" + d])
    res["t_to_first_rows_s"] = wait_for(lambda: len(rows(d)) >= 2, 180)
    if res["t_to_first_rows_s"] is None:
        p.kill()
        return dict(res, ok=False, error="no log points in 180 s: " + (p.communicate()[0] or "")[-2000:])
    time.sleep(rng.uniform(0.0, 4.0))  # the seeded random moment
    log = open(os.path.join(d, schema.TRAIN_LOG)).read()
    pids = dict((r, int(x)) for r, x in re.findall(r"trio: (\w+) is pid (\d+)", log))
    family = descendants(p.pid) | {p.pid}
    named = shm_mapped(family)
    res["shm_named_at_fault"] = len(named)
    target = p.pid if kind.endswith("actor") else pids[kind[len("sigkill_") :]]
    t0 = time.monotonic()
    os.kill(target, signal.SIGTERM if kind.startswith("sigterm") else signal.SIGKILL)
    res["t_status_s"] = wait_for(lambda: status(d).get("status") != schema.RUNNING, 60)
    out = p.communicate(timeout=120)[0]
    res["t_clean_s"] = wait_for(lambda: not any(alive(q) for q in family), 60)
    res["t_fault_to_exit_s"] = time.monotonic() - t0
    res["orphans"] = sorted(q for q in family if alive(q))
    # the resource tracker unlinks on its way out
    wait_for(lambda: not any(os.path.exists(f) for f in named), 5)
    res["shm_left"] = sorted(f for f in named if os.path.exists(f))
    st = status(d)
    res["status"], res["reason"] = st.get("status"), (st.get("reason") or "")[:300]
    ckpt_rows = None
    try:
        sys.path.insert(0, ROOT)
        from pql_scaling.rundir.disk import read_checkpoint
        from pql_scaling.rundir.rundir import RunDir  # noqa: F401

        for name in (schema.LAST_CKPT, schema.PREV_CKPT):
            try:
                ck = read_checkpoint(os.path.join(d, schema.CHECKPOINTS, name))
                ckpt_rows, ckpt_steps = ck["metrics_rows"], ck["actor"]["steps"] * 16
                ckpt_updates = ck["v_learner"]["updates"]
                break
            except Exception:  # noqa: BLE001
                continue
    finally:
        pass
    logged = rows(d)
    res["rows_at_fault"], res["rows_in_checkpoint"] = len(logged), ckpt_rows
    res["env_steps_at_fault"] = logged[-1][schema.ENV_STEPS] if logged else 0
    res["env_steps_in_checkpoint"] = ckpt_steps
    q = cli(
        ["resume=" + d, "max_env_steps=%d" % (max(ckpt_steps, res["env_steps_at_fault"]) + leg_env_steps)]
    )
    t_resume = time.monotonic()
    out2 = q.communicate(timeout=600)[0]
    res["t_resume_leg_s"], res["t_drill_s"] = time.monotonic() - t_resume, time.monotonic() - t_start
    final = rows(d)
    steps = [r[schema.ENV_STEPS] for r in final]
    sup = os.path.join(d, schema.SUPERSEDED)
    res["superseded_rows"] = sum(1 for _ in open(sup)) if os.path.exists(sup) else 0
    res["lost_env_steps"] = res["env_steps_at_fault"] - ckpt_steps if res["superseded_rows"] else 0
    new = [r for r in final if r[schema.ENV_STEPS] > ckpt_steps]
    res["counters_continue"] = (
        bool(new)
        and new[0][schema.CRITIC_UPDATES] >= ckpt_updates
        and final[:ckpt_rows] == logged[:ckpt_rows]
    )
    res["one_point_per_step"] = steps == sorted(set(steps))
    res["utd"] = final[-1][schema.CRITIC_UPDATES] / final[-1][schema.ENV_STEPS] if final else None
    res["utd_rel_err"] = abs(res["utd"] / CONFIGURED_UTD - 1) if final else None
    if final:  # against sync mode's exact count (updates owed from the first step with a batch in replay)
        first = 32 // 16 + 2  # rows start after nstep - 1 = 2 steps
        exact = 2 * (final[-1][schema.ACTOR_STEPS] - first + 1)
        res["critic_updates"], res["critic_updates_exact"] = final[-1][schema.CRITIC_UPDATES], exact
        res["updates_lost"] = exact - res["critic_updates"]  # owed updates dropped across the resume
    res["resume_status"] = status(d).get("status")
    cause_named = {
        "sigkill_actor": "actor (main process",
        "sigkill_v_learner": "v_learner process",
        "sigkill_p_learner": "p_learner process",
        "sigterm_actor": "interrupted (signal 15)",
    }[kind]
    res["cause_named"] = cause_named in (st.get("reason") or "")
    res["ok"] = bool(
        res["t_status_s"] is not None
        and res["t_clean_s"] is not None
        and not res["orphans"]
        and not res["shm_left"]
        and res["cause_named"]
        and res["counters_continue"]
        and res["one_point_per_step"]
        and res["utd_rel_err"] is not None
        and res["utd_rel_err"] <= 0.02
        and res.get("updates_lost") == 0
        and res["resume_status"] == schema.COMPLETED
        and q.returncode == 0
    )
    if not res["ok"]:
        res["output"] = (out or "")[-1500:] + "\n--- resume ---\n" + (out2 or "")[-1500:]
    return res


def run_drills(kinds, n, seed, base):
    rng = random.Random(seed)
    results = []
    for i in range(n):
        for kind in kinds:
            r = drill(kind, os.path.join(base, "%s-%d" % (kind, i)), rng)
            print(json.dumps({k: v for k, v in r.items() if k != "output"}), flush=True)
            results.append(r)
    return results


def summary(results):
    table = []
    for kind in sorted({r["kind"] for r in results}):
        rs = [r for r in results if r["kind"] == kind]
        mx = lambda k: max((r[k] for r in rs if r.get(k) is not None), default=None)
        table.append(
            {
                "drill": kind,
                "runs": len(rs),
                "intact": sum(r["ok"] for r in rs),
                "max_t_status_s": mx("t_status_s"),
                "max_t_clean_s": mx("t_clean_s"),
                "max_lost_env_steps": mx("lost_env_steps"),
                "superseded_rows": sum(r["superseded_rows"] for r in rs),
                "max_utd_rel_err": mx("utd_rel_err"),
                "max_updates_lost": mx("updates_lost"),
                "orphans": sum(len(r["orphans"]) for r in rs),
                "shm_left": sum(len(r["shm_left"]) for r in rs),
            }
        )
    return table


def fuzz_counts(n):
    """Run tests/test_fuzz.py's families with n examples each; cases tried per family and any failure."""
    import pathlib

    os.environ["FUZZ_EXAMPLES"] = str(n)
    sys.path.insert(0, ROOT)
    import tests.test_fuzz as tf

    class Factory:
        def mktemp(self, name):
            return pathlib.Path(tempfile.mkdtemp(prefix=name))

    failures = {}
    for name in sorted(dir(tf)):
        if name.startswith("test_fuzz_"):
            fn = getattr(tf, name)
            t0 = time.monotonic()
            try:
                fn() if name == "test_fuzz_training_overrides" else fn(tmp_path_factory=Factory())
            except Exception as e:  # noqa: BLE001 - a found bug is a result to record
                failures[name] = "%s: %s" % (type(e).__name__, str(e)[:1000])
            print("%s: %.0f s" % (name, time.monotonic() - t0), flush=True)
    return {"examples_per_test": n, "cases_tried": dict(tf.TRIED), "failures": failures}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "drills.json"))
    ap.add_argument(
        "--fuzz", type=int, default=0, help="instead of the drills: fuzz each family with this many examples"
    )
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import save

    if args.fuzz:
        payload = dict(
            read_json(args.out),
            fuzz=fuzz_counts(args.fuzz),
            fuzz_command="python benchmarks/drills.py --fuzz %d" % args.fuzz,
            fuzz_loadavg_after=os.getloadavg(),
        )
        payload.pop("machine", None)
        save(args.out, payload)
        return

    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as base:
        results = run_drills(args.kinds.split(","), args.n, args.seed, base)
    table = summary(results)
    for row in table:
        print(row)
    prev = read_json(args.out)
    payload = dict(
        prev,
        drills=table,
        drill_runs=[{k: v for k, v in r.items() if k != "run_dir"} for r in results],
        drill_command="python benchmarks/drills.py --n %d --seed %d" % (args.n, args.seed),
        loadavg_before=load0,
        loadavg_after=os.getloadavg(),
        sweep_launcher_kill=(
            "tests/test_sweep.py::test_kill_drill_sigkill_launcher_mid_sweep_then_two_reruns: "
            "SIGKILL of the launcher mid-sweep, then two reruns at once (not repeated here)"
        ),
    )
    payload.pop("machine", None)
    save(args.out, payload)


if __name__ == "__main__":
    main()
