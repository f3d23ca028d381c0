"""A graded study's rows against the prediction intervals today's code would give (not a regrade), and its budget
leg's return at F against today's return model (predict.ceiling: the plateau the fitted runs level off at).

A study's prediction.json is written before its validation runs and never recomputed, so an interval change
(predict.misfit, predict.extrapolation) cannot reach a committed grade. This refits the study's fitted runs with
today's analysis, recomputes each graded point's 95% prediction interval for the same number of validation seeds,
and says which measured values lie inside, beside the grade's own intervals.

    python benchmarks/study_intervals_posthoc.py --study-dir /tmp/sn_runs --spec studies/pendulum_cpu.yaml \\
        --out benchmarks/results/study_pendulum_cpu_intervals_posthoc.json
"""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import save  # noqa: E402

from pql_scaling.analysis import pipeline, predict  # noqa: E402
from pql_scaling.experiments.study import stages  # noqa: E402
from pql_scaling.experiments.study.spec import load_spec  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--study-dir", required=True, help="the study's out folder (fitted/, prediction.json, grade.json)"
    )
    p.add_argument("--spec", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    d = args.study_dir
    spec = load_spec(args.spec, ["out=" + d])
    pred = json.load(open(os.path.join(d, "prediction.json")))
    grade = json.load(open(os.path.join(d, "grade.json")))
    cfg = stages._analysis_cfg(spec, os.path.join(d, "fitted"), tempfile.mkdtemp(), hparam_fits=pred["rules"])
    res = pipeline.run_analysis(cfg)
    n = pred["n_seeds"]
    rows, now = [], {}
    for r in grade["rows"]:
        if r.get("in_sample") or r.get("D_meas") is None:
            continue
        if r["sigma"] not in now:
            now[r["sigma"]] = {t["J"]: t for t in predict.data_to(res, r["sigma"], n)}
        lo, hi = now[r["sigma"]][r["J"]]["D_ci95"]
        rows.append(
            {
                "kind": r["kind"],
                "sigma": r["sigma"],
                "J": r["J"],
                "D_meas": r["D_meas"],
                "graded_interval": [r["D_pred_lo"], r["D_pred_hi"]],
                "graded_inside": bool(r["inside"]),
                "interval_now": [lo, hi],
                "inside_now": bool(lo <= r["D_meas"] <= hi),
                "width_now": hi / lo,
            }
        )
        print(
            "%-6s sigma %.4g J %g: measured %.0f graded [%.0f, %.0f] %s now [%.0f, %.0f] %s (%.2fx)"
            % (
                r["kind"],
                r["sigma"],
                r["J"],
                r["D_meas"],
                r["D_pred_lo"],
                r["D_pred_hi"],
                r["inside"],
                lo,
                hi,
                rows[-1]["inside_now"],
                hi / lo,
            )
        )
    budget = []  # the budget leg's return at F (budget point and its sigma*/2, 2 sigma* checks) the same way
    for r in [grade.get("budget_return")] + list(grade.get("budget_checks") or []):
        if not r or r.get("measured") is None:
            continue
        b = predict.budget_point(res, r["F"], r["sigma"], n)
        lo, hi = b["return_at_F_ci95"]
        budget.append(
            {
                "sigma": r["sigma"],
                "F": r["F"],
                "measured": r["measured"],
                "graded": r["predicted"],
                "graded_interval": r["ci95"],
                "graded_inside": bool(r["inside"]),
                "now": b["return_at_F"],
                "interval_now": [lo, hi],
                "inside_now": bool(lo <= r["measured"] <= hi),
                "ceiling_now": b["return_ceiling"],
                "ceiling_ci95_now": b["return_ceiling_ci95"],
            }
        )
        print(
            "budget sigma %.4g: measured %.1f graded %.1f [%.1f, %.1f] now %.1f [%.1f, %.1f] %s (ceiling %.1f)"
            % (
                r["sigma"],
                r["measured"],
                r["predicted"],
                *r["ci95"],
                b["return_at_F"],
                lo,
                hi,
                budget[-1]["inside_now"],
                b["return_ceiling"],
            )
        )
    summary = {
        "points": len(rows),
        "inside_graded": sum(r["graded_inside"] for r in rows),
        "inside_now": sum(r["inside_now"] for r in rows),
        "max_width_now": max(r["width_now"] for r in rows),
        "misfit_log_sd": predict.misfit(res),
        "extrapolation_log_sd_per_log_utd": predict.extrapolation(res),
        "n_seeds": n,
        "budget_points": len(budget),
        "budget_inside_graded": sum(b["graded_inside"] for b in budget),
        "budget_inside_now": sum(b["inside_now"] for b in budget),
    }
    print(json.dumps(summary))
    save(
        args.out,
        {
            "command": " ".join(sys.argv),
            "study": pred.get("study"),
            "summary": summary,
            "rows": rows,
            "budget": budget,
        },
    )


if __name__ == "__main__":
    main()
