"""The console while a run trains: on a terminal a rich bar with the live line beside it, log messages printed
above it (never inside its line); without one (CI, SLURM logs) the same line every `every_s` seconds.
The lines themselves are console_lines.py's pure functions: a run's line from its log points (Display.update),
or a line made elsewhere, a population's (Display.show). Records logged in another process (the trio's
learners) reach the console through `to_console`."""

import logging
import sys
import time
from typing import Any, Dict, List, Optional

from pql_scaling.rundir.console_lines import Live, due, fold, line


class ConsoleHandler(logging.Handler):
    """A logging handler that prints through a rich console: while the bar is live, rich clears the bar's line,
    prints the message and redraws the bar below it."""

    def __init__(self, console: Any, like: Optional[logging.Handler] = None) -> None:
        super().__init__(like.level if like is not None else logging.NOTSET)
        self.console = console
        if like is not None and like.formatter is not None:
            self.setFormatter(like.formatter)
        for f in like.filters if like is not None else ():
            self.addFilter(f)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:  # noqa: BLE001 - logging never raises into the caller
            self.handleError(record)


def to_console(levelno: int, text: str, name: str = "pql_scaling") -> None:
    """A log record made in another process (already in the run's log file) printed where this process's own
    records of logger `name` print on the console: by its terminal handlers, or above the live bar while one is
    up; never to a file. Nothing is printed where `name`'s level or no console handler would show it."""
    logger = logging.getLogger(name)
    if not logger.isEnabledFor(levelno):
        return
    record = logger.makeRecord(name, levelno, "(another process)", 0, text, None, None)
    for h in console_handlers(logger):
        if levelno >= h.level:
            h.handle(record)


def console_handlers(logger: logging.Logger) -> List[logging.Handler]:
    """The handlers a record of `logger` reaches that print on the console (a terminal's, or the live bar's
    stand-ins), through propagation, as logging.Logger.callHandlers walks them."""
    out: List[logging.Handler] = []
    node: Optional[logging.Logger] = logger
    while node is not None:
        out += [h for h in node.handlers if isinstance(h, ConsoleHandler)] + _terminal_handlers(node)
        node = node.parent if node.propagate else None
    return out


def _terminal_handlers(logger: logging.Logger) -> List[logging.Handler]:
    """The logger's handlers that write to the terminal (not files): the bar must route them."""
    streams = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    return [
        h
        for h in logger.handlers
        if type(h) is logging.StreamHandler and getattr(h, "stream", None) in streams  # noqa: E721
    ]


class Display:
    """mode: auto (rich on a terminal, plain otherwise), rich, plain or off. total_steps None (no step cap)
    shows an indeterminate bar."""

    def __init__(
        self,
        mode: str,
        total_steps: Optional[int],
        title: str,
        max_time_s: Optional[float] = None,
        every_s: float = 10.0,
    ) -> None:
        if mode == "auto":
            mode = "rich" if sys.stdout.isatty() else "plain"
        self.mode, self.title, self.total_steps, self.max_time_s = mode, title, total_steps, max_time_s
        self.every_s = every_s
        self.printed_at: Optional[float] = None
        self.live = Live()
        self.progress: Any = None
        self.swapped: List[Any] = []  # (logger, terminal handler, its console stand-in)
        if mode == "rich":
            self._start_rich(total_steps, title)

    def _start_rich(self, total_steps: Optional[int], title: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn
        from rich.table import Column

        self.console = Console(file=sys.stdout)
        narrow = self.console.width < 120  # the line wraps beside a shorter bar rather than losing its end
        self.progress = Progress(
            TextColumn("[bold]{task.description}", table_column=Column(no_wrap=True, min_width=len(title))),
            BarColumn(bar_width=10 if narrow else 20),
            TextColumn("{task.fields[line]}", markup=False, table_column=Column(ratio=1, overflow="fold")),
            console=self.console,
            refresh_per_second=4,
        )
        self.progress.start()
        self.bar = self.progress.add_task(title, total=total_steps, line="starting")
        for logger in (logging.getLogger(), logging.getLogger("pql_scaling")):
            for h in _terminal_handlers(logger):
                stand_in = ConsoleHandler(self.console, like=h)
                logger.removeHandler(h)
                logger.addHandler(stand_in)
                self.swapped.append((logger, h, stand_in))

    def line(self) -> str:
        return line(self.live, self.total_steps, self.max_time_s)

    def update(self, row: Dict[str, Any], now: Optional[float] = None) -> None:
        """A run's log point: its live line, folded from the log points so far."""
        self.live = fold(self.live, row)
        self.show(self.line(), self.live.env_steps, now, prefix="[%s] " % self.title)

    def show(self, text: str, completed: int, now: Optional[float] = None, prefix: str = "") -> None:
        """`text` as the live line (a population's, say), the bar at `completed` env steps; without a terminal
        `prefix` + `text` printed, the first time and then once every `every_s` seconds."""
        if self.progress is not None:
            self.progress.update(self.bar, completed=completed, line=text)
        elif self.mode == "plain":
            now = time.monotonic() if now is None else now
            if due(self.printed_at, now, self.every_s):
                self.printed_at = now
                print(prefix + text, flush=True)

    def close(self, last: Optional[str] = None) -> None:
        """The bar stays on the screen as it ends; `last`, a final line (a population's): beside that bar on a
        terminal, printed otherwise (whatever the mode)."""
        if self.progress is not None:
            if last is not None:
                self.progress.update(self.bar, line=last)
            self.progress.stop()
            self.progress = None
        elif last is not None:
            print(last, flush=True)
        for logger, handler, stand_in in self.swapped:
            logger.removeHandler(stand_in)
            logger.addHandler(handler)
        self.swapped = []
