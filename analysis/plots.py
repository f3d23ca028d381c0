"""Figures (matplotlib, Agg). Each analysis figure takes an AnalysisResult's fits (the fits.json dict) and
state (analysis/result.py) and a path; `grade` takes a grade dict (predict.grade)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import fit  # noqa: E402

DPI = 80  # small files, fast to write; enough to read the report


def _grid(n, w=3.0, h=2.4):
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def _plain_log_ticks(ax):
    """Plain tick labels on log axes: the default mathtext labels cost ~1/3 of all plotting time
    (mathtext parsing) and the minor labels overlap."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
        if scale == "log":
            lo, hi = axis.get_view_interval()
            if not hi > lo * 1.001:  # one value only (e.g. a flat batch-size rule): widen the axis
                lo, hi = lo / 1.5, hi * 1.5
                (ax.set_xlim if axis is ax.xaxis else ax.set_ylim)(lo, hi)
            if hi / max(lo, 1e-300) < 30:  # under ~1.5 decades: label 1-2-5 steps, else decades only
                axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())


def _legend(ax, **kw):
    """A legend when something on `ax` has a label (matplotlib warns on an empty one: a plot with no fit)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def _save(fig, path):
    for ax in fig.axes:
        _plain_log_ticks(ax)
    # fixed margins instead of tight_layout: tight_layout measured ~0.3 s a figure (text extents)
    w, h = fig.get_size_inches()
    rows = max(1, len({round(ax.get_position().y0, 3) for ax in fig.axes if ax.get_visible()}))
    fig.subplots_adjust(
        left=1.0 / w,
        right=1 - 0.15 / w,
        bottom=0.6 / h,
        top=1 - 0.35 / h,
        wspace=0.5,
        hspace=0.9 * rows / max(h, 1),
    )
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def learning_curves(res, state, path):
    """Seed-mean normalised return, its isotonic fit and the threshold crossings, one panel per task."""
    chosen, tasks, J, fitJ = state.chosen, state.tasks, np.asarray(res["thresholds"]), state.fit_j
    fig, axes = _grid(len(tasks), 3.6, 2.8)
    cmap = plt.get_cmap("viridis")
    utds = state.utds
    std = {(r["task"], r["sigma"], r["J"]): r["D_J_std"] for r in res["crossings"]}
    for ax, t in zip(axes, tasks):
        for c in chosen:
            if c["task"] != t:
                continue
            col = cmap(np.searchsorted(utds, c["sigma"]) / max(len(utds) - 1, 1))
            y = c["norm"].mean(1)
            step = max(1, len(y) // 300)  # thin long curves for drawing only
            ax.plot(c["steps"][::step], y[::step], color=col, alpha=0.25, lw=0.8)
            ax.plot(c["steps"][::step], fit.isotonic(y)[::step], color=col, lw=1.3, label=f"σ={c['sigma']:g}")
            idx = fit.crossing_index(y, J[fitJ])
            ok = idx >= 0
            err = [std.get((t, c["sigma"], float(j))) or 0.0 for j in J[fitJ][ok]]  # bootstrap std of D_J
            ax.errorbar(
                c["steps"][idx[ok]], J[fitJ][ok], xerr=err, fmt="o", color=col, ms=3, lw=0.8, capsize=1.5
            )
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("env steps")
        ax.set_ylabel("return (0-1000)")
    _legend(axes[0], fontsize=6)
    _save(fig, path)


def data_efficiency(res, state, path):
    """Pooled D_J vs sigma (points: task-mean of median-normalised times x m) with the fitted laws."""
    utds, times, J, fitJ = state.utds, state.times, np.asarray(res["thresholds"]), state.fit_j
    norm, m = fit.pooled_times(times)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    cmap = plt.get_cmap("viridis")
    xs = np.logspace(np.log10(utds.min()), np.log10(utds.max()), 100)
    for n, (k, row) in enumerate(zip(fitJ, state.de_fit)):
        col = cmap(n / max(len(fitJ) - 1, 1))
        ax.plot(utds, norm[:, k] * m, "o", color=col, ms=4)
        if row.get("converged"):
            ax.plot(xs, fit.d_of_sigma(row, xs), "-", color=col, lw=1.2, label=f"J={J[k]:.0f}")
        elif row.get("a") is not None:
            ax.plot(
                xs, fit.d_of_sigma(row, xs), ":", color=col, lw=1.2, label=f"J={J[k]:.0f} (not converged)"
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("σ (UTD)")
    ax.set_ylabel("D_J: env steps to J")
    _legend(ax, fontsize=6, ncol=2)
    _save(fig, path)


def pareto(res, state, path):
    """Compute-data plane: empirical points, fitted frontier per J, the budget optimum per J."""
    J, fitJ, utds = np.asarray(res["thresholds"]), state.fit_j, state.utds
    xs = np.logspace(np.log10(utds.min()), np.log10(utds.max()), 100)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    cmap = plt.get_cmap("viridis")
    pts = res["pareto"]
    for n, (k, row) in enumerate(zip(fitJ, state.de_fit)):
        col = cmap(n / max(len(fitJ) - 1, 1))
        p = [q for q in pts if q["J"] == float(J[k])]
        ax.scatter(
            [q["C"] for q in p], [q["D"] for q in p], color=col, s=[18 if q["frontier"] else 6 for q in p]
        )
        if row.get("converged"):
            d = fit.d_of_sigma(row, xs)
            ax.plot(state.compute_fn(xs, d), d, color=col, lw=1)
    for o in res.get("budget", {}).get("points", []):
        ax.plot(o["C"], o["D"], "o", mfc="none", mec="k", ms=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("C_J: compute to J (FLOPs)")
    ax.set_ylabel("D_J: data to J")
    ax.set_title("data-compute Pareto frontier (circles: budget optimum)", fontsize=9)
    _save(fig, path)


def budget(res, state, path):
    """The budget-optimal sigma* per threshold against its budget F, with the fitted power law."""
    b = res.get("budget", {})
    fig, ax = plt.subplots(figsize=(5, 3.6))
    if "points" in b:
        F = np.array([o["F"] for o in b["points"]])
        s = np.array([o["sigma"] for o in b["points"]])
        order = np.argsort(F)
        F, s = F[order], s[order]
        k = b["holdout_top_k"]
        ntr = len(F) - k
        ax.plot(F[:ntr], s[:ntr], "o", label="σ* (fitted)")
        ax.plot(F[ntr:], s[ntr:], "x", ms=9, mew=2, label="σ* (held out)")
        xs = np.logspace(np.log10(F.min()) - 0.1, np.log10(F.max()) + 0.1, 50)
        ss = b["sigma_star"]
        ax.plot(
            xs,
            ss["coef"] * xs ** ss["exponent"],
            "k--",
            label=f"σ* = {ss['coef']:.2e} F^{ss['exponent']:.2f}"
            + ("" if b["holdout_rel_error"] is None else f"; held-out err {b['holdout_rel_error']:.0%}"),
        )
        _legend(ax, fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("budget F = C + δ D")
    ax.set_ylabel("σ*")
    _save(fig, path)


def hparams(res, state, path):
    """B* and lr* against sigma: the rules (one line per task) and the sweep's best values."""
    rules = res["hparams"]
    best = res.get("best_hparams")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, (name, col) in zip(axes, (("batch_size", "bs_boot"), ("learning_rate", "lr_boot"))):
        r = rules.get(name)
        if not r:
            ax.set_visible(False)
            continue
        tasks = sorted(r["intercepts"])
        cmap = plt.get_cmap("tab10")
        sig = np.array(state.utds if best is None else sorted({b["sigma"] for b in best}))
        xs = np.logspace(np.log10(sig.min()), np.log10(sig.max()), 20)
        for i, t in enumerate(tasks):
            if best is not None:
                pts = [b for b in best if b["task"] == t]
                ax.errorbar(
                    [b["sigma"] for b in pts],
                    [b[col] for b in pts],
                    yerr=[b[col + "_std"] for b in pts],
                    fmt="o",
                    color=cmap(i),
                    ms=4,
                    capsize=2,
                )
            ax.plot(xs, fit.rule_value(r, xs, t), color=cmap(i), label=t)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("σ")
        ax.set_title(f"{name}*: slope {r['slope']:.3f}", fontsize=9)
        _legend(ax, fontsize=6)
    _save(fig, path)


def intrinsic(res, state, path):
    """R5's surface D_J(sigma) per task and model size; R2's N_opt exponent in the title."""
    ms = res.get("model_size_fits", {})
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for t, f in ms.get("surface", {}).items():
        if "error" in f:
            continue
        s = np.array(sorted({c["sigma"] for c in state.curves if c["task"] == t}))
        for n in sorted({c["model_size"] for c in state.curves if c["task"] == t}):
            ax.plot(s, fit.surface_value(f, s, n), "-", label=f"{t} N={n:.2g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("σ")
    ax.set_ylabel("D_J (R5 surface fit)")
    if ms.get("n_opt_exponent") is not None:
        ax.set_title(f"R2: N_opt ∝ C^{ms['n_opt_exponent']:.2f}", fontsize=9)
    _legend(ax, fontsize=6)
    _save(fig, path)


def surface(res, state, path):
    """R5 surface lines against the measured cells (with their std), one panel per task (or pooled)."""
    import pandas as pd

    df = pd.DataFrame(res["surface_table"])
    names = [k for k, v in res.get("surface", {}).items() if "error" not in v]
    fig, axes = _grid(max(len(names), 1), 3.6, 2.8)
    cmap = plt.get_cmap("viridis")
    for ax, name in zip(axes, names):
        f = res["surface"][name]
        task = name.split("@J=")[0]
        g = df[df.task == task]
        if f.get("J") is not None and "J" in g:
            g = g[np.isclose(g.J.astype(float), f["J"])]
        Ns = sorted(g.N.unique())
        s = np.logspace(np.log10(g.sigma.min()), np.log10(g.sigma.max()), 40)
        for i, n in enumerate(Ns):
            col = cmap(i / max(len(Ns) - 1, 1))
            h = g[g.N == n].sort_values("sigma")
            ax.errorbar(
                h.sigma,
                h.time_to_threshold,
                yerr=h.time_to_threshold_std.fillna(0),
                fmt="o",
                color=col,
                ms=3,
                capsize=2,
            )
            ax.plot(s, fit.surface_value(f, s, n), "-", color=col, lw=1, label=f"N={n:.3g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("σ (UTD)")
        ax.set_ylabel("env steps to threshold")
        _legend(ax, fontsize=6)
    _save(fig, path)


def grade(g, path):
    """Predicted vs measured data to each threshold for the held-out configurations (95% intervals as
    bars)."""
    fig, ax = plt.subplots(figsize=(5, 4.2))
    rows = [r for r in g["rows"] if r["D_meas"] is not None and r["D_pred"] is not None]
    cmap = plt.get_cmap("viridis")
    Js = sorted({r["J"] for r in g["rows"]})
    for r in rows:
        col = cmap(Js.index(r["J"]) / max(len(Js) - 1, 1))
        lo, hi = r["D_pred_lo"], r["D_pred_hi"]
        # a point estimate can lie outside its bootstrap interval (crossings are skewed): bars never go
        # negative
        bar = lambda c, lo, hi: (
            [[max(c - lo, 0.0)], [max(hi - c, 0.0)]] if lo is not None and hi is not None else None
        )
        yerr = bar(r["D_pred"], lo, hi)
        xerr = bar(r["D_meas"], *(r.get("D_meas_ci95") or [None, None]))
        ax.errorbar(
            r["D_meas"],
            r["D_pred"],
            yerr=yerr,
            xerr=xerr,
            fmt="o" if r["kind"] == "utd" else "s",
            color=col,
            ms=4,
            lw=0.8,
            capsize=2,
        )
    if rows:
        v = [r["D_meas"] for r in rows] + [r["D_pred"] for r in rows]
        x = np.array([min(v) * 0.7, max(v) * 1.4])
        ax.plot(x, x, "k-", lw=0.8)
        t = g["summary"]["target_rel_error"]
        ax.fill_between(x, x * (1 - t), x * (1 + t), color="k", alpha=0.08, lw=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("measured D_J (env steps)")
    ax.set_ylabel("predicted D_J")
    ax.set_title(
        "held-out grade (o: UTD, s: budget optimum; band ±%.0f%%)" % (100 * g["summary"]["target_rel_error"]),
        fontsize=8,
    )
    _save(fig, path)
