"""A real one-node SLURM cluster for the tests: munged + slurmctld + slurmd on this host, one partition.

Debian's `slurm-wlm` and `munge` packages (installed by .ci/run). The config, state, logs and pid files live
in a temporary folder named by SLURM_CONF (nothing under /etc/slurm is touched); accounting is off (no
slurmdbd), so submitit reads job states from squeue and result files. Needs root (slurmd starts jobs as
their user). `python tests/slurm_cluster.py` brings one up by hand and prints the SLURM_CONF to export.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")
PARTITION = "debug"


def missing():
    """Why this machine cannot run the cluster, or None."""
    absent = [b for b in BINARIES if shutil.which(b) is None and not os.path.exists("/usr/sbin/" + b)]
    if absent:
        return "SLURM binaries absent (%s): apt-get install -y slurm-wlm munge (as .ci/run does)" % ", ".join(
            absent
        )
    if os.geteuid() != 0:
        return "a SLURM cluster needs root (slurmd starts jobs as their user)"
    return None


def _free_port():
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _bin(name):
    return shutil.which(name) or "/usr/sbin/" + name


def _wait(what, check, deadline_s, log=None):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.5)
    tail = ""
    if log and os.path.exists(log):
        tail = "\n" + "".join(open(log).readlines()[-20:])
    raise RuntimeError("SLURM test cluster: %s not ready after %.0f s%s" % (what, deadline_s, tail))


def _ok(cmd, env=None):
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env).returncode == 0


class Cluster:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pql-slurm-")
        self.conf = os.path.join(self.dir, "slurm.conf")
        self.env = dict(os.environ, SLURM_CONF=self.conf)
        self.pids = []  # the daemons we started (munged only if none was running)

    def start(self):
        self._munge()
        node = subprocess.run(
            [_bin("slurmd"), "-C"], capture_output=True, text=True, check=True
        ).stdout.splitlines()[0]
        host = socket.gethostname().split(".")[0]
        node = node.replace("NodeName=%s" % node.split()[0].split("=", 1)[1], "NodeName=%s" % host, 1)
        d = self.dir
        with open(self.conf, "w") as f:
            f.write(
                "\n".join(
                    [
                        "ClusterName=pqltest",
                        "SlurmctldHost=%s" % host,
                        # ports of its own: two clusters at once (the suite beside benchmarks/fleet_drills.py, two
                        # checkouts' suites) would otherwise both bind SLURM's defaults, 6817 and 6818
                        "SlurmctldPort=%d" % _free_port(),
                        "SlurmdPort=%d" % _free_port(),
                        "SlurmUser=root",
                        "SlurmdUser=root",
                        "AuthType=auth/munge",
                        "StateSaveLocation=%s/state" % d,
                        "SlurmdSpoolDir=%s/spool" % d,
                        "SlurmctldPidFile=%s/slurmctld.pid" % d,
                        "SlurmdPidFile=%s/slurmd.pid" % d,
                        "SlurmctldLogFile=%s/slurmctld.log" % d,
                        "SlurmdLogFile=%s/slurmd.log" % d,
                        "ProctrackType=proctrack/linuxproc",
                        "TaskPlugin=task/none",
                        "MpiDefault=none",
                        "SelectType=select/cons_tres",
                        "SelectTypeParameters=CR_Core",
                        "SchedulerType=sched/backfill",
                        "AccountingStorageType=accounting_storage/none",
                        "JobAcctGatherType=jobacct_gather/none",
                        "JobCompType=jobcomp/none",
                        "ReturnToService=2",
                        "SlurmctldTimeout=30",
                        "SlurmdTimeout=30",
                        "InactiveLimit=0",
                        "KillWait=10",
                        "MinJobAge=300",
                        node + " State=UNKNOWN",
                        "PartitionName=%s Nodes=ALL Default=YES MaxTime=INFINITE State=UP" % PARTITION,
                        "",
                    ]
                )
            )
        for sub in ("state", "spool"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        subprocess.run([_bin("slurmctld"), "-i"], env=self.env, check=True)  # -i: ignore stale state
        _wait("slurmctld", lambda: os.path.exists(d + "/slurmctld.pid"), 30, d + "/slurmctld.log")
        self.pids.append(int(open(d + "/slurmctld.pid").read()))
        subprocess.run([_bin("slurmd")], env=self.env, check=True)
        _wait("slurmd", lambda: os.path.exists(d + "/slurmd.pid"), 30, d + "/slurmd.log")
        self.pids.append(int(open(d + "/slurmd.pid").read()))

        def idle():
            out = subprocess.run(
                ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=self.env
            ).stdout
            return out.strip() in ("idle", "mix", "alloc")

        _wait("the node (sinfo state idle)", idle, 60, d + "/slurmctld.log")
        return self

    def _munge(self):
        if _ok(["munge", "-n"]) or _ok(["sh", "-c", "munge -n | unmunge"]):
            return  # a munged is already running
        os.makedirs("/run/munge", exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        if not os.path.exists("/etc/munge/munge.key"):
            subprocess.run(["mungekey", "--create"], check=True)
            shutil.chown("/etc/munge/munge.key", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", _bin("munged")], check=True)
        _wait("munged", lambda: _ok(["sh", "-c", "munge -n | unmunge"]), 20)
        pid = "/run/munge/munged.pid"
        if os.path.exists(pid):
            self.pids.append(int(open(pid).read()))

    def stop(self):
        subprocess.run(
            ["scancel", "--user=root"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def drained():  # jobs' slurmstepd exit only while slurmd runs
            out = subprocess.run(["squeue", "-h"], capture_output=True, text=True, env=self.env).stdout
            return (
                not out.strip()
                and subprocess.run(["pgrep", "-x", "slurmstepd"], capture_output=True).returncode != 0
            )

        try:
            _wait("jobs to drain", drained, 30)
        except RuntimeError:
            pass  # stop the daemons anyway
        for pid in reversed(self.pids):
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass
        end = time.monotonic() + 20
        for pid in self.pids:
            while time.monotonic() < end and os.path.exists("/proc/%d" % pid):
                time.sleep(0.2)
        shutil.rmtree(self.dir, ignore_errors=True)


if __name__ == "__main__":
    reason = missing()
    if reason:
        raise SystemExit(reason)
    c = Cluster().start()
    print("export SLURM_CONF=%s   # daemons: %s (kill them by these pids to stop)" % (c.conf, c.pids))
