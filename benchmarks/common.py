"""Helpers shared by the benchmark scripts: machine facts, JSON output and training runs."""

import json
import os
import platform
import subprocess
import sys
import time

from pql_scaling.rundir import schema


def machine():
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
        "device": "cpu",
    }
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu_model"] = next(
                (l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), None
            )
    except OSError:
        pass
    if hasattr(os, "getloadavg"):
        info["loadavg_1m"] = os.getloadavg()[0]  # a shared machine skews timings; record how busy it was
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
    return info


def commit(repo=None):
    """The commit checked out at repo (default: this checkout), or None outside a git checkout."""
    repo = repo or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or None


def train(run_dir, overrides):
    """One `pql-scale train` of run_dir with these overrides in its own process (as a user runs it: the run's
    clock includes its start-up); raises CalledProcessError if it fails. A run_dir that has a status.json is left
    as it is, so a rerun of the benchmark trains only what is missing. Returns whether it trained."""
    if os.path.exists(os.path.join(run_dir, "status.json")):
        return False
    subprocess.check_call(
        [sys.executable, "-m", "pql_scaling.cli", "train", *overrides, "run_dir=%s" % run_dir]
    )
    return True


def save(path, payload):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(dict(payload, machine=machine()), f, indent=1)
    print("saved %s" % path)


def first_crossing(run_dir, threshold):
    """(wall_time_s, env_steps) of the first log point whose return_mean >= threshold, or (None, None)."""
    rows, _ = schema.read_metrics(os.path.join(run_dir, schema.METRICS))
    for row in rows:
        ret = row[schema.RETURN_MEAN]
        if ret is not None and ret >= threshold:
            return row[schema.WALL_TIME_S], row[schema.ENV_STEPS]
    return None, None
