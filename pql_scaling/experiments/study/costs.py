"""How many seeds a study stage can afford: `seeds: auto` from the costs the study measured on its own runs.

A run's cost grows with its env steps D and, per env step, with its updates: time ~ D (1 + r sigma). r comes
from the runs' own clocks (per member and env step, regressed on sigma); the scale from the whole stage's
measured time (start-up, evaluation and the launcher included), so the model predicts what the next stage's
launch will take, not only its training loops. Populations pack a configuration's seeds into one process;
members of a larger population cost less each (runtime/population.py), so a model calibrated on a smaller
population over-estimates, never under-estimates, the next stage."""

import json
import os
from typing import Dict, List, Sequence, Tuple

from pql_scaling.experiments.sweep.state import _last_metrics


def run_costs(runs) -> List[Dict[str, float]]:
    """(sigma, env steps, population size, training clock) of every finished run directory of `runs`."""
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
        k = int((info.get("population") or {}).get("size") or 1)
        out.append({"sigma": float(info["utd"]), "env_steps": float(d), "members": k, "wall_s": float(wall)})
    return out


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


def scale(costs, stage_s: float, slots: int, r: float) -> float:
    """Seconds per unit of work D (1 + r sigma) of one member, from a stage that took stage_s on `slots`
    parallel processes (fewer when it had fewer processes than slots)."""
    work = sum(c["env_steps"] * (1 + r * c["sigma"]) for c in costs)  # every member's own
    return stage_s * min(slots, max(1, round(_groups(costs)))) / work


def _groups(costs) -> float:
    """How many processes ran the runs (each population is one): sum over runs of 1 / members."""
    return sum(1.0 / c["members"] for c in costs)


def slots(spec) -> int:
    lo = spec.launcher.local
    return max(1, lo.runs_per_device * len(lo.devices)) if spec.launcher.kind == "local" else 1


def choose_seeds(
    spec,
    configs: Sequence[Tuple[float, float]],
    measured: Sequence[Tuple[list, float]],
    spent_s: float,
    share: float,
) -> Tuple[int, dict]:
    """Seeds per configuration for a stage of `configs` [(sigma, env steps)], each configuration one
    population, to fit `share` of the study's time left (time_budget_s - spent_s). `measured`: [(runs,
    seconds the stage took)] of earlier stages; the latest with finished runs calibrates the model.
    Returns (seeds, how it was chosen)."""
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
    k = scale(costs, stage_s, slots(spec), r)
    par = min(slots(spec), len(configs))
    per_seed = k * sum(d * (1 + r * s) for s, d in configs) / par
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
        "budget_left_s": left,
        "share": share,
        "predicted_s_per_seed": per_seed,
        "predicted_stage_s": per_seed * n,
        "seconds_per_work": k,
        "update_ratio_r": r,
        "calibrated_on_runs": len(costs),
        "calibration_stage_s": stage_s,
        "model": "stage time = k * seeds * sum over configurations of D (1 + r sigma) / parallel processes",
    }
