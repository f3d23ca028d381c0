"""Liveness in status.json (issue 24): a run whose process died while `running` reads as `stopped (lost: no
heartbeat since ...)` in every reader; a live one paused in a long checkpoint does not."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from pql_scaling.rundir import schema
from tests.test_drills import ROOT, SMALL, cli, parsed_rows, wait_for

HERE = schema.this_machine()
T0 = 1_800_000_000.0


def running(**kw):
    st = {"status": "running", "host": HERE[0], "boot_id": HERE[1], "pid": 4242, "proc_start": 777}
    st["heartbeat"] = T0
    st.update(kw)
    return st


def test_lost_reason_same_machine_asks_the_process_not_the_clock():
    alive, gone, reused = (lambda pid: 777), (lambda pid: None), (lambda pid: 778)
    late = T0 + 3600  # an hour without a heartbeat: a paused process on this machine is still live
    assert schema.lost_reason(running(), late, HERE, alive) is None
    why = schema.lost_reason(running(), T0 + 1, HERE, gone)
    assert why.startswith("lost: no heartbeat since 2027-01-15T08:00:00Z") and "process 4242" in why
    assert "is gone" in why and "resume=" in why
    assert "now another process" in schema.lost_reason(running(), T0 + 1, HERE, reused)
    # no /proc: the process exists but its start time is unknown, so a reused pid cannot be told apart
    assert schema.lost_reason(running(), late, HERE, lambda pid: schema.UNKNOWN) is None


def test_lost_reason_other_machine_goes_by_the_heartbeat_age():
    never = lambda pid: 1 / 0  # noqa: E731 - another machine's pid means nothing here
    other = ("elsewhere", "another-boot")
    assert schema.lost_reason(running(), T0 + 119, other, never) is None
    why = schema.lost_reason(running(), T0 + 121, other, never)
    assert why.startswith("lost: no heartbeat since") and "121 s ago" in why and HERE[0] in why
    assert schema.lost_reason(running(), T0 + 5, other, never, lost_after_s=2) is not None
    # same host name after a reboot: another boot, so the pid is not asked either
    assert schema.lost_reason(running(), T0 + 121, (HERE[0], "new-boot"), never) is not None


def test_lost_reason_leaves_other_statuses_and_old_files_alone():
    gone = lambda pid: None  # noqa: E731
    for st in ("completed", "stopped", "failed"):
        assert schema.lost_reason(running(status=st), T0 + 1e6, HERE, gone) is None
    old = running()
    del old["heartbeat"]  # written before heartbeats existed: only the sweep's lock can tell
    assert schema.lost_reason(old, T0 + 1e6, HERE, gone) is None


def test_process_start_tells_a_live_process_from_a_dead_or_zombie_one():
    assert isinstance(schema.process_start(os.getpid()), int)
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(lambda: open("/proc/%d/stat" % p.pid).read().rsplit(")", 1)[1].split()[0] == "Z", "a zombie")
    assert schema.process_start(p.pid) is None  # exited, not yet reaped
    p.wait()
    assert schema.process_start(p.pid) is None


def test_sigkilled_sync_run_reads_lost_in_every_reader(tmp_path):
    from pql_scaling.analysis.load import load_runs
    from pql_scaling.experiments import sweep

    d = str(tmp_path / "k")
    p = cli(*SMALL, "max_env_steps=100000000", "run_dir=" + d)
    wait_for(lambda: len(parsed_rows(d)) >= 3, "3 log points")
    raw = schema.read_status(os.path.join(d, schema.STATUS), raw=True)
    assert raw["status"] == "running" and raw["pid"] == p.pid and raw["proc_start"] > 0
    assert schema.read_status(os.path.join(d, schema.STATUS))["status"] == "running"
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    st = schema.read_status(os.path.join(d, schema.STATUS))
    assert st["status"] == "stopped" and st["lost"], st
    assert st["reason"].startswith("lost: no heartbeat since") and "process %d" % p.pid in st["reason"]
    assert schema.read_status(os.path.join(d, schema.STATUS), raw=True)["status"] == "running"
    state, reason = sweep.run_state(d)
    assert state == "stopped" and reason.startswith("lost: no heartbeat since"), (state, reason)
    _, notes = load_runs(d)
    assert any("stopped (lost: no heartbeat since" in n for _, n in notes), notes
    q = cli("resume=" + d, "max_env_steps=%d" % (parsed_rows(d)[-1]["env_steps"] + 200))
    out, _ = q.communicate(timeout=180)
    assert q.returncode == 0, out
    assert schema.read_status(os.path.join(d, schema.STATUS))["status"] == "completed"


# a real sync run whose second checkpoint takes `pause` seconds (a slow shared file system), heartbeats every
# 0.2 s; it touches `marker` when the slow checkpoint begins
SLOW_CHECKPOINT = """
import sys, time
from pql_scaling.rundir import rundir, schema
from pql_scaling.runtime.train import train

marker, pause, args = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
schema.HEARTBEAT_S = 0.2
save, calls = rundir.RunDir.save_checkpoint, []

def slow_save(self, state, position=None):
    calls.append(1)
    if len(calls) == 2:
        open(marker, "w").close()
        time.sleep(pause)
    save(self, state, position)

rundir.RunDir.save_checkpoint = slow_save
train(args, quiet=True)
"""


def test_a_run_paused_in_a_long_checkpoint_is_not_lost(tmp_path):
    d, marker, pause = str(tmp_path / "slow"), str(tmp_path / "in-checkpoint"), 4.0
    args = SMALL + ["max_env_steps=1600", "log.checkpoint_every_s=0.5", "run_dir=" + d]
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SLOW_CHECKPOINT), marker, str(pause)] + args, env=env, cwd=ROOT
    )
    path = os.path.join(d, schema.STATUS)
    wait_for(lambda: os.path.exists(marker), "the slow checkpoint")
    t_end, beats = time.monotonic() + pause - 1.0, set()
    other = ("another-host", None)
    while time.monotonic() < t_end:  # the main thread sleeps in the checkpoint; the heartbeat goes on
        st = schema.read_status(path, lost_after_s=1.0)
        assert st["status"] == "running", st
        raw = schema.read_status(path, raw=True)
        assert schema.lost_reason(raw, time.time(), other, None, lost_after_s=1.0) is None, raw
        beats.add(raw["heartbeat"])
        time.sleep(0.1)
    assert len(beats) >= 5, beats  # a new heartbeat every 0.2 s while the run was paused
    assert p.wait(timeout=180) == 0
    assert schema.read_status(path)["status"] == "completed"  # the heartbeat thread stopped before this
    time.sleep(0.5)
    assert schema.read_status(path, raw=True)["status"] == "completed"
