"""How many seeds a study stage can afford: `seeds: auto` from the costs the study measured on its own runs.

A run's training cost grows with its env steps D and, per env step, with its updates: time ~ D (1 + r sigma).
Its evaluations cost apart: each is a fixed number of episodes whatever D is, so a run evaluated every 5% of a
small predicted D (the validation stage) pays for far more of them per env step than the stage that calibrates
the model. And a stage ends no sooner than its longest population: mountaincar's first study took 754 s for
its validation runs, of which its UTD-1/2 population alone trained and evaluated for 549 s, while the total
work over two processes, the model then, predicts 611 s from its fitted runs (now 656 s; pendulum's: 647 s
predicted, 618 s taken). r comes from the runs' own clocks (per member and env step, regressed on sigma), the
cost of one member's evaluation from their logged eval_time_s, and the scale from the whole stage's measured
time (start-up and the launcher included), so the model predicts what the next stage's launch will take, not
only its loops. Populations pack a configuration's seeds into one process; members of a larger population cost
less each (runtime/population.py: flat from ~16 members on), so a model calibrated on a smaller population
over-estimates, never under-estimates, the next stage."""

import json
import os
from typing import Dict, List, Sequence, Tuple

from pql_scaling.experiments.sweep.state import _last_metrics
from pql_scaling.rundir import schema


def run_costs(runs) -> List[Dict[str, float]]:
    """(sigma, env steps, population size and id, training clock, evaluations and their seconds) of every
    finished run directory of `runs`. A population's members share its clocks (wall_time_s, eval_time_s)."""
    out = []
    for r in runs:
        try:
            with open(os.path.join(r.path, "run.json")) as f:
                info = json.load(f)
        except (OSError, ValueError):
            continue
        m = _last_metrics(r.path) or {}
        d, wall = m.get("env_steps"), m.get("wall_time_s")
        if not d or not wall or info.get("utd") is None:
            continue
        pop = info.get("population") or {}
        n_evals, eval_s = _evaluations(r.path)
        out.append(
            {
                "sigma": float(info["utd"]),
                "env_steps": float(d),
                "members": int(pop.get("size") or 1),
                "population": pop.get("id") or r.path,
                "wall_s": float(wall),
                "evals": n_evals,
                "eval_s": eval_s,
            }
        )
    return out


def _evaluations(path) -> Tuple[int, float]:
    """(evaluations logged, their cumulative seconds) of one run directory."""
    try:
        rows, _ = schema.read_metrics(os.path.join(path, schema.METRICS))
    except OSError:
        return 0, 0.0
    n = sum(row.get("eval_return_mean") is not None for row in rows)
    secs = [row["eval_time_s"] for row in rows if row.get("eval_time_s") is not None]
    return n, float(secs[-1]) if secs else 0.0


def eval_cost(costs) -> Tuple[float, float]:
    """(seconds of one member's evaluation, seconds of evaluation summed over the processes): each population
    evaluates its members as one batch, counted once."""
    groups = {}
    for c in costs:
        groups[c.get("population", id(c))] = c
    total = sum(c.get("eval_s", 0.0) for c in groups.values())
    member_evals = sum(c.get("evals", 0) * c["members"] for c in groups.values())
    return (total / member_evals if member_evals else 0.0), total


def update_ratio(costs: Sequence[Dict[str, float]]) -> float:
    """r in time per member-env-step ~ a (1 + r sigma): least squares of the per-step cost on sigma, r >= 0."""
    xs = [c["sigma"] for c in costs]
    ys = [c["wall_s"] / (c["members"] * c["env_steps"]) for c in costs]
    if len(set(xs)) < 2:
        return 0.0
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    a = my - b * mx
    return max(b / a, 0.0) if a > 0 else 0.0


def scale(costs, stage_s: float, slots: int, r: float, eval_s: float = 0.0) -> float:
    """Seconds per unit of training work D (1 + r sigma) of one member, from a stage that took stage_s on
    `slots` parallel processes (fewer when it had fewer processes than slots), of which its processes spent
    eval_s (summed) evaluating."""
    work = sum(c["env_steps"] * (1 + r * c["sigma"]) for c in costs)  # every member's own
    par = min(slots, max(1, round(_groups(costs))))
    return max(stage_s * par - eval_s, 0.1 * stage_s * par) / work


def _groups(costs) -> float:
    """How many processes ran the runs (each population is one): sum over runs of 1 / members."""
    return sum(1.0 / c["members"] for c in costs)


def _jobs(configs) -> Dict[float, Tuple[float, float]]:
    """{sigma: (env steps, env steps between evaluations)}: configurations that share a UTD train as one run,
    the longest any of them needs, evaluated as often as the finest asks (as the validation stage runs them)."""
    out: Dict[float, Tuple[float, float]] = {}
    for c in configs:
        sigma, d, every = float("%.6g" % c[0]), float(c[1]), float(c[2]) if len(c) > 2 and c[2] else 0.0
        d0, e0 = out.get(sigma, (0.0, 0.0))
        out[sigma] = (max(d0, d), min(e for e in (e0, every) if e) if (e0 or every) else 0.0)
    return out


def slots(spec) -> int:
    lo = spec.launcher.local
    return max(1, lo.runs_per_device * len(lo.devices)) if spec.launcher.kind == "local" else 1


def choose_seeds(
    spec,
    configs: Sequence[Tuple[float, ...]],
    measured: Sequence[Tuple[list, float]],
    spent_s: float,
    share: float,
) -> Tuple[int, dict]:
    """Seeds per configuration for a stage of `configs` [(sigma, env steps, env steps between evaluations
    (0 or absent: none))], each UTD one population, to fit `share` of the study's time left
    (time_budget_s - spent_s). `measured`: [(runs, seconds the stage took)] of earlier stages; the latest with
    finished runs calibrates the model. Returns (seeds, how it was chosen)."""
    costs, stage_s = [], 0.0
    for runs, secs in measured:
        c = run_costs(runs)
        if c:
            costs, stage_s = c, secs
    left = max(0.0, spec.time_budget_s - spent_s) * share
    if not costs or stage_s <= 0:
        n = spec.seeds_min
        return n, {"seeds": n, "why": "no measured runs to cost the stage: seeds_min"}
    r = update_ratio(costs)
    e, eval_total = eval_cost(costs)
    k = scale(costs, stage_s, slots(spec), r, eval_total)
    jobs = _jobs(configs)
    par = min(slots(spec), len(jobs))
    evals = sum(int(d // every) for d, every in jobs.values() if every)
    work = {s: k * d * (1 + r * s) + e * (int(d // every) if every else 0) for s, (d, every) in jobs.items()}
    # one population per UTD on `par` processes: the stage ends no sooner than its longest population
    per_seed = max(sum(work.values()) / par, max(work.values()))
    n_fit = int(left // per_seed) if per_seed > 0 else spec.seeds_max
    n = min(spec.seeds_max, max(spec.seeds_min, n_fit))
    why = (
        "budget"
        if spec.seeds_min < n_fit < spec.seeds_max
        else ("seeds_max" if n_fit >= spec.seeds_max else "seeds_min")
    )
    return n, {
        "seeds": n,
        "limited_by": why,
        "work_s_per_seed": {"%g" % s: w for s, w in work.items()},
        "budget_left_s": left,
        "share": share,
        "predicted_s_per_seed": per_seed,
        "predicted_stage_s": per_seed * n,
        "seconds_per_work": k,
        "update_ratio_r": r,
        "seconds_per_member_eval": e,
        "evaluations_per_seed": evals,
        "calibrated_on_runs": len(costs),
        "calibration_stage_s": stage_s,
        "model": "stage time = seeds * max(sum over UTDs of w / parallel processes, largest w), "
        "w = k D (1 + r sigma) + e * evaluations",
    }


def choose_dropping(spec, held_out, others, measured, spent_s, share) -> Tuple[int, dict, List[dict]]:
    """choose_seeds for the validation stage, where seeds_min can override the budget: HalfCheetah's held-out
    UTD 2 trained for ~50 of its study's 80 minutes at seeds_min. With validate.over_budget=drop, while the stage
    is predicted to overrun its share at seeds_min, the held-out UTD with the most predicted work is dropped
    (the most expensive first, at least one kept; the budget leg's runs are never dropped) and the seeds chosen
    again. `held_out`, `others`: configurations as choose_seeds takes them. Returns (seeds, how, dropped:
    [{sigma, predicted_s, reason}])."""
    held, dropped = list(held_out), []
    while True:
        n, how = choose_seeds(spec, held + list(others), measured, spent_s, share)
        over = how.get("limited_by") == "seeds_min" and how["predicted_stage_s"] > how["budget_left_s"]
        if not over or spec.validate.over_budget != "drop" or len(held) <= 1:
            how["dropped"] = [d["sigma"] for d in dropped]
            return n, how, dropped
        work = how["work_s_per_seed"]  # keyed "%g" % sigma: _jobs' rounding to 6 digits, as %g prints
        c = max(held, key=lambda c: work.get("%g" % c[0], 0.0))
        held.remove(c)
        w = work.get("%g" % c[0], 0.0)
        dropped.append(
            {
                "sigma": c[0],
                "predicted_s": w * n,
                "reason": "its run alone was predicted to take %.0f s at seeds_min=%d, and the validation stage "
                "%.0f s where %.0f s of the study's time were left to it (validate.over_budget=drop: the most "
                "expensive held-out UTD is dropped until the stage fits; set it to run to keep every one)"
                % (w * n, n, how["predicted_stage_s"], how["budget_left_s"]),
            }
        )
