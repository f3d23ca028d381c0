"""Run-directory files on disk: atomic fsynced writes, the checkpoint format (a SHA-256 trailer, a format
stamp), disk-full errors that name the file system, and the reader of JSONL logs.

Every file a reader takes whole (checkpoints, status, run.json, config.yaml, rewritten metrics) is written
to a temporary name, fsynced, renamed over the old one and its directory fsynced: a crash or a full disk
leaves the old file or the new one, never a half. Checkpoints end with a SHA-256 trailer (torch.load ignores
it), so a truncated or corrupted checkpoint is detected and resume falls back to prev.pt. They hold tensors and
plain containers and types only (no pickled objects) and are loaded with torch.load(weights_only=True): a
checkpoint from elsewhere (a shared file system, a downloaded run) whose pickle would build any other object,
and so could run code, is refused (UnsafeCheckpoint) before anything in it runs.
"""

import errno
import functools
import hashlib
import io
import json
import logging
import operator
import os
import pickle
import re
import shutil
import threading

import torch

log = logging.getLogger("pql_scaling")
CKPT_FORMAT = 3  # bump when a checkpoint's layout changes incompatibly (3: loads weights-only)
TRAILER = b"\nPQL-SHA256:"  # + 64 hex digits
# (vermin reads `a | b` as a 3.10 type union)
APPEND = functools.reduce(operator.or_, (os.O_WRONLY, os.O_APPEND, os.O_CREAT))


class DiskFull(RuntimeError):
    """A write failed for lack of space (or quota); the message names the disk."""


class BadCheckpoint(ValueError):
    pass


class UnsafeCheckpoint(BadCheckpoint):
    """A checkpoint whose pickle names something other than tensors and plain containers: never loaded, and
    no fallback to prev.pt either (a run directory someone tampered with is not resumed at all)."""


def disk_error(path, e):
    """A DiskFull naming the file system of `path` when `e` is ENOSPC / EDQUOT, else `e` itself."""
    if getattr(e, "errno", None) not in (errno.ENOSPC, errno.EDQUOT):
        return e
    d = os.path.dirname(os.path.abspath(path))
    try:
        free = shutil.disk_usage(d).free
    except OSError:
        free = -1
    return DiskFull(
        "disk full writing %s (the file system holding %s has %.1f MB free): free space there or "
        "move the run directory, then continue with resume=RUN_DIR; the previous checkpoint is "
        "intact" % (path, d, free / 1e6)
    )


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path, data, keep_prev=None, unique_tmp=False):
    """Write bytes to `path` so a reader sees the old file or the whole new one (fsynced), never a part.
    `keep_prev`: the old file is first renamed there (last.pt -> prev.pt), so some good copy always exists.
    `unique_tmp`: a temporary name per process and thread, for a file several writers may replace at once
    (a sweep's manifest.json). A failure removes the temporary file; a full disk raises DiskFull naming
    `path`."""
    tmp = "%s.%d.%d.tmp" % (path, os.getpid(), threading.get_ident()) if unique_tmp else path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if keep_prev is not None and os.path.exists(path):
            os.replace(path, keep_prev)
        os.replace(tmp, path)
        fsync_dir(os.path.dirname(os.path.abspath(path)))
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise disk_error(path, e) from e


def write_json_atomic(path, obj):
    write_atomic(path, json.dumps(obj, indent=1).encode())


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
    """torch.save bytes followed by their SHA-256 (torch.load on the file still works: it ignores the
    trailer)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    return payload + TRAILER + hashlib.sha256(payload).hexdigest().encode()


def to_host(tree):
    """A copy of a nested state with every tensor on the CPU (a background writer must not see later
    updates)."""
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
    if cut < 0 or len(data) - cut - len(TRAILER) != 64:
        raise BadCheckpoint("checkpoint %s is truncated or corrupted (no SHA-256 trailer)" % path)
    payload, digest = data[:cut], data[cut + len(TRAILER) :].decode("ascii", "replace")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise BadCheckpoint("checkpoint %s is corrupted (SHA-256 mismatch)" % path)
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:  # torch's weights-only unpickler refused something
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        raise UnsafeCheckpoint(
            "checkpoint %s holds %s, not only tensors and plain containers: refused unloaded, since unpickling "
            "it could run code. pql-scaling never writes one (an older version's, format 2, held Fractions: "
            "resume it with that version); if it came from someone else, start a new run instead"
            % (path, found.group(1) if found else "a Python object")
        )
    except Exception as e:  # noqa: BLE001 - an unpicklable checkpoint is bad, whatever torch raises
        raise BadCheckpoint(
            "checkpoint %s passed its SHA-256 check but does not load: %s: %s)"
            % (path, type(e).__name__, str(e)[:200])
        )
    if not stamped:
        return state
    version = state.get("format_version") if isinstance(state, dict) else None
    if version != CKPT_FORMAT:
        raise BadCheckpoint(
            "checkpoint %s has format version %r, this code reads %d (written by another "
            "version of pql-scaling: resume it with that version)" % (path, version, CKPT_FORMAT)
        )
    return state
