"""Read the records of an offline W&B run file (`run-<id>.wandb`) so tests can see what W&B was sent.

The file is LevelDB's log format (32 KiB blocks of checksum, length, type, data; a 7-byte "W&B" header)
holding wandb_internal_pb2.Record messages; wandb 0.31 ships no Python reader for it, hence these lines."""
import glob
import os
import struct


def records(path):
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, buf = open(path, "rb").read(), 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if n == 0 and kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + n], pos + 7 + n
        if kind in (1, 4):
            r = pb.Record()
            r.ParseFromString(buf + chunk if kind == 4 else chunk)
            buf = b""
            yield r
        elif kind == 2:
            buf = chunk
        elif kind == 3:
            buf += chunk


def offline_runs(run_dir):
    """[(history steps, branch point step or None)] for every offline W&B run under run_dir, oldest first."""
    out = []
    for f in sorted(glob.glob(os.path.join(run_dir, "wandb", "offline-run-*", "*.wandb"))):
        steps, branch = [], None
        for r in records(f):
            kind = r.WhichOneof("record_type")
            if kind == "history":
                steps.append(r.history.step.num)
            elif kind == "run" and r.run.branch_point.run:
                branch = int(r.run.branch_point.value)
        out.append((steps, branch))
    return out
