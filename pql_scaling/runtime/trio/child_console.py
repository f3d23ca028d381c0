"""The learners' console: what a learner process logs or writes to its stderr reaches the user through the main
process's console (above the live bar on a terminal, never inside its line), and nothing is lost when a
learner dies.

Each learner's stderr (file descriptor 2) is a pipe to the main process, set before the learner does anything
else (`redirect_stderr`). A learner writes each log record twice: to the run's train.log itself (so the record
survives the main process too) and to its stderr as one marked line, [level, text] in JSON (`child_logging`).
In the main process a thread per learner reads its pipe (`StderrPump`): a marked line is printed by the
console's handlers only (`display.to_console`: train.log has it already); anything else the learner wrote to
its stderr (a warning, a crash's traceback, a library's message) is logged as a warning naming the learner,
to the console and train.log alike. What a learner wrote before it died is still in the pipe: the thread reads
to the end of it, and `StderrPump.close` waits for that before the run's summary.
"""

import json
import logging
import os
import select
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from pql_scaling.rundir.display import to_console

log = logging.getLogger("pql_scaling")

MARK = "\x1e"  # starts a line that is a log record (already in train.log), not raw stderr
FILE_FORMAT = "%(asctime)s %(levelname)s %(processName)s: %(message)s"  # train.log's, as rundir.py writes it


class _Wire(logging.Formatter):
    """A record as one marked line: MARK + JSON [levelno, message with its traceback]."""

    def format(self, record: logging.LogRecord) -> str:
        return MARK + json.dumps([record.levelno, super().format(record)])


def redirect_stderr(stderr: Any) -> None:
    """In a learner: make `stderr` (the write end of its pipe, a multiprocessing Connection) its file
    descriptor 2, so that everything written there, by Python or by a library's C code, reaches the main
    process."""
    if stderr is None:
        return
    if sys.stderr is not None:
        sys.stderr.flush()
    os.dup2(stderr.fileno(), 2)
    stderr.close()


def child_logging(logger: logging.Logger, log_path: str) -> List[logging.Handler]:
    """In a learner: `logger`'s records to train.log and, marked, to stderr (the main process's console)."""
    to_file = logging.FileHandler(log_path)
    to_file.setFormatter(logging.Formatter(FILE_FORMAT))
    to_main = logging.StreamHandler(sys.stderr)
    to_main.setFormatter(_Wire("%(message)s"))
    for h in (to_file, to_main):
        logger.addHandler(h)
    logger.setLevel(logging.INFO)
    return [to_file, to_main]


def parse(lines: List[str]) -> List[Tuple[Optional[int], str]]:
    """Lines read from a learner's stderr as (level, text): a marked line is a record (its level); the raw
    lines between two records are one block (level None)."""
    out: List[Tuple[Optional[int], str]] = []
    raw: List[str] = []
    for line in lines:
        record = _record(line)
        if record is None:
            raw.append(line)
            continue
        if raw:
            out.append((None, "\n".join(raw)))
            raw = []
        out.append(record)
    if raw:
        out.append((None, "\n".join(raw)))
    return out


def _record(line: str) -> Optional[Tuple[int, str]]:
    if not line.startswith(MARK):
        return None
    try:
        level, text = json.loads(line[len(MARK) :])
        return int(level), str(text)
    except (ValueError, TypeError):
        return None


class StderrPump:
    """In the main process: one pipe per learner (`pipe`), read by a thread (`started`) until every writer
    closed it (the learner ended, however)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.ends: Dict[str, Any] = {}  # role -> (read end, write end) until the learner started
        self.threads: List[threading.Thread] = []
        self.ended = threading.Event()  # the learners have ended: read what is in the pipes, then stop

    def pipe(self, role: str) -> Any:
        """The write end to hand to `role`'s process."""
        r, w = self.ctx.Pipe(duplex=False)
        self.ends[role] = (r, w)
        return w

    def started(self, role: str) -> None:
        """`role`'s process has its copy of the write end: close ours (so the pipe ends with the learner) and
        read it."""
        r, w = self.ends.pop(role)
        w.close()
        t = threading.Thread(target=self._pump, args=(role, r), name="stderr-" + role, daemon=True)
        t.start()
        self.threads.append(t)

    def _pump(self, role: str, conn: Any) -> None:
        pending, fd = b"", conn.fileno()
        try:
            while True:
                ended = self.ended.is_set()  # before the look: all the learner wrote is in the pipe by then
                if not select.select([fd], [], [], 0 if ended else 0.1)[0]:
                    if ended:  # all read (a process the learner started may hold the pipe: not waited for)
                        break
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                self._emit(role, lines)
            if pending:
                self._emit(role, [pending])
        except Exception as e:  # noqa: BLE001 - the learner's train.log still has its records
            log.warning("trio: %s's stderr could not be read (%s: %s)", role, type(e).__name__, e)
        finally:
            conn.close()

    @staticmethod
    def _emit(role: str, lines: List[bytes]) -> None:
        for level, text in parse([x.decode("utf-8", "replace").rstrip("\r") for x in lines]):
            if level is not None:
                to_console(level, text)
            elif text.strip():
                log.warning("trio: %s wrote on its stderr:\n%s", role, text)

    def close(self, timeout_s: float = 5.0) -> None:
        """Once the learners have ended: print what they wrote, to its end (`timeout_s` at most); unused pipes
        closed."""
        for r, w in self.ends.values():
            r.close()
            w.close()
        self.ends = {}
        self.ended.set()
        end = time.monotonic() + timeout_s
        for t in self.threads:
            t.join(max(0.0, end - time.monotonic()))
        self.threads = []
