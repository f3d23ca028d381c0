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

from pql_scaling.runlog import BadCheckpoint, log, pack, read_checkpoint, write_atomic

NAME = re.compile(r"^seg-(\d+)-(\d+)\.pt$")


class ReplayStore:
    def __init__(self, ckpt_dir, capacity):
        self.dir = os.path.join(ckpt_dir, "replay")
        os.makedirs(self.dir, exist_ok=True)
        self.capacity = int(capacity)
        self.saved = 0  # rows of the timeline on disk

    def segments(self):
        out = []
        for name in os.listdir(self.dir):
            m = NAME.match(name)
            if m:
                out.append((int(m.group(1)), int(m.group(2)), os.path.join(self.dir, name)))
        return sorted(out)

    def save(self, replay):
        """Write the rows written since the last save (at most the last `capacity`) as one new segment."""
        start, end = max(self.saved, replay.rows - self.capacity), replay.rows
        if end > start:
            idx = torch.arange(start, end, device=replay.device) % self.capacity
            data = {k: v.index_select(0, idx).cpu() for k, v in replay.data.items()}
            write_atomic(os.path.join(self.dir, "seg-%015d-%015d.pt" % (start, end)), pack({"data": data}))
        self.saved = end

    def prune(self, keep_from):
        """Delete the segments that a checkpoint at `keep_from` rows (the oldest one kept) no longer needs."""
        for start, end, path in self.segments():
            if end <= keep_from - self.capacity:
                os.remove(path)

    def load(self, replay, rows):
        """Fill `replay` with the timeline's rows [rows - capacity, rows); False (replay left empty) if any is missing."""
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
                a, b = max(start, lo), min(end, rows)
                idx = torch.arange(a, b, device=replay.device) % self.capacity
                for k, v in data.items():
                    replay.data[k].index_copy_(0, idx, v[a - start:b - start].to(replay.device))
                covered = max(covered, b)
        except BadCheckpoint as e:
            log.error("%s", e)
        if covered < rows:
            log.warning("replay segments in %s cover rows up to %d of the %d needed: the replay refills before "
                        "learning resumes", self.dir, covered, rows)
            replay.rows, self.saved = 0, 0
            for _, _, path in self.segments():
                os.remove(path)
            return False
        replay.rows, self.saved = rows, rows
        log.info("replay restored: %d rows from %s", min(rows, self.capacity), self.dir)
        return True
