"""Fleet drills (issue 24): the sweep launchers' kill drills on the real engines, repeated to count flakes.

Each drill is a test of tests/test_sweep.py (or of the file its name gives) that injects its faults into a real
sweep (a local pool, a local Ray cluster, the one-node SLURM cluster of tests/slurm_cluster.py), of single runs or
of populations, and then asserts, for every run of the sweep: completed, started from scratch once, no duplicated
run directory or SLURM submission, one log point per step and sync mode's exact critic and policy update counts
(nothing lost or paid twice across the resume). A pass is therefore every run intact with 0 updates lost. (Until
a stop signal was acted on between two steps, the SLURM preemption drill lost 1-2 updates when its SIGTERM landed
inside a sync actor step and ended as an xfail; it now asserts the exact counts. An xfail's updates lost are still
read from its message.) This script runs the drills --n times each, in one pytest process per round (the SLURM
cluster is started once per round), and records passes, failures, xfails and times.

    python benchmarks/fleet_drills.py --n 3 --out benchmarks/results/fleet_drills.json

The SLURM drills need root and `apt-get install -y slurm-wlm munge` (they are skipped otherwise, and counted
as skipped here)."""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# test -> (engine, faults injected per run of the drill, runs in its sweep, what it does)
DRILLS = {
    "test_kill_drill_sigkill_launcher_mid_sweep_then_two_reruns": (
        "local",
        1,
        4,
        "SIGKILL of the launcher mid-sweep, then two reruns at once",
    ),
    "test_killed_train_process_is_resumed_from_its_checkpoint": (
        "local",
        1,
        1,
        "SIGKILL of a train process between checkpoints; the sweep resumes it",
    ),
    "test_ray_kill_drill_train_process_then_driver_mid_sweep": (
        "ray",
        2,
        2,
        "SIGKILL of a Ray task's train process, then of the driver, mid-sweep; rerun",
    ),
    "test_slurm_rerun_never_submits_a_pending_job_again": (
        "slurm",
        1,
        3,
        "scancel --full --signal=TERM of the launcher (a SLURM job) while its array is pending; rerun",
    ),
    "test_slurm_preemption_drill_scancel_term_of_a_running_task": (
        "slurm",
        1,
        2,
        "scancel --signal=TERM of a running array task (preemption); rerun resumes it",
    ),
    # populations (issue 21): a population is one process (one Ray task, one SLURM array task) of its members
    "test_population.py::test_a_killed_sweep_of_populations_resumes_every_run_once": (
        "local",
        1,
        4,
        "SIGKILL of the sweep and its populations' process group mid-run; rerun",
    ),
    "test_ray_kill_drill_with_populations": (
        "ray",
        2,
        4,
        "populations on Ray: SIGKILL of a population's train process, then of the driver; rerun",
    ),
    "test_slurm_launcher_killed_while_populations_pend": (
        "slurm",
        1,
        6,
        "populations on SLURM: scancel --full --signal=TERM of the launcher while they pend; rerun",
    ),
    "test_slurm_preemption_drill_with_populations": (
        "slurm",
        1,
        4,
        "populations on SLURM: scancel --signal=TERM of a running population's task; rerun resumes its members",
    ),
}


def test_id(name):
    """pytest's id of a drill: tests/test_sweep.py unless the name says its file."""
    return "tests/" + name if "::" in name else "tests/test_sweep.py::" + name


def case_name(name):
    return name.split("::")[-1]


def one_round(i, tmp):
    xml = os.path.join(tmp, "round%d.xml" % i)
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml", xml]
        + [test_id(name) for name in DRILLS],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - t0
    out = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        failed = case.find("failure") if case.find("failure") is not None else case.find("error")
        skipped = case.find("skipped")
        xfail = skipped is not None and skipped.get("type") == "pytest.xfail"
        outcome = (
            "failed"
            if failed is not None
            else "xfailed"
            if xfail
            else "skipped"
            if skipped is not None
            else "passed"
        )
        note = failed if failed is not None else skipped if xfail else None
        out[case.get("name")] = {
            "outcome": outcome,
            "time_s": round(float(case.get("time", 0)), 1),
            "error": (note.get("message") or "")[:400] if note is not None else None,
        }
    print("round %d: %.0f s, %s" % (i, wall, {k: v["outcome"] for k, v in out.items()}), flush=True)
    return {"wall_s": round(wall, 1), "tests": out, "pytest_rc": p.returncode}


def lost_updates(message):
    """(critic, policy) updates lost, from an xfail message '... (got_c, got_p), exact (c, p)'."""
    m = re.search(r"\((\d+), (\d+)\), exact \((\d+), (\d+)\)", message or "")
    if not m:
        return None
    got_c, got_p, c, p = map(int, m.groups())
    return [c - got_c, p - got_p]


def summary(rounds):
    rows = []
    for name, (engine, faults, runs, what) in DRILLS.items():
        got = [r["tests"].get(case_name(name), {"outcome": "missing"}) for r in rounds]
        n = {k: sum(g["outcome"] == k for g in got) for k in ("passed", "failed", "xfailed", "skipped")}
        ran = n["passed"] + n["failed"] + n["xfailed"]
        times = [g["time_s"] for g in got if g["outcome"] in ("passed", "xfailed")]
        # a pass asserts every run intact with exact counts; an xfail (the preemption drill's known sync-mode
        # loss) has every run completed on one timeline, all but the SIGTERMed one with exact counts
        losses = [lost_updates(g["error"]) for g in got if g["outcome"] == "xfailed"]
        rows.append(
            dict(
                drill=name,
                engine=engine,
                what=what,
                rounds=len(got),
                **n,
                faults_injected=faults * ran,
                runs_checked=runs * ran,
                runs_intact=runs * n["passed"] + (runs - 1) * n["xfailed"],
                updates_lost_critic_policy=(
                    [sum(x[0] for x in losses if x), sum(x[1] for x in losses if x)]
                    if not n["failed"]
                    else None
                ),
                time_s=[min(times), max(times)] if times else None,
            )
        )
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "fleet_drills.json"))
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import save

    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        rounds = [one_round(i, tmp) for i in range(args.n)]
    table = summary(rounds)
    for row in table:
        print(json.dumps(row))
    save(
        args.out,
        {
            "command": "python benchmarks/fleet_drills.py --n %d" % args.n,
            "drills": table,
            "totals": {
                k: sum(r[k] for r in table)
                for k in (
                    "passed",
                    "failed",
                    "xfailed",
                    "skipped",
                    "faults_injected",
                    "runs_intact",
                    "runs_checked",
                )
            },
            "rounds": rounds,
            "loadavg_before": load0,
            "loadavg_after": os.getloadavg(),
        },
    )


if __name__ == "__main__":
    main()
