"""Aggregate measures across tasks and seeds, as Agarwal et al. 2021 ("Deep Reinforcement Learning at the Edge of
the Statistical Precipice", NeurIPS; their library rliable) define them: the interquartile mean (IQM) and mean
of normalised scores with stratified bootstrap confidence intervals, performance profiles, and the probability
of improvement of one configuration over another. Written here (rliable is unmaintained and not packaged for
our numpy); tests/test_analysis_aggregate.py checks them against hand-computed values and scipy.

Scores are a list with one array per task (the runs of that task: seeds may differ in number). Stratified
bootstrap: resample runs with replacement within each task, the task set fixed (the paper's section 4).
Pure numpy/scipy; the figures are in aggregate_plots.py, the report section in report.py.
"""

import numpy as np
from scipy import stats

CI = (2.5, 97.5)  # a 95% percentile interval
REPS = 2000  # bootstrap resamples of the aggregates (cheap: vectorised over resamples)


def iqm(x, axis=None):
    """Interquartile mean: the mean of the middle 50% of the scores (25% trimmed from each end)."""
    return stats.trim_mean(x, 0.25, axis=axis)


def optimality_gap(x, gamma=1.0, axis=None):
    """How far the scores fall short of `gamma` (normalised 1 = R_max), on average; a score above counts as gamma."""
    return np.mean(gamma - np.minimum(x, gamma), axis=axis)


MEASURES = {"IQM": iqm, "mean": np.mean, "median": np.median, "optimality_gap": optimality_gap}


def stratified_resamples(scores, reps, rng):
    """[reps, sum n_t]: each row the runs of every task resampled with replacement within the task."""
    parts = []
    for s in scores:
        s = np.asarray(s, float)
        parts.append(s[rng.integers(0, len(s), size=(reps, len(s)))])
    return np.concatenate(parts, axis=1)


def interval_estimates(scores, reps=REPS, rng=None, measures=MEASURES):
    """{measure: (point, [lo, hi])} of the pooled scores, the interval from the stratified bootstrap."""
    rng = np.random.default_rng(rng)
    pooled = np.concatenate([np.asarray(s, float) for s in scores])
    boot = stratified_resamples(scores, reps, rng)
    out = {}
    for name, f in measures.items():
        b = f(boot, axis=1)
        out[name] = (float(f(pooled)), [float(v) for v in np.percentile(b, CI)])
    return out


def profile(scores, taus):
    """Performance profile: for each threshold tau, the fraction of runs scoring above it, averaged over tasks
    (each task weighs the same however many runs it has)."""
    taus = np.asarray(taus, float)
    return np.mean([(np.asarray(s, float)[:, None] > taus[None]).mean(0) for s in scores], axis=0)


def profile_with_ci(scores, taus, reps=REPS, rng=None):
    """(profile [n_tau], lo [n_tau], hi [n_tau]): the profile and its stratified-bootstrap 95% band."""
    rng = np.random.default_rng(rng)
    taus = np.asarray(taus, float)
    boot = np.zeros((reps, len(taus)))
    for s in scores:  # a task's share of each resample's profile
        s = np.asarray(s, float)
        r = s[rng.integers(0, len(s), size=(reps, len(s)))]
        boot += (r[:, :, None] > taus[None, None]).mean(1) / len(scores)
    lo, hi = np.percentile(boot, CI, axis=0)
    return profile(scores, taus), lo, hi


def _prob_task(x, y):
    """P(X > Y) of one task, ties counting half: the Mann-Whitney U statistic / (n m), batched over a leading
    axis of resamples (x [..., n], y [..., m])."""
    d = x[..., :, None] - y[..., None, :]
    return ((d > 0).mean((-1, -2))) + 0.5 * ((d == 0).mean((-1, -2)))


def probability_of_improvement(x, y, reps=REPS, rng=None):
    """P(X > Y): the probability that a run of configuration X scores above a run of Y on a task drawn at random
    (the mean over tasks of per-task P), with a 95% interval from resampling X's and Y's runs independently
    within each task. x, y: per-task score arrays over the same tasks. Returns (point, [lo, hi])."""
    if len(x) != len(y):
        raise ValueError(
            f"probability of improvement needs the same tasks: {len(x)} vs {len(y)} score arrays"
        )
    rng = np.random.default_rng(rng)
    point = np.mean([_prob_task(np.asarray(a, float), np.asarray(b, float)) for a, b in zip(x, y)])
    boot = np.zeros(reps)
    for a, b in zip(x, y):
        a, b = np.asarray(a, float), np.asarray(b, float)
        ra = a[rng.integers(0, len(a), size=(reps, len(a)))]
        rb = b[rng.integers(0, len(b), size=(reps, len(b)))]
        boot += _prob_task(ra, rb) / len(x)
    return float(point), [float(v) for v in np.percentile(boot, CI)]


# ------------------------------------------------------------------------------ scores from curve records
def final_scores(curves, key="sigma"):
    """Each configuration's normalised scores (R_norm / 1000, per seed) at a data budget every configuration of
    its task reached: the smallest final env step among the task's configurations (later UTDs often run
    shorter), the last logged return at or before it. Returns ({config value: {task: scores}}, {task: D})."""
    budget = {}
    for c in curves:
        budget[c["task"]] = min(budget.get(c["task"], np.inf), float(c["steps"][-1]))
    out = {}
    for c in curves:
        i = int(np.searchsorted(c["steps"], budget[c["task"]], side="right")) - 1
        out.setdefault(c[key], {})[c["task"]] = np.asarray(c["norm"][i], float) / 1000.0
    return out, budget


def compare(curves, key="sigma", reps=REPS, seed=0, n_tau=101):
    """The aggregate measures of each value of `key` (a configuration axis, the UTD by default) over the tasks
    every value was run on; probability of improvement of each over the first (smallest) value; performance
    profiles. None when there is only one value or one task (nothing to aggregate across)."""
    by, budget = final_scores(curves, key)
    tasks = sorted(set.intersection(*[set(v) for v in by.values()])) if by else []
    if len(by) < 2 or not tasks:
        return None
    rng = np.random.default_rng(seed)
    vals = sorted(by)
    scores = {v: [by[v][t] for t in tasks] for v in vals}
    hi = max(1.0, max(float(np.max(np.concatenate(s))) for s in scores.values()))
    taus = np.linspace(0.0, hi, n_tau)
    rows, profiles = [], {}
    for v in vals:
        est = interval_estimates(scores[v], reps, rng)
        row = {key: v, "runs": int(sum(len(s) for s in scores[v]))}
        for name, (p, ci) in est.items():
            row[name], row[name + "_ci95"] = p, ci
        p, ci = probability_of_improvement(scores[v], scores[vals[0]], reps, rng)
        row["P_improve_vs_first"], row["P_improve_vs_first_ci95"] = p, ci
        rows.append(row)
        prof, lo, up = profile_with_ci(scores[v], taus, reps, rng)
        profiles[v] = {"profile": prof, "lo": lo, "hi": up}
    return {
        "axis": key,
        "tasks": tasks,
        "budget_env_steps": budget,
        "reps": reps,
        "rows": rows,
        "taus": taus,
        "profiles": profiles,
        "note": "normalised score = R_norm / 1000 at each task's smallest final env step over configurations; "
        "95% stratified-bootstrap percentile intervals (Agarwal et al. 2021)",
    }


def table(agg):
    """compare()'s rows as a table: each measure with its 95% interval, one row per configuration."""
    import pandas as pd

    fmt = lambda p, ci: f"{p:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    key = agg["axis"]
    names = list(MEASURES) + ["P_improve_vs_first"]
    return pd.DataFrame(
        [
            {key: r[key], "runs": r["runs"], **{n: fmt(r[n], r[n + "_ci95"]) for n in names}}
            for r in agg["rows"]
        ]
    )


def report_lines(agg, figure=None, title="Configurations compared across tasks and seeds"):
    """Markdown lines of compare()'s result for a report (the study's; analyze's writes its table as a file):
    a heading, the figure, the table and how the scores were taken. [] when nothing was compared."""
    if not agg:
        return []
    t = table(agg)
    L = [f"## {title} (Agarwal et al. 2021)", ""] + ([f"![]({figure})", ""] if figure else [])
    L += ["| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
    L += ["| " + " | ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in r) + " |" for r in t.values]
    return L + ["", f"{agg['note']}; {agg['reps']} resamples; tasks: {', '.join(agg['tasks'])}.", ""]
