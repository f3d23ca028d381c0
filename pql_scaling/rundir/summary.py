"""The end-of-run summary (a few lines: how it ended, what it learned, how fast, where it is, what next) and the
`pql-scale runs` table; both read a run directory only through schema.py, and format with pure functions."""

import os
from typing import Any, Dict, List, Optional, Sequence

from pql_scaling.rundir import schema
from pql_scaling.rundir.console_lines import clock, fold_all, steps_text

STOP_CONDITIONS = ("max_env_steps", "max_time_s", "target_return")  # clock.py's stop reasons


def first_reaching(rows: Sequence[Dict[str, Any]], key: str, target: float) -> Optional[Dict[str, Any]]:
    """The first log point whose `key` reaches `target` (None when none does)."""
    return next((r for r in rows if r.get(key) is not None and r[key] >= target), None)


def _ret(v: Optional[float]) -> str:
    return "-" if v is None else "%.1f" % v


def summary_lines(
    status: Dict[str, Any],
    rows: Sequence[Dict[str, Any]],
    facts: Dict[str, Any],
    solved: Optional[float],
    run_path: str,
    wandb_where: Optional[str] = None,
) -> List[str]:
    """The summary: status.json, metrics.jsonl's rows, run.json's facts, the task's solved return (or None)."""
    live = fold_all(rows)
    why = status.get("status", "no status.json")
    if status.get("reason"):
        reached = " reached" if status["reason"] in STOP_CONDITIONS else ""
        why += " (%s%s)" % (status["reason"], reached)
    startup = facts.get("startup_s")
    out = [
        "%s %s: %s" % (facts.get("task", "run"), facts.get("algo", ""), why),
        "  %s env steps, %s critic updates, %s training%s"
        % (
            "{:,}".format(live.env_steps),
            "{:,}".format(live.critic_updates),
            clock(live.wall_time_s),
            "" if startup is None else " (+%s start-up)" % clock(startup),
        ),
    ]
    final_train = next(
        (r[schema.RETURN_MEAN] for r in reversed(rows) if r.get(schema.RETURN_MEAN) is not None), None
    )
    if live.best is None:
        out.append("  training return: none (no episode ended)")
    else:
        out.append("  training return: final %s, best %s" % (_ret(final_train), _ret(live.best)))
    if live.eval_ret is not None:
        out.append("  eval return:     final %s, best %s" % (_ret(live.eval_ret), _ret(live.best_eval)))
    if solved is not None:
        hit = first_reaching(rows, schema.RETURN_MEAN, solved)
        if hit is None:
            out.append("  solved return %g: not reached" % solved)
        else:
            out.append(
                "  solved return %g: reached at %s env steps, %s training time"
                % (solved, steps_text(hit[schema.ENV_STEPS]), clock(hit.get(schema.WALL_TIME_S)))
            )
    out.append("  run directory: %s" % run_path)
    if wandb_where:
        out.append("  W&B: %s" % wandb_where)
    # (not `pql-scale analyze`: it fits laws across runs and refuses one run that crossed no threshold)
    out.append(
        "  look further: pql-scale runs %s   (curves: %s, log: %s)"
        % (
            os.path.dirname(os.path.abspath(run_path)),
            os.path.join(run_path, schema.METRICS),
            os.path.join(run_path, schema.TRAIN_LOG),
        )
    )
    return out


def read_run(path: str) -> Dict[str, Any]:
    """One run directory's status, rows and facts through schema's readers; a missing or unreadable file reads
    as empty (a run that died at start-up still gets a line in `pql-scale runs`)."""

    def safe(reader, name, default):
        try:
            return reader(os.path.join(path, name))
        except (OSError, ValueError):
            return default

    rows, _ = safe(schema.read_metrics, schema.METRICS, ([], []))
    return {
        "status": safe(schema.read_status, schema.STATUS, {}),
        "rows": rows,
        "facts": safe(schema.read_facts, schema.FACTS, {}),
    }


def solved_return(task: Optional[str]) -> Optional[float]:
    """The task's solved return (native tasks), or None; never an import error in a reader."""
    if not task:
        return None
    try:
        from pql_scaling import tasks

        return tasks.solved_return(task)
    except Exception:  # noqa: BLE001 - a task this install cannot load has no known solved return here
        return None


def summarize(path: str, wandb_where: Optional[str] = None) -> List[str]:
    run = read_run(path)
    return summary_lines(
        run["status"], run["rows"], run["facts"], solved_return(run["facts"].get("task")), path, wandb_where
    )


# ------------------------------------------------------------------------------------------- pql-scale runs
RUNS_COLUMNS = (
    "run",
    "task",
    "backend",
    "mode",
    "status",
    "env steps",
    "best return",
    "train time",
    "updated",
)


def run_dirs(root: str) -> List[str]:
    """The run directories under `root` (any depth: sweeps nest them), sorted by path."""
    found = []
    for d, subdirs, files in os.walk(root):
        if schema.CONFIG in files or schema.STATUS in files or schema.METRICS in files:
            found.append(d)
            subdirs[:] = []  # a run directory's own folders (checkpoints, wandb) hold no runs
        else:
            subdirs.sort()
    return sorted(found)


def runs_row(path: str, root: str, run: Dict[str, Any]) -> List[str]:
    """One run's cells (RUNS_COLUMNS), from what read_run returned."""
    live = fold_all(run["rows"])
    st, facts = run["status"], run["facts"]
    status = st.get("status", "no status")
    if st.get("status") not in (None, schema.COMPLETED) and st.get("reason"):
        status += ": " + str(st["reason"])[:60]
    return [
        os.path.relpath(path, root),
        str(facts.get("task", "-")),
        str(facts.get("backend", "-")),
        str(facts.get("mode", "-")),
        status,
        "{:,}".format(live.env_steps) if run["rows"] else "-",
        _ret(live.best),
        clock(live.wall_time_s) if run["rows"] else "-",
        str(st.get("time", "-")).replace("T", " "),  # when status.json was last written
    ]


def runs_table(root: str) -> List[List[str]]:
    return [runs_row(p, root, read_run(p)) for p in run_dirs(root)]


def plain_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell (no terminal needed)."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])
