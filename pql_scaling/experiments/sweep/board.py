"""The launcher's view of a sweep: one cached row per run, the manifest (manifest.json, rewritten atomically)
and the live display (a rich table on a terminal, one plain line per finished run otherwise)."""

import json
import os
import sys
import threading
import time

from omegaconf import OmegaConf

from pql_scaling.experiments.sweep.state import _row, run_state
from pql_scaling.rundir import schema
from pql_scaling.rundir.console_lines import progress
from pql_scaling.rundir.disk import write_atomic

STATES = ("queued", "running", "completed", "stopped", "failed")


class Board:
    """The launcher's view: one cached row per run, the manifest (rewritten atomically on every change) and
    the live display (a rich table on a terminal, one plain line per finished run otherwise)."""

    def __init__(self, spec, runs, live="auto", todo=None):
        self.spec, self.lock = spec, threading.Lock()
        self.todo, self.t0 = len(runs) if todo is None else todo, time.monotonic()  # this launch's share
        self.runs = {r.path: r for r in runs}
        self.cache = {r.path: _row(r, probe=False) for r in runs}
        self.mine, self.written = set(), 0.0
        self.finished = 0
        self.mode = ("rich" if sys.stdout.isatty() else "plain") if live == "auto" else live
        self.live = None
        if self.mode == "rich":
            from rich.live import Live

            self.live = Live(self.table(), refresh_per_second=1, vertical_overflow="ellipsis")
            self.live.start()

    def rows(self):
        return list(self.cache.values())

    def progress(self):
        """This launch's runs done / to do, elapsed and time left."""
        return progress(self.finished, self.todo, time.monotonic() - self.t0)

    def table(self):
        return status_table(self.rows(), self.spec.name, self.progress())

    def _set(self, path, state, reason, launches=0):
        self.cache[path] = _row(
            self.runs[path], state, reason, self.cache[path]["launches"] + launches, probe=False
        )
        self.mine.add(path)
        if time.monotonic() - self.written > 1.0:  # a derived view: throttled; launch() writes the final one
            self.write()

    def write(self, final=False):
        """Rows this launcher did not touch are re-read from disk: another launcher may be running them."""
        for path, run in self.runs.items():
            if final or path not in self.mine:
                st = run_state(path, probe=final)
                if final or st[0] != self.cache[path]["state"]:
                    self.cache[path] = _row(run, st[0], st[1], self.cache[path]["launches"], probe=False)
        write_manifest(self.spec, self.rows())
        self.written = time.monotonic()

    def update(self, run, state, reason=None):
        with self.lock:
            self._set(run.path, state, reason)
        self.refresh()

    def done(self, row):
        with self.lock:
            if row["state"] == "busy":
                self._set(row["path"], "running", "held by another process", row["launches"])
            else:
                self._set(row["path"], row["state"], row["reason"], row["launches"])
                self.finished += 1
            done = self.progress()  # read under the lock: runs finish on several threads
        if self.mode == "plain":
            why = ("  (%s)" % row["reason"]) if row["state"] != "completed" and row["reason"] else ""
            print("[%s] %-9s %s%s" % (done, row["state"], row["name"], why), flush=True)
        self.refresh()

    def note(self, text):
        if self.mode == "plain":
            print(text, flush=True)

    def refresh(self):
        if self.live is not None:
            with self.lock:  # running rows: fresh env steps and returns
                for path, row in self.cache.items():
                    if row["state"] == "running":
                        self.cache[path] = _row(
                            self.runs[path], "running", row["reason"], row["launches"], probe=False
                        )
                table = self.table()
            self.live.update(table)

    def close(self):
        if self.live is not None:
            self.refresh()
            self.live.stop()


def write_manifest(spec, rows):
    """manifest.json, replaced atomically (a temporary file per process and thread: launchers may share
    it)."""
    os.makedirs(spec.out, exist_ok=True)
    manifest = {
        "name": spec.name,
        "out": spec.out,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "spec": OmegaConf.to_container(OmegaConf.structured(spec)),
        "runs": rows,
    }
    write_atomic(
        os.path.join(spec.out, "manifest.json"), json.dumps(manifest, indent=1).encode(), unique_tmp=True
    )


def totals(rows):
    t = {s: 0 for s in STATES}
    for r in rows:
        t[r["state"]] = t.get(r["state"], 0) + 1
    return t


def status_table(rows, title, progress=None):
    from rich.table import Table

    counts = "  ".join("%s %d" % kv for kv in totals(rows).items() if kv[1])
    t = Table(title="sweep %s: %s%s" % (title, counts, "\n" + progress if progress else ""))
    for col in ("run", "state", "env steps", "return", "wall s"):
        t.add_column(col, justify="left" if col in ("run", "state") else "right")
    for r in rows:
        steps, ret, wall = r[schema.ENV_STEPS], r[schema.RETURN_MEAN], r[schema.WALL_TIME_S]
        t.add_row(
            r["name"],
            r["state"],
            "-" if steps is None else "{:,}".format(steps),
            "-" if ret is None else "%.1f" % ret,
            "-" if wall is None else "%.0f" % wall,
        )
    return t
