"""The console while a run trains: a rich progress bar on a terminal, plain lines otherwise."""

import sys


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

            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:>12,.0f} env steps"),
                TextColumn("return {task.fields[ret]}"),
                TextColumn("{task.fields[speed]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self.progress.start()
            self.bar = self.progress.add_task(title, total=total_steps, ret="-", speed="")

    def update(self, row):
        ret = "-" if row["return_mean"] is None else "%.1f" % row["return_mean"]
        speed = "%.0f steps/s  %.0f upd/s  utd %.4f" % (
            row["env_steps_per_s"],
            row["critic_updates_per_s"],
            row["utd"],
        )
        if self.progress is not None:
            self.progress.update(self.bar, completed=row["env_steps"], ret=ret, speed=speed)
        elif self.mode == "plain":
            print(
                "steps %d  return %s  %s  t=%.1fs" % (row["env_steps"], ret, speed, row["wall_time_s"]),
                flush=True,
            )

    def close(self):
        if self.progress is not None:
            self.progress.stop()
