"""Write the results of pipeline.run_analysis: fits.json, CSV + markdown tables, PNGs, report.md,
and a short rich table for the terminal. The study's report is study_report.py."""

import json
import os

import numpy as np
import pandas as pd


def to_json(o):
    """`o` with numpy values as Python ones and non-finite floats as None (JSON's null), keys as strings."""
    if isinstance(o, dict):
        return {str(k): to_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [to_json(v) for v in o]
    if isinstance(o, np.ndarray):
        return to_json(o.tolist())
    if isinstance(o, (np.floating, float)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def _table(df, out, name):
    df.to_csv(os.path.join(out, name + ".csv"), index=False)
    md = df.to_markdown(index=False, floatfmt=".4g") if _has_tabulate() else _md(df)
    with open(os.path.join(out, name + ".md"), "w") as fh:
        fh.write(md + "\n")
    return md


def _has_tabulate():
    try:
        import tabulate  # noqa: F401

        return True
    except ImportError:
        return False


def _md(df):
    """pandas.to_markdown needs `tabulate`; this keeps the dependency list short."""
    fmt = lambda v: f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(fmt(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join([head, sep] + rows)


def tables(res):
    t = {}
    rows = []
    for name, r in res["hparams"].items():
        for task, k in r["intercepts"].items():
            rows.append(
                {
                    "rule": name,
                    "task": task,
                    "slope": r["slope"],
                    "intercept_log10": k,
                    "value_at_sigma1": 10**k,
                    "r2": r.get("r2"),
                    "source": r.get("source", ""),
                }
            )
    t["hparam_rules"] = pd.DataFrame(rows)
    if res.get("best_hparams"):
        t["best_hparams"] = pd.DataFrame(res["best_hparams"])[
            [
                "task",
                "sigma",
                "best_bs",
                "best_lr",
                "best_D",
                "bs_boot",
                "bs_boot_std",
                "lr_boot",
                "lr_boot_std",
            ]
        ]
    t["data_efficiency"] = pd.DataFrame(
        [
            {
                "J": r["J"],
                "D_min": r.get("D_min"),
                "D_min_lo": r["D_min_ci95"][0],
                "D_min_hi": r["D_min_ci95"][1],
                "beta": r.get("beta"),
                "beta_lo": r["beta_ci95"][0],
                "beta_hi": r["beta_ci95"][1],
                "alpha": r.get("alpha"),
                "alpha_lo": r["alpha_ci95"][0],
                "alpha_hi": r["alpha_ci95"][1],
                "converged": r.get("converged"),
            }
            for r in res["data_efficiency"]
        ]
    )
    t["data_efficiency_per_task"] = pd.DataFrame(
        [
            {"J": r["J"], "task": task, **v}
            for r in res["data_efficiency"]
            for task, v in (r.get("per_task") or {}).items()
        ]
    )
    t["crossings"] = pd.DataFrame(res["crossings"])
    if "points" in res.get("budget", {}):
        t["budget"] = pd.DataFrame(res["budget"]["points"])
    t["pareto"] = pd.DataFrame(res["pareto"])
    if res.get("aggregates"):
        from .aggregate import table

        t["aggregates"] = table(res["aggregates"])
    return t


SURFACE_COLUMNS = [
    "task",
    "sigma",
    "N",
    "time_to_threshold",
    "time_to_threshold_std",
    "time_to_threshold_surface",
]


def _surface_tables(res):
    df = pd.DataFrame(res["surface_table"])
    t = {"surface": df}
    rows = [
        {
            "task": k,
            **{q: v.get(q) for q in ("C", "A", "alpha", "B", "beta", "loss", "converged", "J")},
            **{f"opt_{q}": (v.get("optimum") or {}).get(q) for q in ("sigma", "model_size", "F")},
        }
        for k, v in res.get("surface", {}).items()
        if "error" not in v
    ]
    if rows:
        t["surface_fits"] = pd.DataFrame(rows)
    return t


def write_outputs(result, out, plots=True):
    """fits.json, the tables (CSV and markdown), the figures (unless `plots` is false) and report.md of an
    AnalysisResult under the folder `out`."""
    from . import plots as P

    res, state = result.fits, result.state
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "fits.json"), "w") as fh:
        json.dump(to_json(res), fh, indent=1)
    if res.get("mode") == "r5":  # R5's released data: the surface only
        mds = {k: _table(v, out, k) for k, v in _surface_tables(res).items()}
        figs = []
        if plots:
            P.surface(res, state, os.path.join(out, "surface.png"))
            figs.append(
                ("surface.png", "R5 surface D(σ, N) = C (1 + (A/σ)^α + (B/N)^β) against the measured cells")
            )
        _report_r5(res, out, mds, figs)
        return
    tabs = tables(res)
    if res.get("surface_table"):
        tabs.update(_surface_tables(res))
    mds = {k: _table(v, out, k) for k, v in tabs.items()}
    figs = []
    if plots:
        spec = [
            (
                "learning_curves.png",
                P.learning_curves,
                "Learning curves (seed mean, isotonic fit, crossings)",
            ),
            ("data_efficiency.png", P.data_efficiency, "D_J vs σ with the pooled fits"),
            ("pareto.png", P.pareto, "Data-compute Pareto frontier"),
            ("budget.png", P.budget, "Budget-optimal σ* vs budget (held-out points as x)"),
            ("hparams.png", P.hparams, "B* and lr* vs σ (shared slope, per-task intercepts)"),
        ]
        if not res["compute"].get("formula"):  # a sweep without N: no compute outputs
            spec = [x for x in spec if x[0] not in ("pareto.png", "budget.png")]
        if res.get("model_size_fits"):
            spec.append(("intrinsic.png", P.intrinsic, "Model size: R5 surface and R2 intrinsic performance"))
        if res.get("surface_table"):
            spec.append(("surface.png", P.surface, "R5 surface against the measured cells"))
        if res.get("aggregates"):
            from .aggregate_plots import aggregates

            title = "Across tasks and seeds: IQM, mean, performance profiles, probability of improvement"
            spec.append(("aggregates.png", aggregates, title))
        for fn, f, title in spec:
            f(res, state, os.path.join(out, fn))
            figs.append((fn, title))
    _report(res, out, mds, figs)


def _ci(v):
    return "n/a" if not v or v[0] is None else f"[{v[0]:.3g}, {v[1]:.3g}]"


def _report(res, out, mds, figs):
    L = [
        "# Scaling analysis report",
        "",
        f"Inputs: {', '.join(res['config']['inputs'])}  ",
        f"{res['counts']['configs']} configurations, {res['counts']['tasks']} tasks, "
        f"UTDs {res['counts']['utds']}, >= {res['counts']['seeds_min']} seeds; "
        f"bootstrap {res['config']['bootstrap']} resamples.  ",
        f"Compute: {res['compute']['formula'] or 'skipped (no model_size)'}; "
        f"batch size: {res['compute']['batch_size']}.  ",
        f"Returns fitted: {res.get('returns', 'return_mean')}.",
        "",
    ]
    if res["notes"]:
        L += ["## Notes", ""] + [f"- {n}" for n in res["notes"]] + [""]
    if res["skipped"]:
        L += ["## Skipped input", ""] + [f"- `{s['path']}`: {s['reason']}" for s in res["skipped"]] + [""]
    figs = dict(figs)
    order = [
        ("learning_curves.png", None),
        ("hparams.png", "hparam_rules"),
        ("data_efficiency.png", "data_efficiency"),
        ("aggregates.png", "aggregates"),
        ("pareto.png", None),
        ("budget.png", "budget"),
        ("intrinsic.png", None),
        ("surface.png", "surface_fits"),
    ]
    for fn, tab in order:
        if fn in figs:
            L += [f"## {figs[fn]}", "", f"![{fn}]({fn})", ""]
        if tab and tab in mds:
            L += [mds[tab], ""]
        if tab == "aggregates" and tab in mds:
            L += [f"{res['aggregates']['note']}; {res['aggregates']['reps']} resamples.", ""]
        if fn == "budget.png" and "sigma_star" in res.get("budget", {}):
            b = res["budget"]
            ss = b["sigma_star"]
            held = (
                f"held-out relative error on the {b['holdout_top_k']} largest: {b['holdout_rel_error']:.1%}"
                if b["holdout_rel_error"] is not None
                else "no budget held out (holdout_top_k: 0)"
            )
            L += [
                f"σ* = {ss['coef']:.3g} · F^{ss['exponent']:.3f} (95% bootstrap CI of the exponent "
                f"{_ci(ss['exponent_ci95'])}); fitted on {b['n_train']} budgets, " + held,
                "",
            ]
    if "best_hparams" in mds:
        L += ["## Best hyperparameters per task and UTD", "", mds["best_hparams"], ""]
    L += wall_clock_section(res.get("wall_clock"))
    L += ["Tables: " + ", ".join(f"`{k}.csv`" for k in mds) + "; all numbers in `fits.json`.", ""]
    with open(os.path.join(out, "report.md"), "w") as fh:
        fh.write("\n".join(L))


def _report_r5(res, out, mds, figs):
    c = res["counts"]
    L = [
        "# R5 model-size analysis",
        "",
        f"Inputs: {', '.join(res['config']['inputs'])}  ",
        f"{c['configs']} configurations, {c['tasks']} tasks, UTDs {c['utds']}, >= {c['seeds_min']} runs "
        f"each; time to threshold with the best batch size per cell, std over {res['config']['bootstrap']} "
        "bootstrap resamples (pooled: across tasks); surface fitted in log space as R5 (docs/science.md 3).",
        "",
    ]
    if res["notes"]:
        L += ["## Notes", ""] + [f"- {n}" for n in res["notes"]] + [""]
    for fn, title in figs:
        L += [f"## {title}", "", f"![{fn}]({fn})", ""]
    if "surface_fits" in mds:
        L += [
            "## Surface parameters (original units) and the compute-optimal (σ, N)",
            "",
            mds["surface_fits"],
            "",
        ]
    L += [
        "## Cells",
        "",
        mds["surface"],
        "",
        "Tables: " + ", ".join(f"`{k}.csv`" for k in mds) + "; all numbers in `fits.json`.",
        "",
    ]
    with open(os.path.join(out, "report.md"), "w") as fh:
        fh.write("\n".join(L))


def summary(result, console=None):
    """Short rich table of an AnalysisResult: hyperparameter rules, D_J fit at the highest threshold,
    sigma*(F)."""
    from rich.console import Console
    from rich.table import Table

    res = result.fits
    console = console or Console()
    t = Table(title="pql-scale analyze", show_lines=False)
    t.add_column("fit")
    t.add_column("result")
    for name, f in res.get("surface", {}).items():
        if "error" not in f:
            t.add_row(
                f"surface {name}",
                f"C {f['C']:.3g} (1 + ({f['A']:.3g}/σ)^{f['alpha']:.3f} + ({f['B']:.3g}/N)^{f['beta']:.3f})",
            )
    for name, r in res["hparams"].items():
        at1 = ", ".join(f"{k} {10**v:.3g}" for k, v in r["intercepts"].items())
        t.add_row(f"{name}*(σ)", f"slope {r['slope']:.3f}; at σ=1: " + at1)
    for r in result.state.de_fit[-1:]:
        ok = "" if r.get("converged") else " (NOT converged)"
        if r.get("D_min") is not None:
            t.add_row(
                f"D_J, J={r['J']:.0f}", f"D_min {r['D_min']:.3g}, β {r['beta']:.3g}, α {r['alpha']:.3f}{ok}"
            )
    b = res.get("budget", {})
    if "sigma_star" in b:
        held = "" if b["holdout_rel_error"] is None else f"; held-out error {b['holdout_rel_error']:.1%}"
        t.add_row("σ*(F)", f"{b['sigma_star']['coef']:.3g} · F^{b['sigma_star']['exponent']:.3f}" + held)
    ms = res.get("model_size_fits", {})
    if ms.get("n_opt_exponent") is not None:
        t.add_row("N_opt(C)", f"∝ C^{ms['n_opt_exponent']:.3f}")
    console.print(t)


def wall_clock_section(w):
    """budget: wall_clock: measured rates, the model's error against measured time to threshold, the
    optimum."""
    if not w:
        return []
    L = [
        "## Wall-clock budget (analysis/wallclock.py)",
        "",
        "T = a D + u U + C / R (sync: the costs add) or max(a D, u U + C / R) (trio: roles in parallel), "
        "D transitions, U updates, C update FLOPs; a, u and R from the logs; delta = a f / (u + f / R) at the "
        "runs' median FLOPs per update f.",
        "",
        "| task | mode | a (s / transition) | u (s / update) | R (update FLOPs / s) | delta | log intervals |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in w["rates"]:
        if "error" in r:
            L.append(f"| {r['error']} | | | | | | |")
        else:
            L.append(
                f"| {r['task']} | {r['mode']} | {r['a_s_per_transition']:.3g} | "
                f"{r.get('s_per_update', 0.0):.3g} | "
                f"{r['learner_flops_per_s']:.3g} | {r['delta'] or float('nan'):.3g} | "
                f"{r['intervals']} |"
            )
    L.append("")
    for mode, c in w["check"].items():
        if c["n"]:
            L.append(
                f"- model vs measured wall_time_s to threshold, {mode}: median |error| "
                f"{c['median_abs_rel_error']:.1%}, max {c['max_abs_rel_error']:.1%} over {c['n']} "
                "(UTD, J) crossings"
            )
    for mode, o in w["optimum"].items():
        pts = ", ".join(f"J={p['J']:.0f}: σ*={p['sigma']:.3g} (T={p['T']:.3g} s)" for p in o["points"])
        L.append(f"- wall-clock-optimal UTD, {mode}: {pts or 'none (no converged D_J fit)'}")
        if "sigma_star_of_T" in o:
            f = o["sigma_star_of_T"]
            L.append(f"  σ*(T) = {f['coef']:.3g} · T^{f['exponent']:.3f}")
    return L + [""]
