"""Wall-clock budgets from the throughput our runs log (docs/science.md 1: F = C + delta D assumes the simulator
and the learner take turns; PQL's trio runs them in parallel).

A run spends `a` seconds of simulator (+ actor) time per env transition, `u` seconds per gradient update
whatever its size (launching kernels, the optimiser step, Python: on a CPU with small nets this fixed part is
most of an update, so an update at batch 256 costs about what one at 128 does) and `1 / R` seconds per FLOP of
gradient updates (R = the learner's FLOP rate). The time to reach J with D transitions, U updates and C update
FLOPs:
    sync:  T = a D + u U + C / R            (one process: the costs add)
    trio:  T = max(a D, u U + C / R)        (actor and learners in parallel: the slower side sets the pace)
`a`, `u` and `R` are measured from the logs: for sync runs a non-negative least-squares fit of each log
interval's seconds on its (transitions, updates, FLOPs); where every run has one batch size, updates and FLOPs
are proportional and the fit's split between u and R is arbitrary but its times are not. For trio runs each
side's busy time (1 - wait fraction) per transition and per FLOP (u = 0). delta, the FLOPs-equivalent cost of
one transition, is a over the seconds one update FLOP costs at the runs' median FLOPs per update f:
delta = a f / (u + f / R) (= a R when u = 0). A run also pays a fixed start-up time t0 before its first log
point (imports, spawning the trio's learners): the median over runs of the first log point's wall_time_s minus
the model's time for it, added to T.
`budget_outputs` is the analysis's `budget: wall_clock` section built from these.
Pure functions over arrays and tables: nothing here reads files.
"""

import numpy as np
from scipy import optimize

from . import fit
from .errors import AnalysisInputError


def flops_per_sample(c):
    """A run's measured FLOPs per sample per update at each log point that has one: the log points before the
    first update (0 FLOPs over 0 updates) have none, they are no NaN to divide into."""
    flops, den = np.broadcast_arrays(np.asarray(c["flops"], float), np.asarray(c["grad_steps"], float))
    den = den * float(c["batch_size"])
    ok = np.isfinite(flops) & np.isfinite(den) & (den > 0)
    r = flops[ok] / den[ok]
    return r[r > 0]


def _diffs(g):
    g = g.sort_values("env_steps")
    d = {k: np.diff(g[k].to_numpy(float)) for k in ("wall_time_s", "env_steps", "flops")}
    # updates per interval; a table without them (or with NaNs) gives the per-update term nothing to fit
    d["updates"] = (
        np.diff(g["grad_steps"].to_numpy(float)) if "grad_steps" in g else np.zeros_like(d["flops"])
    )
    d["updates"] = np.where(np.isfinite(d["updates"]) & (d["updates"] > 0), d["updates"], 0.0)
    busy = {
        k: g[k].to_numpy(float)[1:] if k in g else np.full(len(d["env_steps"]), np.nan)
        for k in ("actor_busy", "learner_busy")
    }
    ok = (d["wall_time_s"] > 0) & (d["env_steps"] > 0) & np.isfinite(d["flops"])
    return {k: v[ok] for k, v in {**d, **busy}.items()}


def rates(table):
    """Per (task, mode): a (s per transition), u (s per update), R (update FLOPs per s), delta (the
    FLOPs-equivalent of a transition at the runs' median FLOPs per update), and how many log intervals they
    rest on. `table`: the tidy run table with env_steps, grad_steps, flops, wall_time_s, run, task, mode and,
    for trio runs, actor_busy / learner_busy (1 - wait fractions)."""
    if "mode" not in table or table["mode"].isna().all():
        raise AnalysisInputError(
            "budget: wall_clock needs runs that log their mode (run.json) and "
            "throughput; these inputs carry none (qscaled / W&B data): use budget: "
            "flops"
        )
    out = {}
    for (task, mode), g in table.dropna(subset=["mode"]).groupby(["task", "mode"]):
        parts = [_diffs(h) for _, h in g.groupby("run")]
        d = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
        if not parts or len(d["env_steps"]) < 2 or not (d["flops"] > 0).any():
            out[(task, mode)] = {"error": f"{task}/{mode}: fewer than 2 log intervals with updates"}
            continue
        learn = d["flops"] > 0
        has_u = learn & (d["updates"] > 0)
        fpu = d["flops"][has_u] / d["updates"][has_u]
        f_upd = float(np.median(fpu)) if has_u.any() else np.nan
        if mode == "sync":
            # one size of update (every run at one batch): updates and FLOPs are proportional and their split
            # is not identifiable, so all of it goes to the FLOPs (u = 0, R as before); several sizes
            # (within 5% counts as one) separate a fixed per-update cost from a per-FLOP one
            one_size = not has_u.any() or fpu.max() <= 1.05 * fpu.min()
            cols = [d["env_steps"], np.zeros_like(d["updates"]) if one_size else d["updates"], d["flops"]]
            A = np.column_stack(cols)
            scale = np.where(A.max(0) > 0, A.max(0), 1.0)
            coef, _ = optimize.nnls(A / scale, d["wall_time_s"])
            a, u, inv_r = coef / scale
            pred = A @ np.array([a, u, inv_r])
        else:  # trio: each side's busy seconds per unit of its own work
            ab = np.where(np.isfinite(d["actor_busy"]), d["actor_busy"], 1.0)
            lb = np.where(np.isfinite(d["learner_busy"]), d["learner_busy"], 1.0)
            a, u = float(np.median(ab * d["wall_time_s"] / d["env_steps"])), 0.0
            inv_r = float(np.median((lb * d["wall_time_s"])[learn] / d["flops"][learn]))
            pred = np.maximum(a * d["env_steps"], inv_r * d["flops"])
        rel = np.abs(pred - d["wall_time_s"]) / d["wall_time_s"]
        R = 1.0 / inv_r if inv_r > 0 else np.inf
        # seconds one update FLOP costs at the median update size f_upd
        s_per_flop = (u / f_upd if u > 0 else 0.0) + inv_r
        first = [h.sort_values("env_steps").iloc[0] for _, h in g.groupby("run")]
        t0 = float(
            np.median(
                [
                    max(
                        f["wall_time_s"]
                        - time_to(
                            f["env_steps"],
                            f["flops"] if np.isfinite(f["flops"]) else 0.0,
                            a,
                            R,
                            mode,
                            U=f["grad_steps"] if np.isfinite(f.get("grad_steps", np.nan)) else 0.0,
                            u=u,
                        ),
                        0.0,
                    )
                    for f in first
                ]
            )
        )
        out[(task, mode)] = {
            "task": task,
            "mode": mode,
            "a_s_per_transition": float(a),
            "s_per_update": float(u),
            "learner_flops_per_s": float(R),
            "flops_per_update": f_upd,
            "delta": float(a / s_per_flop) if s_per_flop > 0 and np.isfinite(s_per_flop) else None,
            "t0_s": t0,
            "intervals": int(len(rel)),
            # the share of the logged time the model gives the transitions: ~0 leaves delta unmeasured
            "transition_time_share": float(a * d["env_steps"].sum() / d["wall_time_s"].sum()),
            "interval_median_rel_error": float(np.median(rel)),
        }
    return out


def time_to(D, C, a, R, mode, t0=0.0, U=0.0, u=0.0):
    """Model wall-clock seconds for D transitions, U updates and C update FLOPs (arrays broadcast), after t0
    of start-up."""
    env = a * np.asarray(D, float)
    learn = np.asarray(C, float) / R + np.asarray(u, float) * np.asarray(U, float)
    return t0 + (env + learn if mode == "sync" else np.maximum(env, learn))


def optimum(d_of_sigma, c_of_sigma_d, sigma_range, a, R, mode, n=100, t0=0.0, u=0.0):
    """The wall-clock-optimal UTD along a fitted D_J(sigma): minimise T(sigma) over the range that was run
    (sigma D updates)."""
    s = np.logspace(np.log10(sigma_range[0]), np.log10(sigma_range[1]), n)
    d = d_of_sigma(s)
    t = np.where(d > 0, time_to(d, c_of_sigma_d(s, d), a, R, mode, t0, U=s * d, u=u), np.inf)
    i = int(np.argmin(t))
    return {"sigma": float(s[i]), "T": float(t[i]), "D": float(d[i])}


def check(D, C, measured_T, a, R, mode, t0=0.0, U=0.0, u=0.0):
    """Model vs the runs' measured wall_time_s at the crossings -> relative errors (pred - meas) / meas."""
    D, C, m = (np.asarray(v, float) for v in (D, C, measured_T))
    pred = time_to(D, C, a, R, mode, t0, U=U, u=u)
    ok = np.isfinite(pred) & np.isfinite(m) & (m > 0)
    rel = (pred[ok] - m[ok]) / m[ok]
    return {
        "n": int(ok.sum()),
        "median_abs_rel_error": float(np.median(np.abs(rel))) if len(rel) else None,
        "max_abs_rel_error": float(np.max(np.abs(rel))) if len(rel) else None,
        "rel_errors": rel.tolist(),
    }


def budget_outputs(table, chosen, pt, J, fit_j, point, utds, batch_fn, notes):
    """budget: wall_clock: rates per (task, mode), the model checked against the runs' measured wall_time_s at
    each crossing, and the wall-clock-optimal UTD per threshold. `pt` [n_chosen, K]: D_J of each chosen
    configuration; `point`: the D_J(sigma) fit per threshold index in `fit_j`."""
    rts = rates(table)
    out = {"rates": list(rts.values()), "check": {}, "optimum": {}}
    per_mode = _crossing_costs(table, chosen, pt, J, fit_j, rts)
    for mode, pm in per_mode.items():
        a, R, t0, u = (np.array(pm[k]) for k in ("a", "R", "t0", "u"))
        pred = time_to(pm["D"], pm["C"], a, R, mode, t0, U=pm["U"], u=u)
        chk = check(pm["D"], pm["C"], pm["T"], a, R, mode, t0, U=pm["U"], u=u)
        chk["points"] = [
            {"sigma": s, "J": j, "D": d, "T_measured": t, "T_model": float(p)}
            for s, j, d, t, p in zip(pm["sigma"], pm["J"], pm["D"], pm["T"], pred)
        ]
        out["check"][mode] = chk
        ratios = np.concatenate([flops_per_sample(c) for c in chosen])
        fps = float(np.median(ratios)) if len(ratios) else np.nan
        am, Rm, um = float(np.median(a)), float(np.median(R)), float(np.median(u))
        opts = []
        for n, k in enumerate(fit_j):
            f = point[n]
            if not f.get("converged") or not np.isfinite(fps):
                continue
            o = optimum(
                lambda s: fit.d_of_sigma(f, s),
                lambda s, d: fps * batch_fn(s) * s * d,
                (utds.min(), utds.max()),
                am,
                Rm,
                mode,
                u=um,
            )
            opts.append(dict(o, J=float(J[k])))
        entry = {"points": opts, "a_s_per_transition": am, "s_per_update": um, "learner_flops_per_s": Rm}
        try:
            bf = fit.budget_fit(
                [o["T"] for o in opts], [o["sigma"] for o in opts], min(2, max(len(opts) - 2, 0))
            )
            entry["sigma_star_of_T"] = {
                "coef": bf["coef"],
                "exponent": bf["exponent"],
                "holdout_rel_error": bf["holdout_rel_error"],
            }
        except AnalysisInputError as e:
            entry["error"] = str(e)
        out["optimum"][mode] = entry
    if not per_mode:
        notes.append("budget: wall_clock: no run has both rates measured; wall-clock outputs skipped")
    return out


def _crossing_costs(table, chosen, pt, J, fit_j, rts):
    """Per mode, at every crossing of a chosen configuration whose (task, mode) has both rates: D, the
    measured updates U, FLOPs C and wall_time_s T up to it, the rates a, u, R, t0, and its sigma and J."""
    modes = table.dropna(subset=["mode"]).groupby(["task", "sigma", "batch_size", "lr"])["mode"].first()
    modes = modes.to_dict()
    per_mode = {}
    for i, c in enumerate(chosen):
        mode = modes.get((c["task"], c["sigma"], c["batch_size"], c["lr"]))
        r = rts.get((c["task"], mode), {})
        if "a_s_per_transition" not in r:
            continue
        ok = np.isfinite(c["flops"]) & np.isfinite(c["wall_time_s"])
        for k in fit_j:
            d = pt[i, k]
            if not np.isfinite(d) or ok.sum() < 2:
                continue
            C = np.interp(d, c["steps"][ok], c["flops"][ok])
            T = np.interp(d, c["steps"][ok], c["wall_time_s"][ok])
            gs = np.asarray(c.get("grad_steps", np.full(len(ok), np.nan)), float)
            U = np.interp(d, c["steps"][ok], gs[ok]) if np.isfinite(gs[ok]).all() else c["sigma"] * d
            keys = ("D", "U", "C", "T", "a", "u", "R", "t0", "sigma", "J")
            pm = per_mode.setdefault(mode, {k: [] for k in keys})
            for key, v in (
                ("D", d),
                ("U", U),
                ("C", C),
                ("T", T),
                ("a", r["a_s_per_transition"]),
                ("u", r["s_per_update"]),
                ("R", r["learner_flops_per_s"]),
                ("t0", r["t0_s"]),
                ("sigma", c["sigma"]),
                ("J", float(J[k])),
            ):
                pm[key].append(float(v))
    return per_mode
