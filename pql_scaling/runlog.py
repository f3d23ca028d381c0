"""The run directory (the contract with analysis), W&B mirroring and the live display.

    config.yaml              fully resolved config
    run.json                 derived facts: configured UTD, parameter and FLOP counts, versions
    metrics.jsonl            one JSON object per log point, env_steps strictly increasing (the local source of truth)
    metrics.superseded.jsonl log points a crash made stale: written after the checkpoint a resume started from,
                             moved here (with the resume's time) so metrics.jsonl stays one timeline
    status.json              running / completed / stopped / failed, with the reason
    train.log                human-readable log, tracebacks included
    checkpoints/             last.pt and prev.pt (the one before), replay/ segments (see replay_store.py)

Every file a reader takes whole (checkpoints, status, run.json, config.yaml, rewritten metrics) is written
to a temporary name, fsynced, renamed over the old one and its directory fsynced: a crash or a full disk
leaves the old file or the new one, never a half. Checkpoints end with a SHA-256 trailer (torch.load ignores
it), so a truncated or corrupted checkpoint is detected and resume falls back to prev.pt.
"""
import errno
import functools
import hashlib
import io
import json
import logging
import operator
import os
import platform
import shutil
import socket
import sys
import threading
import time

import torch

from pql_scaling import config as config_lib

log = logging.getLogger("pql_scaling")
CKPT_FORMAT = 2  # bump when a checkpoint's layout changes incompatibly
TRAILER = b"\nPQL-SHA256:"  # + 64 hex digits
APPEND = functools.reduce(operator.or_, (os.O_WRONLY, os.O_APPEND, os.O_CREAT))  # (vermin reads `a | b` as a 3.10 type union)


class DiskFull(RuntimeError):
    """A write failed for lack of space (or quota); the message names the disk."""


class BadCheckpoint(ValueError):
    pass


def disk_error(path, e):
    """A DiskFull naming the file system of `path` when `e` is ENOSPC / EDQUOT, else `e` itself."""
    if getattr(e, "errno", None) not in (errno.ENOSPC, errno.EDQUOT):
        return e
    d = os.path.dirname(os.path.abspath(path))
    try:
        free = shutil.disk_usage(d).free
    except OSError:
        free = -1
    return DiskFull("disk full writing %s (the file system holding %s has %.1f MB free): free space there or "
                    "move the run directory, then continue with resume=RUN_DIR; the previous checkpoint is intact"
                    % (path, d, free / 1e6))


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path, data):
    """Write bytes to `path` so a reader sees the old file or the whole new one (fsynced), never a part."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(os.path.dirname(os.path.abspath(path)))
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise disk_error(path, e) from e


def write_json_atomic(path, obj):
    write_atomic(path, json.dumps(obj, indent=1).encode())


def default_run_dir(cfg):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", "%s-%s-s%d-%s" % (cfg.task, cfg.algo.name, cfg.seed, stamp))


def read_jsonl_lines(path):
    """The lines of a JSONL file and their parsed objects (None for a line that is not JSON)."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        lines = [x for x in f.read().decode("utf-8", "replace").split("\n") if x.strip()]
    out = []
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        out.append((line, obj if isinstance(obj, dict) else None))
    return out


def pack(obj):
    """torch.save bytes followed by their SHA-256 (torch.load on the file still works: it ignores the trailer)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    return payload + TRAILER + hashlib.sha256(payload).hexdigest().encode()


def to_host(tree):
    """A copy of a nested state with every tensor on the CPU (a background writer must not see later updates)."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().to("cpu", copy=True)
    if isinstance(tree, dict):
        return {k: to_host(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_host(v) for v in tree)
    return tree


def read_checkpoint(path, map_location="cpu", stamped=True):
    """Load a checkpoint, verifying its SHA-256 trailer and format stamp; BadCheckpoint names the path."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BadCheckpoint("checkpoint %s cannot be read: %s" % (path, e))
    cut = data.rfind(TRAILER)
    legacy = cut < 0 or len(data) - cut - len(TRAILER) != 64
    if legacy:  # written before checkpoints carried a digest (format 1): nothing to verify it against
        payload = data
    else:
        payload, digest = data[:cut], data[cut + len(TRAILER):].decode("ascii", "replace")
        if hashlib.sha256(payload).hexdigest() != digest:
            raise BadCheckpoint("checkpoint %s is corrupted (SHA-256 mismatch)" % path)
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - an unpicklable checkpoint is a bad checkpoint, whatever torch raises
        what = "is truncated or corrupted (no SHA-256 trailer, and" if legacy else "passed its SHA-256 check but"
        raise BadCheckpoint("checkpoint %s %s does not load: %s: %s)" % (path, what, type(e).__name__, str(e)[:200]))
    if not stamped:
        return state
    version = state.get("format_version") if isinstance(state, dict) else None
    if legacy and version is None and isinstance(state, dict) and "v_learner" in state:
        log.warning("checkpoint %s predates integrity digests (format 1): loaded unverified", path)
        return state
    if version != CKPT_FORMAT:
        raise BadCheckpoint("checkpoint %s has format version %r, this code reads %d (written by another version "
                            "of pql-scaling: resume it with that version)" % (path, version, CKPT_FORMAT))
    return state


class RunDir:
    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.ckpt_dir = os.path.join(self.path, "checkpoints")
        os.makedirs(self.ckpt_dir, exist_ok=True)
        self.metrics_path = os.path.join(self.path, "metrics.jsonl")
        self.superseded_path = os.path.join(self.path, "metrics.superseded.jsonl")
        self.metrics_rows = len(read_jsonl_lines(self.metrics_path))
        self.last_env_steps = None
        self._setup_file_log()

    def _setup_file_log(self):
        handler = logging.FileHandler(os.path.join(self.path, "train.log"))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(processName)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        self._handler = handler

    def write_config(self, cfg, facts):
        write_atomic(os.path.join(self.path, "config.yaml"), config_lib.to_yaml(cfg).encode())
        facts = dict(facts, python=platform.python_version(), torch=torch.__version__, host=socket.gethostname())
        write_json_atomic(os.path.join(self.path, "run.json"), facts)

    def update_facts(self, **facts):
        """Add facts known only once the run is going (e.g. startup_s) to run.json."""
        path = os.path.join(self.path, "run.json")
        if os.path.exists(path):
            with open(path) as f:
                old = json.load(f)
            write_json_atomic(path, dict(old, **facts))

    def set_status(self, status, reason=None, **extra):
        write_json_atomic(os.path.join(self.path, "status.json"),
                          dict(status=status, reason=reason, time=time.strftime("%Y-%m-%dT%H:%M:%S"), **extra))

    def append_metrics(self, row):
        """Append one log point whole (fsynced), or nothing: a failed write is cut back off the file.
        A row at the last row's env_steps (trio learners paid owed updates after it, no actor step between)
        is merged into that row: its counters, losses and clock win, but the episodes, returns and per-interval
        rates the earlier row measured are kept (the later one saw no episode and no env step; replacing the
        row lost the return of the log point that met `target_return`)."""
        if self.last_env_steps is not None and row["env_steps"] == self.last_env_steps:
            lines = read_jsonl_lines(self.metrics_path)
            prev = lines[-1][1] or {}
            merged = dict(prev)
            merged.update({k: v for k, v in row.items()
                           if v is not None and not k.endswith(("_per_s", "_frac")) and k != "episodes"})
            merged["episodes"] = (prev.get("episodes") or 0) + (row.get("episodes") or 0)
            write_atomic(self.metrics_path, "".join(x + "\n" for x, _ in lines[:-1]).encode() + (json.dumps(merged) + "\n").encode())
            return
        if self.last_env_steps is not None and row["env_steps"] < self.last_env_steps:
            raise RuntimeError("log point at env_steps=%d after one at %d: metrics.jsonl must increase"
                               % (row["env_steps"], self.last_env_steps))
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
        self.last_env_steps = row["env_steps"]

    def supersede(self, keep_rows, env_steps):
        """Make metrics.jsonl one timeline again after a crash: keep its first `keep_rows` log points (those the
        checkpoint being resumed had seen, none past its `env_steps`) and move the rest to
        metrics.superseded.jsonl, stamped with this resume's time. Returns (rows moved, env_steps of the last kept)."""
        lines = read_jsonl_lines(self.metrics_path)
        keep_rows = len(lines) if keep_rows is None else keep_rows
        kept = []
        for line, obj in lines[:keep_rows]:
            if obj is None or obj.get("env_steps") is None or obj["env_steps"] > env_steps:
                break
            if kept and obj["env_steps"] <= kept[-1][1]["env_steps"]:
                break
            kept.append((line, obj))
        moved = lines[len(kept):]
        if moved:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            extra = []
            for line, obj in moved:
                rec = dict(obj) if obj is not None else {"unparsable_line": line}
                rec.update(superseded_at=stamp, resumed_from_env_steps=env_steps)
                extra.append(json.dumps(rec) + "\n")
            with open(self.superseded_path, "a") as f:  # first keep them aside, then drop them here
                f.write("".join(extra))
                f.flush()
                os.fsync(f.fileno())
            write_atomic(self.metrics_path, "".join(line + "\n" for line, _ in kept).encode())
            log.warning("resume: %d log point(s) after the checkpoint (env_steps %d) moved to %s", len(moved),
                        env_steps, self.superseded_path)
        self.metrics_rows = len(kept)
        self.last_env_steps = kept[-1][1]["env_steps"] if kept else None
        return len(moved), self.last_env_steps

    @property
    def checkpoint_path(self):
        return os.path.join(self.ckpt_dir, "last.pt")

    @property
    def prev_checkpoint_path(self):
        return os.path.join(self.ckpt_dir, "prev.pt")

    def position(self):
        """Where metrics.jsonl stands: (rows written, env_steps of the last row), as a checkpoint records it."""
        return self.metrics_rows, self.last_env_steps

    def save_checkpoint(self, state, position=None):
        """last.pt -> prev.pt, the new one -> last.pt; each step atomic, so some good checkpoint always exists.
        A background writer passes the position() the state was taken at (rows logged since are not in it)."""
        rows, last = self.position() if position is None else position
        data = pack(dict(state, format_version=CKPT_FORMAT, metrics_rows=rows, last_log_env_steps=last))
        tmp = self.checkpoint_path + ".tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if os.path.exists(self.checkpoint_path):
                os.replace(self.checkpoint_path, self.prev_checkpoint_path)
            os.replace(tmp, self.checkpoint_path)
            fsync_dir(self.ckpt_dir)
        except OSError as e:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise disk_error(self.checkpoint_path, e) from e

    def load_checkpoint(self, map_location):
        """The newest checkpoint that verifies (last.pt, else prev.pt); each bad one is reported with its path."""
        bad = []
        for path in (self.checkpoint_path, self.prev_checkpoint_path):
            if not os.path.exists(path):
                continue
            try:
                state = read_checkpoint(path, map_location)
            except BadCheckpoint as e:
                log.error("%s", e)
                bad.append(str(e))
                continue
            if bad:
                log.warning("resuming from the previous checkpoint %s", path)
                if os.path.exists(self.checkpoint_path):  # kept for inspection, out of the rotation
                    os.replace(self.checkpoint_path, self.checkpoint_path + ".bad-" + time.strftime("%Y%m%d-%H%M%S"))
            state["loaded_from"] = path
            return state
        if bad:
            raise BadCheckpoint("no usable checkpoint in %s: %s; start a new run instead" % (self.ckpt_dir, "; ".join(bad)))
        raise FileNotFoundError("no checkpoint at %s: the run ended before its first checkpoint, so it cannot "
                                "be resumed; start a new run instead" % self.checkpoint_path)

    def close(self):
        log.removeHandler(self._handler)
        self._handler.close()


class WandbMirror:
    """Mirrors metrics to W&B. Any W&B failure is logged once and never stops training.

    wandb.init runs in a background thread: an unreachable server makes it wait up to `init_timeout_s`
    (W&B's own retries), and that wait must cost neither training speed nor the run's clock. Rows logged
    before it is up are buffered and sent once it is; if it fails or times out, W&B is off for the run.
    A resume that superseded log points rewinds the W&B run to the last kept step (W&B's `resume_from`,
    which archives the history after it) so W&B shows the same single timeline as metrics.jsonl."""

    def __init__(self, cfg, run_dir, run_id, rewind_to=None, rows_written=None):
        self.run, self.off, self.pending, self.error = None, True, [], None
        self.last_step = None
        w = cfg.wandb
        if w.mode == "disabled":
            return
        self.off = False
        self.t0, self.init_timeout_s = time.monotonic(), w.init_timeout_s
        self.rows_written = rows_written or (lambda: 0)
        self.done = threading.Event()
        kwargs = dict(project=w.project, entity=w.entity, group=w.group, tags=list(w.tags), name=w.name, mode=w.mode,
                      dir=run_dir, config=config_lib.to_dict(cfg), reinit=True)
        if rewind_to is not None:
            kwargs["resume_from"] = "%s?_step=%d" % (run_id, rewind_to + 1)  # keeps the row at rewind_to
        else:
            kwargs.update(id=run_id, resume="allow")
        self.thread = threading.Thread(target=self._init, args=(kwargs,), name="wandb-init", daemon=True)
        self.thread.start()

    def _init(self, kwargs):
        try:
            import wandb

            kwargs["settings"] = wandb.Settings(init_timeout=self.init_timeout_s)
            try:
                self._run = wandb.init(**kwargs)
            except Exception as e:  # noqa: BLE001
                if "resume_from" not in kwargs:
                    raise
                log.warning("W&B rewind (resume_from=%s) failed (%s: %s); resuming the W&B run without a rewind: "
                            "W&B drops the steps it already has", kwargs["resume_from"], type(e).__name__, e)
                run_id = kwargs.pop("resume_from").split("?")[0]
                self._run = wandb.init(id=run_id, resume="allow", **kwargs)
            # run.json's facts (critic_params, utd, flops per update, ...) too: analysis of a W&B project
            # reads model size and configured UTD from the run config, as from run.json locally
            facts_path = os.path.join(kwargs["dir"], "run.json")
            if os.path.exists(facts_path):
                with open(facts_path) as f:
                    facts = json.load(f)
                given = kwargs["config"]  # run.json's "algo" is the name; the config's, the whole section
                self._run.config.update({k: v for k, v in facts.items() if k not in given}, allow_val_change=True)
        except Exception as e:  # noqa: BLE001 - W&B must never stop training
            self.error = e
            log.warning("W&B init failed after %.1f s (%s: %s; %d log points written meanwhile); W&B is off for this "
                        "run, training continues and metrics stay in metrics.jsonl", time.monotonic() - self.t0,
                        type(e).__name__, str(e).strip()[:300], self.rows_written())
        self.done.set()

    def _fail(self, what, e):
        log.warning("W&B %s failed (%s: %s); W&B is off for this run, training continues and metrics stay in "
                    "metrics.jsonl", what, type(e).__name__, e)
        self.run, self.off, self.pending = None, True, []

    def _up(self, wait=0.0):
        """Is the W&B run up? Never blocks longer than `wait`; gives up after init_timeout_s."""
        if self.run is not None or self.off:
            return self.run is not None
        if not self.done.wait(wait):
            if time.monotonic() - self.t0 > self.init_timeout_s + 30:  # wandb's own timeout did not fire
                self._fail("init", TimeoutError("no answer in %.0f s" % (self.init_timeout_s + 30)))
            return False
        if self.error is not None:
            self.off, self.pending = True, []
            return False
        self.run = self._run
        rows, self.pending = self.pending, []
        for row in rows:
            self._send(row)
        return self.run is not None

    def _send(self, row):
        try:
            self.run.log({k: v for k, v in row.items() if v is not None}, step=int(row["env_steps"]))
            self.last_step = int(row["env_steps"])
        except Exception as e:  # noqa: BLE001
            self._fail("log", e)

    def log(self, row):
        if self.off:
            return
        if self._up():
            self._send(row)
        elif not self.off:
            self.pending.append(row)

    def finish(self, exit_code=0):
        """Send what is buffered (a short run may end before W&B is up: wait for its init, which gives up on its
        own after init_timeout_s, plus importing wandb and starting its service) and close the W&B run."""
        if self.off and self.run is None:
            return
        self._up(wait=max(0.0, self.init_timeout_s + 30 - (time.monotonic() - self.t0)))
        if self.run is None:
            if not self.off:
                self._fail("init", TimeoutError("not up when the run ended"))
            return
        try:
            self.run.finish(exit_code=exit_code)
        except Exception as e:  # noqa: BLE001
            self._fail("finish", e)


class Display:
    """A rich progress bar on a terminal; plain log lines otherwise (or when asked)."""

    def __init__(self, mode, total_steps, title):
        """total_steps None (no step cap) shows an indeterminate bar."""
        if mode == "auto":
            mode = "rich" if sys.stdout.isatty() else "plain"
        self.mode = mode
        self.progress = None
        if mode == "rich":
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                     TextColumn("{task.completed:>12,.0f} env steps"),
                                     TextColumn("return {task.fields[ret]}"), TextColumn("{task.fields[speed]}"),
                                     TimeElapsedColumn(), TimeRemainingColumn())
            self.progress.start()
            self.bar = self.progress.add_task(title, total=total_steps, ret="-", speed="")

    def update(self, row):
        ret = "-" if row["return_mean"] is None else "%.1f" % row["return_mean"]
        speed = "%.0f steps/s  %.0f upd/s  utd %.4f" % (row["env_steps_per_s"], row["critic_updates_per_s"], row["utd"])
        if self.progress is not None:
            self.progress.update(self.bar, completed=row["env_steps"], ret=ret, speed=speed)
        elif self.mode == "plain":
            print("steps %d  return %s  %s  t=%.1fs" % (row["env_steps"], ret, speed, row["wall_time_s"]), flush=True)

    def close(self):
        if self.progress is not None:
            self.progress.stop()
