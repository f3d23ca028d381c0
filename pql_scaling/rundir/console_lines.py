"""What the console says about a run, as pure functions of its log points: the live line (on a terminal or, every
few seconds, in a log file), the line per population, and the end-of-run summary. display.py prints them.

A return exists only on the log points where episodes ended (one in eight for Pendulum's defaults), so the live
line shows the latest known one with its age in env steps, never the last row's "-"."""

import statistics
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence

RATE_SMOOTHING = 0.3  # weight of the newest log point's rates: a steady readout of noisy per-interval rates


class Live(NamedTuple):
    """What the live line needs, folded from the log points one at a time (fold)."""

    env_steps: int = 0
    critic_updates: int = 0
    utd: Optional[float] = None
    wall_time_s: float = 0.0
    ret: Optional[float] = None  # the latest training return_mean
    ret_at: Optional[int] = None  # ... and the env steps of its log point
    best: Optional[float] = None
    eval_ret: Optional[float] = None
    eval_at: Optional[int] = None
    best_eval: Optional[float] = None
    steps_per_s: Optional[float] = None
    updates_per_s: Optional[float] = None


def _max(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return b if a is None else a if b is None else max(a, b)


def _smooth(old: Optional[float], new: Optional[float]) -> Optional[float]:
    if new is None or old is None:
        return new if new is not None else old
    return old + RATE_SMOOTHING * (new - old)


def fold(live: Live, row: Dict[str, Any]) -> Live:
    """`live` moved on by one metrics row (schema.MetricsRow): counters from the row, returns kept until a newer
    one, best so far, rates smoothed."""
    ret, ev = row.get("return_mean"), row.get("eval_return_mean")
    steps = int(row.get("env_steps", live.env_steps))
    return live._replace(
        env_steps=steps,
        critic_updates=int(row.get("critic_updates", live.critic_updates)),
        utd=row.get("utd", live.utd),
        wall_time_s=float(row.get("wall_time_s", live.wall_time_s)),
        ret=live.ret if ret is None else ret,
        ret_at=live.ret_at if ret is None else steps,
        best=_max(live.best, ret),
        eval_ret=live.eval_ret if ev is None else ev,
        eval_at=live.eval_at if ev is None else steps,
        best_eval=_max(live.best_eval, ev),
        steps_per_s=_smooth(live.steps_per_s, row.get("env_steps_per_s")),
        updates_per_s=_smooth(live.updates_per_s, row.get("critic_updates_per_s")),
    )


def fold_all(rows: Iterable[Dict[str, Any]], live: Optional[Live] = None) -> Live:
    for row in rows:
        live = fold(live or Live(), row)
    return live or Live()


def remaining_s(live: Live, max_env_steps: Optional[int], max_time_s: Optional[float]) -> Optional[float]:
    """Training time left: the nearer of the two stop conditions (None when neither is set or no rate is
    known yet)."""
    left = []
    if max_env_steps and live.steps_per_s:
        left.append(max(0, max_env_steps - live.env_steps) / live.steps_per_s)
    if max_time_s:
        left.append(max(0.0, max_time_s - live.wall_time_s))
    return min(left) if left else None


def clock(seconds: Optional[float]) -> str:
    """1:02:03, 4:05, or - when unknown."""
    if seconds is None:
        return "-:--"
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return "%d:%02d:%02d" % (h, m, s % 60) if h else "%d:%02d" % (m, s % 60)


def steps_text(n: Optional[float]) -> str:
    """An env-step count, short: 950, 10.4k, 2.31M."""
    if n is None:
        return "-"
    if abs(n) < 1e4:
        return "%d" % n
    if abs(n) < 1e6:
        return "%.1fk" % (n / 1e3)
    return "%.2fM" % (n / 1e6)


def returns_text(values: Sequence[Optional[float]], spread: bool = False) -> str:
    """One return (-812.3), or several members' as median [min, max] (`spread`: always so); - when none is
    known."""
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    if len(values) == 1 and not spread:
        return "%.1f" % known[0]
    return "%.1f [%.1f, %.1f]" % (statistics.median(known), min(known), max(known))


def _aged(value: Optional[float], at: Optional[int], now: int) -> str:
    if value is None:
        return "-"
    age = now - (at or 0)
    return "%.1f" % value if age == 0 else "%.1f (%s ago)" % (value, steps_text(age))


def fields(live: Live, max_env_steps: Optional[int] = None, max_time_s: Optional[float] = None) -> List[str]:
    """The live line's fields, in order: env steps, return (its age), best, eval (its age), rates, UTD, time."""
    total = "/" + steps_text(max_env_steps) if max_env_steps else ""
    out = [
        "%s%s env steps" % (steps_text(live.env_steps), total),
        "return %s" % _aged(live.ret, live.ret_at, live.env_steps),
        "best %s" % ("-" if live.best is None else "%.1f" % live.best),
    ]
    if live.eval_ret is not None:
        out.append("eval %s" % _aged(live.eval_ret, live.eval_at, live.env_steps))
    rate = "-" if live.steps_per_s is None else "{:,.0f}".format(live.steps_per_s)
    upd = "-" if live.updates_per_s is None else "{:,.0f}".format(live.updates_per_s)
    out.append("%s steps/s %s upd/s" % (rate, upd))
    out.append("utd %s" % ("-" if live.utd is None else "%.3g" % live.utd))
    out.append(
        "%s elapsed, %s left" % (clock(live.wall_time_s), clock(remaining_s(live, max_env_steps, max_time_s)))
    )
    return out


def line(live: Live, max_env_steps: Optional[int] = None, max_time_s: Optional[float] = None) -> str:
    """The one live line (a terminal's bar shows it beside the bar; a log file gets it every few seconds)."""
    return "  ".join(fields(live, max_env_steps, max_time_s))


def population_line(
    env_steps: int,
    max_env_steps: Optional[int],
    latest: Dict[str, Dict[int, float]],
    training: int,
    wall_s: float,
) -> str:
    """One line per population (its live bar's line, or printed every few seconds): env steps per member, the
    members' latest training (and evaluation) returns as median [min, max] over the members that have one
    (`latest`: return_mean / eval_return_mean -> member -> its latest value), members still training, the
    clock."""
    total = "/{:,}".format(max_env_steps) if max_env_steps else ""
    parts = ["population: {:,}{} env steps per member".format(env_steps, total)]
    for key, name in (("return_mean", "return"), ("eval_return_mean", "eval")):
        values = list(latest.get(key, {}).values())
        if values:
            parts.append("%s median %s (%d)" % (name, returns_text(values, spread=True), len(values)))
        elif key == "return_mean":
            parts.append("return -")
    parts.append("%d training" % training)
    parts.append("%.0f s" % wall_s)
    return "  ".join(parts)


def due(last_printed: Optional[float], now: float, every_s: float) -> bool:
    """Without a terminal: print the first log point, then one every `every_s` seconds."""
    return last_printed is None or now - last_printed >= every_s


def progress(done: int, total: int, elapsed_s: float) -> str:
    """A batch of runs (a sweep, a study's stage): done/total, elapsed and, once one finished, the time left at
    the rate so far (parallel runs included)."""
    left = elapsed_s / done * (total - done) if done else None
    return "%d/%d runs done, %s elapsed, %s left" % (
        done,
        total,
        clock(elapsed_s),
        "~" + clock(left) if left is not None else "-:--",
    )
