"""The replay on disk, cheaply: append-only segments, each holding only the rows written since the checkpoint
before it, so a resumed run starts with the replay it had instead of an empty one (whose refill bends the curve).

    checkpoints/replay/seg-<start>-<end>.pt   rows [start, end) of the run's row timeline (row r sits at ring
                                              slot r % capacity), SHA-256 trailer as checkpoints have

A checkpoint at R rows needs the rows [R - capacity, R). Segments no kept checkpoint (last.pt, prev.pt) needs
are deleted after each checkpoint, so the folder holds at most one replay plus two checkpoint intervals.
Segments past the checkpoint a resume starts from belong to the superseded timeline and are deleted.
"""

import os
import re

import torch

from pql_scaling.rundir.disk import BadCheckpoint, UnsafeCheckpoint, log, pack, read_checkpoint, write_atomic

NAME = re.compile(r"^seg-(\d+)-(\d+)\.pt$")


class ReplayStore:
    def __init__(self, ckpt_dir, capacity):
        self.dir = os.path.join(ckpt_dir, "replay")
        os.makedirs(self.dir, exist_ok=True)
        self.capacity = int(capacity)
        self.saved = 0  # rows of the timeline on disk
        self.pinned = {}  # field -> a pinned host buffer that GPU rows are copied into (reused across checkpoints)

    def segments(self):
        out = []
        for name in os.listdir(self.dir):
            m = NAME.match(name)
            if m:
                out.append((int(m.group(1)), int(m.group(2)), os.path.join(self.dir, name)))
        return sorted(out)

    def save(self, replay):
        """Write the rows written since the last save (at most the last `capacity`) as one new segment."""
        self.write(self.take(replay))

    def take(self, replay):
        """The rows written since the last save (at most the last `capacity`), copied to host memory now, so the
        actor may overwrite them as soon as this returns; write() puts them on disk (on any thread).

        The rows [start, end) sit in at most two contiguous pieces of the ring. From a GPU they are copied into a
        pinned host buffer (kept for the next checkpoint) with one wait for the copies: a fraction of a second
        for gigabytes, where a gather, a pageable copy and the serialisation on the actor's thread took seconds
        to a minute."""
        start, end = max(self.saved, replay.rows - self.capacity), replay.rows
        self.saved = end
        if end <= start:
            return None
        a = start % self.capacity
        pieces = [(a, min(a + end - start, self.capacity))]
        if pieces[0][1] - a < end - start:
            pieces.append((0, end - start - (pieces[0][1] - a)))
        data = {}
        for k, v in replay.data.items():
            if v.device.type == "cuda":
                out = self._pinned(k, (end - start,) + tuple(v.shape[1:]), v.dtype)
                at = 0
                for lo, hi in pieces:
                    out[at : at + hi - lo].copy_(v[lo:hi], non_blocking=True)
                    at += hi - lo
                data[k] = out
            else:
                data[k] = torch.cat([v[lo:hi] for lo, hi in pieces])
        if any(v.device.type == "cuda" for v in replay.data.values()):
            torch.cuda.current_stream(replay.device).synchronize()
        return start, end, data

    def _pinned(self, key, shape, dtype):
        buf = self.pinned.get(key)
        if buf is None or buf.shape[0] < shape[0] or tuple(buf.shape[1:]) != shape[1:]:
            buf = self.pinned[key] = torch.empty(shape, dtype=dtype, pin_memory=True)
        return buf[: shape[0]]

    def write(self, segment):
        """Write what take() returned as one new segment file (atomic, with a SHA-256 trailer)."""
        if segment is None:
            return
        start, end, data = segment
        # a view of a larger pinned buffer would serialise the whole buffer: save exactly the rows
        data = {
            k: v if v.untyped_storage().nbytes() == v.numel() * v.element_size() else v.clone()
            for k, v in data.items()
        }
        write_atomic(os.path.join(self.dir, "seg-%015d-%015d.pt" % (start, end)), pack({"data": data}))

    def prune(self, keep_from):
        """Delete the segments that a checkpoint at `keep_from` rows (the oldest one kept) no longer needs."""
        for start, end, path in self.segments():
            if end <= keep_from - self.capacity:
                os.remove(path)

    def load(self, replay, rows):
        """Fill `replay` with the timeline's rows [rows - capacity, rows); False (replay left empty) if any is
        missing."""
        for start, end, path in self.segments():
            if start >= rows:  # written after the checkpoint we resume from: a superseded timeline
                os.remove(path)
        lo = covered = max(rows - self.capacity, 0)
        try:
            for start, end, path in self.segments():
                if end <= lo:
                    continue
                if start > covered:
                    break
                data = read_checkpoint(path, "cpu", stamped=False)["data"]
                if set(data) != set(replay.data):  # e.g. written before the env had critic observations
                    raise ValueError(
                        "replay segment %s holds the fields %s, but this run's replay has %s (critic "
                        "observations differ): start a new run, or resume with the env it was written with"
                        % (path, sorted(data), sorted(replay.data))
                    )
                a, b = max(start, lo), min(end, rows)
                idx = torch.arange(a, b, device=replay.device) % self.capacity
                for k, v in data.items():
                    replay.data[k].index_copy_(0, idx, v[a - start : b - start].to(replay.device))
                covered = max(covered, b)
        except UnsafeCheckpoint:
            raise  # tampered with: the resume stops, as for the checkpoint itself
        except BadCheckpoint as e:
            log.error("%s", e)
        if covered < rows:
            log.warning(
                "replay segments in %s cover rows up to %d of the %d needed: the replay refills before "
                "learning resumes",
                self.dir,
                covered,
                rows,
            )
            replay.rows, self.saved = 0, 0
            for _, _, path in self.segments():
                os.remove(path)
            return False
        replay.rows, self.saved = rows, rows
        log.info("replay restored: %d rows from %s", min(rows, self.capacity), self.dir)
        return True
