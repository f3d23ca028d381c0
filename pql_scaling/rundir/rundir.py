"""The run directory: the contract between training and analysis, written by one writer (RunDir).
Its file names, row fields and readers are schema.py's.

    config.yaml              fully resolved config
    run.json                 derived facts: configured UTD, parameter and FLOP counts, versions
    metrics.jsonl            one JSON object per log point, env_steps strictly increasing (the local source
                             of truth)
    metrics.superseded.jsonl log points a crash made stale: written after the checkpoint a resume started
                             from, moved here (with the resume's time) so metrics.jsonl stays one timeline
    status.json              running / completed / stopped / failed, with the reason; while running, who
                             runs it (host, boot id, pid, process start) and a heartbeat, rewritten at log
                             points and every schema.HEARTBEAT_S by a thread (see schema.lost_reason)
    train.log                human-readable log, tracebacks included
    checkpoints/             last.pt and prev.pt (the one before), replay/ segments (see replay_store.py)

"""

import errno
import json
import logging
import os
import platform
import socket
import threading
import time

import torch

from pql_scaling import config as config_lib
from pql_scaling.rundir import schema
from pql_scaling.rundir.disk import (
    APPEND,
    CKPT_FORMAT,
    BadCheckpoint,
    DiskFull,
    UnsafeCheckpoint,
    disk_error,
    log,
    pack,
    read_checkpoint,
    read_jsonl_lines,
    write_atomic,
    write_json_atomic,
)


def default_run_dir(cfg):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", "%s-%s-s%d-%s" % (cfg.task, cfg.algo.name, cfg.seed, stamp))


class RunDir:
    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.ckpt_dir = os.path.join(self.path, schema.CHECKPOINTS)
        os.makedirs(self.ckpt_dir, exist_ok=True)
        self.metrics_path = os.path.join(self.path, schema.METRICS)
        self.superseded_path = os.path.join(self.path, schema.SUPERSEDED)
        self.metrics_rows = len(read_jsonl_lines(self.metrics_path))
        self.last_env_steps = None
        self._status = None  # what status.json says, rewritten with a new heartbeat while running
        self._status_lock = threading.Lock()  # the heartbeat thread and the main thread write status.json
        self._beats = None  # threading.Event that stops the heartbeat thread
        self._last_beat = 0.0
        self._setup_file_log()

    def _setup_file_log(self):
        handler = logging.FileHandler(os.path.join(self.path, schema.TRAIN_LOG))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(processName)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        self._handler = handler

    def write_config(self, cfg, facts):
        write_atomic(os.path.join(self.path, schema.CONFIG), config_lib.to_yaml(cfg).encode())
        facts = dict(
            facts, python=platform.python_version(), torch=torch.__version__, host=socket.gethostname()
        )
        write_json_atomic(os.path.join(self.path, schema.FACTS), facts)

    def update_facts(self, **facts):
        """Add facts known only once the run is going (e.g. startup_s) to run.json."""
        path = os.path.join(self.path, schema.FACTS)
        if os.path.exists(path):
            write_json_atomic(path, dict(schema.read_facts(path), **facts))

    def set_status(self, status, reason=None, **extra):
        """Write status.json. `running` also names this process (host, boot id, pid, start time) and starts
        a heartbeat thread, so a reader can tell a run whose process died from a live one; any other status
        stops it."""
        st = dict(status=status, reason=reason, time=time.strftime("%Y-%m-%dT%H:%M:%S"), **extra)
        if status == schema.RUNNING:
            host, boot = schema.this_machine()
            st.update({schema.HOST: host, schema.BOOT_ID: boot, schema.PID: os.getpid()})
            st[schema.PROC_START] = schema.process_start(os.getpid())
        else:
            self._stop_heartbeat()
        with self._status_lock:
            self._status = st
            self._write_status()
        if status == schema.RUNNING and self._beats is None:
            self._beats = threading.Event()
            threading.Thread(
                target=self._beat_every, args=(self._beats,), name="heartbeat", daemon=True
            ).start()

    def beat(self, min_interval_s=0.0):
        """Rewrite the heartbeat of a running status (no-op otherwise, or within `min_interval_s` of the
        last). A failure is logged, not raised: the run goes on, and a reader at worst calls it lost."""
        with self._status_lock:
            if self._status is None or self._status["status"] != schema.RUNNING:
                return
            if time.time() - self._last_beat < min_interval_s:
                return
            try:
                self._write_status()
            except (OSError, DiskFull) as e:
                log.warning("heartbeat: could not rewrite status.json: %s", e)

    def _write_status(self):
        """status.json from self._status with a new heartbeat; the caller holds the status lock."""
        self._last_beat = time.time()
        if self._status["status"] == schema.RUNNING:
            self._status[schema.HEARTBEAT] = round(self._last_beat, 3)
        # a per-thread temporary name: the trio's V-learner may write the status of a dead actor
        write_atomic(
            os.path.join(self.path, schema.STATUS),
            json.dumps(self._status, indent=1).encode(),
            unique_tmp=True,
        )

    def _beat_every(self, stop):
        while not stop.wait(schema.HEARTBEAT_S):
            self.beat()

    def _stop_heartbeat(self):
        if self._beats is not None:
            self._beats.set()
            self._beats = None

    def append_metrics(self, row):
        """Append one log point whole (fsynced), or nothing: a failed write is cut back off the file.
        A row at the last row's env_steps (trio learners paid owed updates after it, no actor step between)
        is merged into that row: its counters, losses and clock win, but the episodes, returns and
        per-interval rates the earlier row measured are kept (the later one saw no episode and no env step;
        replacing the row lost the return of the log point that met `target_return`)."""
        steps, episodes = schema.ENV_STEPS, schema.EPISODES
        if self.last_env_steps is not None and row[steps] == self.last_env_steps:
            lines = read_jsonl_lines(self.metrics_path)
            prev = lines[-1][1] or {}
            merged = dict(prev)
            merged.update(
                {
                    k: v
                    for k, v in row.items()
                    if v is not None and not k.endswith(schema.INTERVAL_SUFFIXES) and k != episodes
                }
            )
            merged[episodes] = (prev.get(episodes) or 0) + (row.get(episodes) or 0)
            write_atomic(
                self.metrics_path,
                "".join(x + "\n" for x, _ in lines[:-1]).encode() + (json.dumps(merged) + "\n").encode(),
            )
            self.beat(min_interval_s=1.0)
            return
        if self.last_env_steps is not None and row[steps] < self.last_env_steps:
            raise RuntimeError(
                "log point at env_steps=%d after one at %d: metrics.jsonl must increase"
                % (row[steps], self.last_env_steps)
            )
        data = (json.dumps(row) + "\n").encode()
        fd = os.open(self.metrics_path, APPEND, 0o644)
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, "short write (%d of %d bytes)" % (written, len(data)))
            os.fsync(fd)
        except OSError as e:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            raise disk_error(self.metrics_path, e) from e
        finally:
            os.close(fd)
        self.metrics_rows += 1
        self.last_env_steps = row[steps]
        self.beat(min_interval_s=1.0)  # a log point is a sign of life (at most one status rewrite a second)

    def supersede(self, keep_rows, env_steps):
        """Make metrics.jsonl one timeline again after a crash: keep its first `keep_rows` log points (those
        the checkpoint being resumed had seen, none past its `env_steps`) and move the rest to
        metrics.superseded.jsonl, stamped with this resume's time. Returns (rows moved, env_steps of the last
        kept)."""
        lines = read_jsonl_lines(self.metrics_path)
        keep_rows = len(lines) if keep_rows is None else keep_rows
        kept, steps = [], schema.ENV_STEPS
        for line, obj in lines[:keep_rows]:
            if obj is None or obj.get(steps) is None or obj[steps] > env_steps:
                break
            if kept and obj[steps] <= kept[-1][1][steps]:
                break
            kept.append((line, obj))
        moved = lines[len(kept) :]
        if moved:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            extra = []
            for line, obj in moved:
                rec = dict(obj) if obj is not None else {schema.UNPARSABLE_LINE: line}
                rec.update({schema.SUPERSEDED_AT: stamp, schema.RESUMED_FROM: env_steps})
                extra.append(json.dumps(rec) + "\n")
            with open(self.superseded_path, "a") as f:  # first keep them aside, then drop them here
                f.write("".join(extra))
                f.flush()
                os.fsync(f.fileno())
            write_atomic(self.metrics_path, "".join(line + "\n" for line, _ in kept).encode())
            log.warning(
                "resume: %d log point(s) after the checkpoint (env_steps %d) moved to %s",
                len(moved),
                env_steps,
                self.superseded_path,
            )
        self.metrics_rows = len(kept)
        self.last_env_steps = kept[-1][1][steps] if kept else None
        return len(moved), self.last_env_steps

    @property
    def checkpoint_path(self):
        return os.path.join(self.ckpt_dir, schema.LAST_CKPT)

    @property
    def prev_checkpoint_path(self):
        return os.path.join(self.ckpt_dir, schema.PREV_CKPT)

    def position(self):
        """Where metrics.jsonl stands: (rows written, env_steps of the last row), as a checkpoint records
        it."""
        return self.metrics_rows, self.last_env_steps

    def save_checkpoint(self, state, position=None):
        """last.pt -> prev.pt, the new one -> last.pt; each step atomic, so some good checkpoint always
        exists.
        A background writer passes the position() the state was taken at (rows logged since are not in it)."""
        rows, last = self.position() if position is None else position
        data = pack(dict(state, format_version=CKPT_FORMAT, metrics_rows=rows, last_log_env_steps=last))
        write_atomic(self.checkpoint_path, data, keep_prev=self.prev_checkpoint_path)

    def load_checkpoint(self, map_location):
        """The newest checkpoint that verifies (last.pt, else prev.pt); each bad one is reported with its
        path."""
        bad = []
        for path in (self.checkpoint_path, self.prev_checkpoint_path):
            if not os.path.exists(path):
                continue
            try:
                state = read_checkpoint(path, map_location)
            except UnsafeCheckpoint:
                raise  # tampered with: no fallback to the other one
            except BadCheckpoint as e:
                log.error("%s", e)
                bad.append(str(e))
                continue
            if bad:
                log.warning("resuming from the previous checkpoint %s", path)
                if os.path.exists(self.checkpoint_path):  # kept for inspection, out of the rotation
                    os.replace(
                        self.checkpoint_path, self.checkpoint_path + ".bad-" + time.strftime("%Y%m%d-%H%M%S")
                    )
            state["loaded_from"] = path
            return state
        if bad:
            raise BadCheckpoint(
                "no usable checkpoint in %s: %s; start a new run instead" % (self.ckpt_dir, "; ".join(bad))
            )
        raise FileNotFoundError(
            "no checkpoint at %s: the run ended before its first checkpoint, so it "
            "cannot be resumed; start a new run instead" % self.checkpoint_path
        )

    def close(self):
        self._stop_heartbeat()
        log.removeHandler(self._handler)
        self._handler.close()
