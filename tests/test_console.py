"""The console a user sees (issue 25): the live line and the summary as pure functions of log points, the plain
(no terminal) cadence, `pql-scale runs`, and a short training run in a pseudo-terminal, read back as a screen."""

import fcntl
import json
import logging
import multiprocessing
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

from pql_scaling.rundir import console_lines as cl
from pql_scaling.rundir import summary
from pql_scaling.rundir.display import ConsoleHandler, Display, to_console
from pql_scaling.runtime.trio import child_console

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def row(steps, ret=None, ev=None, wall=None, sps=1000.0, ups=50.0):
    r = {
        "env_steps": steps,
        "critic_updates": steps // 16,
        "utd": 1 / 16,
        "wall_time_s": steps / 1000.0 if wall is None else wall,
        "return_mean": ret,
        "env_steps_per_s": sps,
        "critic_updates_per_s": ups,
    }
    if ev is not None:
        r["eval_return_mean"] = ev
    return r


# ------------------------------------------------------------------------------------------- the live line
def test_the_latest_return_is_kept_with_its_age_until_a_newer_one():
    rows = [row(800), row(1600, ret=-1200.0), row(2400), row(3200), row(20000, wall=20.0)]
    live = cl.fold_all(rows[:4])
    assert (live.ret, live.ret_at, live.best) == (-1200.0, 1600, -1200.0)
    text = cl.line(live, max_env_steps=8000)
    assert "3200/8000 env steps" in text and "return -1200.0 (1600 ago)" in text and "best -1200.0" in text
    assert "return -1200.0 (18.4k ago)" in cl.line(cl.fold_all(rows))
    # on the log point that measured it, no age
    assert "return -1200.0  best" in cl.line(cl.fold_all(rows[:2]))
    # before any episode ended: a dash, not a number
    assert "return -  best -" in cl.line(cl.fold_all(rows[:1]))


def test_best_and_eval_returns_and_their_ages():
    rows = [row(400, ret=-900.0, ev=-800.0), row(800, ret=-1000.0), row(1200, ret=-950.0)]
    live = cl.fold_all(rows)
    assert live.best == -900.0 and live.ret == -950.0
    text = cl.line(live)
    assert "best -900.0" in text and "eval -800.0 (800 ago)" in text
    assert "eval" not in cl.line(cl.fold_all([row(400, ret=-1.0)]))  # no evaluation configured: no field


def test_rates_utd_elapsed_and_the_nearer_stop_condition():
    live = cl.fold_all([row(1000, sps=1000.0, ups=40.0, wall=30.0)])
    text = cl.line(live, max_env_steps=61000)
    assert "1,000 steps/s 40 upd/s" in text and "utd 0.0625" in text
    assert "0:30 elapsed, 1:00 left" in text  # 60,000 steps at 1,000/s
    assert "0:30 elapsed, 0:15 left" in cl.line(live, max_env_steps=61000, max_time_s=45)
    assert cl.remaining_s(live, None, None) is None and "-:-- left" in cl.line(live)
    # the rates are smoothed: one slow interval moves them part of the way
    slow = cl.fold(live, row(1100, sps=100.0, ups=4.0))
    assert 100.0 < slow.steps_per_s < 1000.0


def test_short_numbers_and_clock():
    assert [cl.steps_text(n) for n in (950, 10400, 2312000)] == ["950", "10.4k", "2.31M"]
    assert [cl.clock(s) for s in (5, 65, 3723, None)] == ["0:05", "1:05", "1:02:03", "-:--"]


def test_several_members_show_median_min_and_max():
    assert cl.returns_text([-100.0]) == "-100.0"
    assert cl.returns_text([-100.0, -300.0, -200.0, None]) == "-200.0 [-300.0, -100.0]"
    assert cl.returns_text([None, None]) == "-"
    assert cl.returns_text([-100.0], spread=True) == "-100.0 [-100.0, -100.0]"


def test_the_population_line_and_its_live_bar(capsys):
    """One line per population (runtime/population.py shows it): env steps per member, the members' latest
    returns as median [min, max] over those that have one (how many), evaluation alike, members still training,
    the clock; beside the bar on a terminal, printed every every_s without one."""
    latest = {"return_mean": {0: -300.0, 1: -200.0, 2: -1000.0}, "eval_return_mean": {}}
    text = cl.population_line(12800, 200000, latest, 3, 12.4)
    assert text.startswith("population: 12,800/200,000 env steps per member")
    assert "return median -300.0 [-1000.0, -200.0] (3)" in text and "eval" not in text
    assert text.endswith("3 training  12 s")
    latest = {"return_mean": {1: -50.0}, "eval_return_mean": {0: -150.0, 1: -250.0}}
    text = cl.population_line(400, None, latest, 1, 1.0)
    assert text.startswith("population: 400 env steps per member  return median -50.0 [-50.0, -50.0] (1)")
    assert "eval median -200.0 [-250.0, -150.0] (2)  1 training" in text
    assert "return -  2 training" in cl.population_line(0, None, {}, 2, 0.0)
    # without a terminal: the line as it is, the first time and then every every_s
    d = Display("plain", 1000, "pendulum", every_s=10.0)
    for now, steps in ((0.0, 100), (5.0, 200), (10.0, 300)):
        d.show(cl.population_line(steps, 1000, latest, 2, now), steps, now=now)
    d.close()
    lines = capsys.readouterr().out.splitlines()
    assert [x.split()[1] for x in lines] == ["100/1,000", "300/1,000"]
    # on a terminal: the bar at the env steps per member, the line beside it
    d = Display("rich", 1000, "pendulum")
    try:
        d.show("population: 300/1,000 env steps per member", 300)
        task = d.progress.tasks[0]
        assert (task.completed, task.fields["line"]) == (300, "population: 300/1,000 env steps per member")
    finally:
        d.close()


def test_without_a_terminal_one_line_every_every_s(capsys):
    d = Display("plain", 10000, "pendulum", every_s=10.0)
    for i, now in enumerate([0.0, 3.0, 9.9, 10.0, 12.0, 25.0]):
        d.update(row(400 * (i + 1), ret=-500.0 if i == 2 else None), now=now)
    d.close()
    lines = capsys.readouterr().out.splitlines()
    assert [x.split()[1] for x in lines] == ["400/10.0k", "1600/10.0k", "2400/10.0k"]
    assert all(x.startswith("[pendulum] ") for x in lines)
    assert "return -500.0 (400 ago)" in lines[1]  # the return seen at 1200 steps, on the next printed line
    assert cl.due(None, 0.0, 10.0) and not cl.due(5.0, 14.9, 10.0)


# ------------------------------------------------------------------- the trio's learners on the console
class _Screen:
    """A rich console's stand-in: what it was asked to print above the bar."""

    def __init__(self):
        self.printed = []

    def print(self, text, **_):
        self.printed.append(text)


def _console_on(log_level=logging.INFO):
    """A live bar's stand-in handler on the pql_scaling logger; undo with _console_off."""
    screen, log = _Screen(), logging.getLogger("pql_scaling")
    handler = ConsoleHandler(screen)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    log.addHandler(handler)
    old, log.level = log.level, log_level
    return screen, lambda: (log.removeHandler(handler), log.setLevel(old))


def _learner_like(stderr, log_path):
    """What a learner process does with its console (learner_proc.learner_main), then dies by SIGKILL, leaving
    a process of its own that holds its stderr open."""
    child_console.redirect_stderr(stderr)
    with open(log_path + ".pid", "w") as f:
        f.write(str(subprocess.Popen(["sleep", "60"]).pid))
    log = logging.getLogger("pql_scaling")
    child_console.child_logging(log, log_path)
    log.info("v_learner ready on cpu")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("v_learner failed")
    sys.stderr.write("a library's warning\nits second line\n")
    sys.stderr.flush()
    os.write(2, b"a C library's last words, no newline")
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_learners_records_and_stderr_reach_the_console_and_outlive_it(tmp_path):
    log_path = str(tmp_path / "train.log")
    ctx = multiprocessing.get_context("spawn")
    screen, off = _console_on()
    to_file = logging.FileHandler(log_path)  # this process's train.log, as RunDir opens it
    logging.getLogger("pql_scaling").addHandler(to_file)
    try:
        pump = child_console.StderrPump(ctx)
        p = ctx.Process(target=_learner_like, name="v_learner", args=(pump.pipe("v_learner"), log_path))
        p.start()
        pump.started("v_learner")
        p.join(60)
        t0 = time.monotonic()
        pump.close()
        closed_s = time.monotonic() - t0
    finally:
        off()
        logging.getLogger("pql_scaling").removeHandler(to_file)
        to_file.close()
        if os.path.exists(log_path + ".pid"):
            with open(log_path + ".pid") as f:
                os.kill(int(f.read()), signal.SIGKILL)
    assert closed_s < 2.0  # the orphan holding the pipe is not waited for
    assert p.exitcode == -signal.SIGKILL
    shown = screen.printed
    # its records, printed above the bar as this process's own are (and not written to train.log again)
    assert shown[0] == "INFO: v_learner ready on cpu"
    assert shown[1].startswith("ERROR: v_learner failed\nTraceback") and "ValueError: boom" in shown[1]
    # the rest of its stderr, raw, as a warning naming it; what it wrote just before dying included
    rest = "\n".join(shown[2:])
    assert rest.startswith(
        "WARNING: trio: v_learner wrote on its stderr:\na library's warning\nits second line"
    )
    assert rest.endswith("a C library's last words, no newline")
    with open(log_path) as f:
        written = f.read()
    assert "INFO v_learner: v_learner ready on cpu" in written  # the learner wrote its records there itself
    assert written.count("ready on cpu") == 1 and written.count("ValueError: boom") == 1  # ... only once
    assert "a library's warning" in written and "a C library's last words" in written  # its raw stderr too


def test_another_processs_records_print_as_this_ones_would():
    marked = child_console.MARK + json.dumps([logging.WARNING, "two\nlines"])
    assert child_console.parse(["raw", "more raw", marked, child_console.MARK + "not json", ""]) == [
        (None, "raw\nmore raw"),
        (logging.WARNING, "two\nlines"),
        (None, child_console.MARK + "not json\n"),
    ]
    screen, off = _console_on(logging.WARNING)  # INFO off, as for this process's own records
    try:
        to_console(logging.INFO, "not shown")
        to_console(logging.ERROR, "shown")
    finally:
        off()
    assert screen.printed == ["ERROR: shown"]


# ------------------------------------------------------------------------------------------- the summary
def test_summary_says_how_it_ended_what_it_learned_and_when_it_was_solved():
    rows = [row(1600, ret=-1200.0, ev=-1100.0), row(3200, ret=-240.0, wall=8.0), row(4800, ret=-260.0)]
    st = {"status": "completed", "reason": "max_env_steps"}
    facts = {"task": "pendulum", "algo": "pql", "startup_s": 7.0}
    out = "\n".join(summary.summary_lines(st, rows, facts, -250.0, "runs/x", "offline, in runs/x/wandb"))
    assert "pendulum pql: completed (max_env_steps reached)" in out
    assert "4,800 env steps, 300 critic updates, 0:05 training (+0:07 start-up)" in out
    assert "training return: final -260.0, best -240.0" in out
    assert "eval return:     final -1100.0, best -1100.0" in out
    assert "solved return -250: reached at 3200 env steps, 0:08 training time" in out
    assert "run directory: runs/x" in out and "W&B: offline, in runs/x/wandb" in out
    assert "look further: pql-scale runs" in out
    failed = summary.summary_lines(
        {"status": "failed", "reason": "Diverged: ..."}, rows[:1], facts, -250.0, "r"
    )
    assert "failed (Diverged: ...)" in failed[0] and "solved return -250: not reached" in "\n".join(failed)
    nothing = "\n".join(summary.summary_lines({}, [], {}, None, "r"))
    assert "no status.json" in nothing and "no episode ended" in nothing and "solved" not in nothing


# ------------------------------------------------------------------------------------------- pql-scale runs
def _write_run(d, status, rows, facts):
    os.makedirs(os.path.join(d, "checkpoints"))
    for name, obj in (("status.json", status), ("run.json", facts)):
        with open(os.path.join(d, name), "w") as fh:
            json.dump(obj, fh)
    with open(os.path.join(d, "metrics.jsonl"), "w") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows) + '{"env_steps": 99')  # a truncated last line


def test_pql_scale_runs_lists_every_run_directory(tmp_path):
    facts = {"task": "pendulum", "backend": "native", "mode": "trio"}
    _write_run(
        str(tmp_path / "a"),
        {"status": "completed", "reason": "max_env_steps", "time": "2026-12-05T10:00:00"},
        [row(800, ret=-900.0), row(1600, ret=-700.0, wall=65.0)],
        facts,
    )
    _write_run(
        str(tmp_path / "sweep" / "utd_0.5" / "s0"),
        {"status": "failed", "reason": "ValueError: bad"},
        [],
        dict(facts, mode="sync"),
    )
    (tmp_path / "not_a_run").mkdir()
    p = subprocess.run(
        [sys.executable, "-m", "pql_scaling.cli", "runs", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == [
        "run",
        "task",
        "backend",
        "mode",
        "status",
        "env",
        "steps",
        "best",
        "return",
    ] + ["train", "time", "updated"]
    assert lines[1].split() == ["a", "pendulum", "native", "trio", "completed", "1,600", "-700.0", "1:05"] + [
        "2026-12-05",
        "10:00:00",
    ]
    assert lines[2].split()[:5] == ["sweep/utd_0.5/s0", "pendulum", "native", "sync", "failed:"]
    assert len(lines) == 3
    bad = subprocess.run(
        [sys.executable, "-m", "pql_scaling.cli", "runs", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "is not a directory" in bad.stderr


# ------------------------------------------------------------------------------- a run in a pseudo-terminal
def run_in_pty(cmd, cols=200, timeout=240):
    """Run `cmd` with a pseudo-terminal as stdin/stdout/stderr; its exit code and everything it wrote."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TERM")}
    env.update(TERM="xterm-256color", PYTHONUNBUFFERED="1")
    p = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=env, close_fds=True)
    os.close(slave)
    out, end = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif p.poll() is not None:
                break
    finally:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=30)
        os.close(master)
    return p.returncode, out.decode("utf-8", "replace")


CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


def screen(text):
    """What a terminal shows after `text`: carriage returns, newlines, cursor up/down, erase line; colours and
    cursor visibility ignored. Enough of a VT100 for rich's live display."""
    lines, row, col, i = [""], 0, 0, 0
    while i < len(text):
        m = CSI.match(text, i)
        if m:
            arg, op = m.group(1).lstrip("?"), m.group(2)
            n = int(arg.split(";")[0] or 1) if op in "AB" else 0
            if op == "A":
                row = max(0, row - n)
            elif op == "B":
                row += n
            elif op == "K":
                lines[row] = "" if arg == "2" else lines[row][:col]
            i = m.end()
            continue
        ch = text[i]
        i += 1
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
        elif ch >= " ":
            line = lines[row].ljust(col)
            lines[row] = line[:col] + ch + line[col + 1 :]
            col += 1
        while len(lines) <= row:
            lines.append("")
    return [x.rstrip() for x in lines]


@pytest.mark.parametrize("mode, cols", [("sync", 80), ("trio", 200)])
def test_a_short_run_on_a_terminal(tmp_path, mode, cols):
    run_dir = str(tmp_path / mode)
    cmd = [sys.executable, "-m", "pql_scaling.cli", "train", "task=pendulum", "mode=" + mode, "num_envs=8"]
    cmd += ["max_env_steps=3200", "log.every_steps=25", "threads=1", "run_dir=" + run_dir]
    code, out = run_in_pty(cmd, cols=cols)
    shown = screen(out)
    assert code == 0, "\n".join(shown)
    bars = [i for i, x in enumerate(shown) if "━" in x]  # the bar's glyphs
    assert bars, "\n".join(shown)
    for i in bars:  # log messages printed above the bar, never inside its line
        assert "INFO" not in shown[i] and "trio:" not in shown[i] and "start-up took" not in shown[i], shown[
            i
        ]
    assert any("start-up took" in x for x in shown)  # ... but printed
    # the last bar, its fields wrapped onto a second line on a narrow terminal, none cut off
    last = re.sub(r"\s+", " ", " ".join(shown[bars[-1] : bars[-1] + 2]))
    assert re.search(r"\d+/3200 env steps return -[0-9.]+( \(\S+ ago\))? best -[0-9.]+", last), last
    assert re.search(r"elapsed, \d+:\d\d left", last), last
    if mode == "trio":
        assert any(x.startswith("INFO: trio: v_learner is pid") for x in shown), "\n".join(shown)
        for role in ("v_learner", "p_learner"):  # the learners' own records (their processes') above it too
            assert any(x.startswith("INFO: %s ready on cpu" % role) for x in shown[: bars[-1]]), "\n".join(
                shown
            )
    text = "\n".join(shown)
    assert "pendulum pql: completed (max_env_steps reached)" in text
    assert "training return: final -" in text and "run directory: %s" % run_dir in text


def test_a_population_on_a_terminal(tmp_path):
    root = str(tmp_path / "pop")
    cmd = [sys.executable, "-m", "pql_scaling.cli", "train", "task=pendulum", "mode=sync", "num_envs=8"]
    cmd += ["population.size=3", "max_env_steps=1600", "log.every_steps=25", "threads=1", "run_dir=" + root]
    code, out = run_in_pty(cmd, cols=160)
    shown = screen(out)
    assert code == 0, "\n".join(shown)
    bars = [i for i, x in enumerate(shown) if "━" in x]
    assert bars, "\n".join(shown)
    for i in bars:  # one bar for the population, its line beside it, log messages never inside it
        assert "INFO" not in shown[i] and "population of 3" not in shown[i], shown[i]
    assert any(x.startswith("INFO: population of 3") for x in shown[: bars[-1]]), "\n".join(shown)
    # the bar as it ended, with the population's last line (one line: the bar was redrawn, not repeated)
    assert [i for i, x in enumerate(shown) if "population: " in x] == bars[-1:], "\n".join(shown)
    last = re.sub(r"\s+", " ", " ".join(shown[bars[-1] : bars[-1] + 2]))
    assert "population: 1,600/1,600 env steps per member return median -" in last, last
    assert re.search(r"return median -[0-9.]+ \[-[0-9.]+, -[0-9.]+\] \(3\) 0 training \d+ s", last), last
    text = "\n".join(shown)
    assert all("member %d (seed %d): completed" % (k, k) in text for k in range(3)), text


# ------------------------------------------------------------------------------- sweeps, studies, analysis
def test_progress_of_a_batch_of_runs():
    assert cl.progress(0, 12, 5.0) == "0/12 runs done, 0:05 elapsed, -:-- left"
    assert cl.progress(3, 12, 45.0) == "3/12 runs done, 0:45 elapsed, ~2:15 left"
    assert cl.progress(12, 12, 100.0).endswith("~0:00 left")


def test_study_stages_print_as_progress_not_warnings(capsys, caplog):
    from types import SimpleNamespace

    from pql_scaling.experiments.study import stages

    stages._say(SimpleNamespace(name="mini"), "fitted", "runs in x")
    assert capsys.readouterr().out == "study mini: stage 2/4 fitted: runs in x\n"
    assert not caplog.records


def test_a_plot_without_labels_gets_no_legend_and_no_warning():
    pytest.importorskip("matplotlib")
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pql_scaling.analysis import plots

    fig, (a, b) = plt.subplots(1, 2)
    a.plot([0, 1], [0, 1])
    b.plot([0, 1], [1, 0], label="fit")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots._legend(a)
        plots._legend(b)
    assert a.get_legend() is None and b.get_legend() is not None
    plt.close(fig)


def test_flops_per_sample_skips_the_log_points_before_the_first_update():
    """0 FLOPs over 0 updates (the log points of the warm-up) is a case, not numpy's divide warning."""
    pytest.importorskip("scipy")
    import warnings

    import numpy as np

    from pql_scaling.analysis import wallclock

    c = {"flops": np.array([0.0, 0.0, 6.4e5, np.nan]), "grad_steps": np.array([0.0, 0.0, 10.0, 20.0])}
    c["batch_size"] = 64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert wallclock.flops_per_sample(c).tolist() == [1000.0]
        with pytest.raises(RuntimeWarning):  # what the division did before
            c["flops"] / (c["grad_steps"] * c["batch_size"])


def test_a_degenerate_budget_fit_is_explained_without_numpys_rank_warning():
    pytest.importorskip("scipy")
    import warnings

    from pql_scaling.analysis import fit
    from pql_scaling.analysis.errors import AnalysisInputError

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AnalysisInputError, match="budget fit is degenerate"):
            fit.budget_fit([1e10, 1e10 * (1 + 1e-12), 2e10], [0.5, 0.01, 0.3], holdout_top_k=1)
        assert not fit.budget_fit([1e10, 1e11, 1e12], [0.1, 0.2, 0.4], holdout_top_k=0)["poorly_conditioned"]
