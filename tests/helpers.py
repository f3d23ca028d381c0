"""Test helpers: a fresh interpreter with the simulators' stand-ins (tests/fakes) on its path, and a reader of what a
W&B offline run recorded (its transaction log), without a server.

A `.wandb` file is a LevelDB-style log (W&B's own format): a 7-byte header ':W&B' + key + version, then
32 KiB blocks of chunks, each with a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle,
4 last) and a serialized `wandb_internal_pb2.Record`. Hand-written because wandb >= 0.20 reads it only in
its Go core; only what the tests need (no checksum verification).
"""

import glob
import json
import os
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKES = os.path.join(ROOT, "tests", "fakes")


def python_ok(argv, fakes=True, env=None):
    """`python *argv` from the repository root in a fresh interpreter (Isaac Gym / Isaac Lab must be imported
    before torch, so their adapters are tested in one), the stand-ins of tests/fakes first on its path unless
    `fakes` is False; `env` (default os.environ) is the rest of its environment. Asserts it exited 0, with its
    output in the message; returns the CompletedProcess."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(([FAKES] if fakes else []) + [ROOT])
    proc = subprocess.run(
        [sys.executable] + list(argv), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _records(path):
    from wandb.proto import wandb_internal_pb2 as pb

    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B", "not a W&B transaction log: %s" % path
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


def complete_records(path, timeout=60.0):
    """The records of a W&B transaction log once W&B has finished writing it (its `exit` record is there).
    W&B's service process writes the log; on a loaded machine the last records can land a moment after
    `run.finish()` returned in the training process, so a reader that does not wait sees a partial log."""
    deadline = time.monotonic() + timeout
    while True:
        records = list(_records(path))
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


def wandb_offline_run(run_dir):
    """(config, history) of the one W&B offline run under `run_dir`: config as a dict of the values the run
    set, history as a list of {key: value} per `log` call."""
    logs = glob.glob(os.path.join(run_dir, "wandb", "offline-run-*", "*.wandb"))
    assert len(logs) == 1, logs
    config, history = {}, []
    for r in complete_records(logs[0]):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            config.update({i.key: json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "config":
            config.update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif kind == "history":
            history.append(
                {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            )
    config.pop("_wandb", None)
    return config, history


def _settled_logs(run_dir, timeout=60.0):
    """The W&B offline logs under run_dir, oldest first, once the newest has its exit record: W&B's service
    process may create and finish a log after the training process that used it returned. An earlier run
    that was killed has no exit record; only the newest, which finished normally, is waited for."""
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(glob.glob(os.path.join(run_dir, "wandb", "offline-run-*", "*.wandb")))
        done = files and any(r.WhichOneof("record_type") == "exit" for r in _records(files[-1]))
        if done or time.monotonic() > deadline:
            return files
        time.sleep(0.5)


def offline_runs(run_dir):
    """[(history steps, branch point step or None)] for every offline W&B run under run_dir, oldest first:
    a resumed run that rewound W&B (`resume_from`) is a second run branching off the first."""
    out = []
    files = _settled_logs(run_dir)
    for f in files:
        steps, branch = [], None
        for r in _records(f):
            kind = r.WhichOneof("record_type")
            if kind == "history":
                steps.append(r.history.step.num)
            elif kind == "run" and r.run.branch_point.run:
                branch = int(r.run.branch_point.value)
        out.append((steps, branch))
    return out
