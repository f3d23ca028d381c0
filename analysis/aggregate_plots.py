"""Figures of the aggregate measures (aggregate.compare, fits.json's `aggregates`): interval estimates, performance
profiles and probability of improvement, as Agarwal et al. 2021 draw them. Drawing only."""

import numpy as np

from .plots import _legend, _save, plt


def _interval(ax, rows, name, y, color, label):
    """Point estimates with their 95% intervals as horizontal error bars (visible when an interval is 0 wide)."""
    p = np.array([r[name] for r in rows])
    ci = np.array([r[name + "_ci95"] for r in rows])
    # a percentile interval need not contain the point (a skewed bootstrap): clip, matplotlib refuses < 0
    err = np.clip([p - ci[:, 0], ci[:, 1] - p], 0, None)
    ax.errorbar(p, y, xerr=err, fmt="o", color=color, ms=4, capsize=3, label=label)


def aggregates(res, state, path):
    """Three panels: IQM and mean with 95% intervals per configuration, performance profiles with bands, and
    P(configuration > the first) with its interval."""
    agg = res["aggregates"]
    rows, key = agg["rows"], agg["axis"]
    labels = [f"{key}={r[key]:g}" for r in rows]
    y = np.arange(len(rows))
    fig, axes = plt.subplots(1, 3, figsize=(11.0, 0.5 * len(rows) + 2.2))
    ax = axes[0]
    for k, (name, color) in enumerate((("IQM", "C0"), ("mean", "C1"))):
        _interval(ax, rows, name, y + 0.15 * (2 * k - 1), color, name)
    ax.set_yticks(y, labels)
    ax.set_xlabel("normalised score")
    ax.set_title("IQM and mean (95% CI)")
    _legend(ax, fontsize=7)
    ax = axes[1]
    taus = np.asarray(agg["taus"], float)
    for i, r in enumerate(rows):
        p = agg["profiles"][r[key]]
        ax.plot(taus, p["profile"], color=f"C{i}", label=labels[i])
        ax.fill_between(taus, p["lo"], p["hi"], color=f"C{i}", alpha=0.2, lw=0)
    ax.set_xlabel("normalised score τ")
    ax.set_ylabel("fraction of runs > τ")
    ax.set_title("performance profiles")
    _legend(ax, fontsize=7)
    ax = axes[2]
    _interval(ax, rows, "P_improve_vs_first", y, "C2", None)
    ax.axvline(0.5, color="0.5", ls=":")
    ax.set_yticks(y, labels)
    ax.set_xlim(-0.03, 1.03)
    ax.set_title(f"P({key} > {labels[0]})")
    _save(fig, path)
