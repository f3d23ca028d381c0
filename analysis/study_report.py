"""The study's report.md (`pql-scale study`): its rules, laws, prediction, grade and recommendation."""

from pql_scaling.analysis.aggregate import report_lines
from pql_scaling.analysis.report import _ci, wall_clock_section


def _fmt(v, f="%.3g"):
    return "n/a" if v is None else f % v


def study_report(
    path,
    name,
    task,
    returns_min,
    returns_max,
    grid_fits,
    fitted_fits,
    prediction,
    grade,
    recommendation,
    timings,
    seed_choice=None,
):
    """The study's report.md (pql_scaling/experiments/study/): the rules of its grid stage and the laws of its fitted
    stage (their fits.json dicts), the prediction, its grade against the validation runs, the recommendation
    ({"budget", "sigma", "line"} or None), the time each stage took ({stage: seconds}) and how `seeds: auto`
    was resolved ({stage: costs.choose_seeds's record})."""
    pred, g = prediction, grade
    L = ["# Study %s: %s" % (name, task), ""]
    L += headline(pred, g) + [""]
    L += [
        "R1's protocol (docs/science.md 2): grid -> rules -> fitted -> laws -> prediction -> validation -> "
        "grade.  ",
        "Returns normalised to 0-1000 with R_min = %g, R_max = %g; laws fitted on: %s.  "
        % (returns_min, returns_max, fitted_fits.get("returns")),
        "Prediction written %s by code %s; graded %s by code %s."
        % (pred["time"], pred["code_version"], g["time"], g["code_version"]),
        "",
    ]
    L += _study_laws(grid_fits, fitted_fits)
    L += report_lines(
        fitted_fits.get("aggregates"), "fitted_analysis/aggregates.png", "UTDs of the fitted stage"
    )
    L += _study_validation(pred, g, recommendation)
    L += ["", "## Time", ""] + ["- %s: %.0f s" % kv for kv in timings.items()]
    L += ["- total: %.0f s" % sum(timings.values())] + _seed_lines(seed_choice, pred) + [""]
    with open(path, "w") as f:
        f.write("\n".join(L))


def _num(x, f="%+.2f"):
    return "n/a" if x is None else f % x


def verdict(s, cal, replays):
    """Whether to bet on the laws: (word, reasons). Trust needs the median held-out error within target,
    intervals no wider than 2x, coverage near nominal and no validation run that replays a fitted one."""
    why, med = [], s.get("median_abs_rel_error")
    if replays:
        why.append("%d validation run(s) replay fitted runs" % len(replays))
    if med is None:
        return "no verdict", ["nothing held out was measured"]
    if med > s["target_rel_error"]:
        floor, rms = s.get("median_abs_rel_error_if_unbiased"), (cal or {}).get("z_rms")
        cause = ""
        if floor is not None and rms is not None:  # noise the intervals admit, or misses beyond them (a bias)
            cause = "; noise floor %.1f%%, standardised rms %.2f: %s" % (
                100 * floor,
                rms,
                "the misses are what the intervals admit: more seeds narrow both"
                if rms <= 1.5
                else "the law misses beyond its intervals",
            )
        why.append(
            "median |error| %.1f%% > target %.0f%%%s" % (100 * med, 100 * s["target_rel_error"], cause)
        )
    if (s.get("max_interval_ratio") or 0) > 2:
        why.append("an interval is %.1fx wide (> 2x)" % s["max_interval_ratio"])
    cov = (cal or {}).get("coverage")
    if cov is not None and cov < 0.8:
        why.append("coverage %.0f%% of nominal 95%%: the intervals are too narrow" % (100 * cov))
    if s.get("not_reached"):
        why.append("not reached: " + ", ".join(s["not_reached"]))
    if not why:
        return "trust", ["every check passed"]
    return ("use with care" if med <= 2 * s["target_rel_error"] and not replays else "do not trust"), why


def headline(pred, g):
    """The report's first lines: what was predicted, what was measured, the error, and whether to trust it."""
    s, cal = g["summary"], g.get("calibration") or {}
    word, why = verdict(s, cal, g.get("replays"))
    med = s["median_abs_rel_error"]
    L = [
        "**Verdict: %s** (%s)." % (word, "; ".join(why)),
        "",
        "- Predicted: env steps to reach J = %s at the held-out UTDs %s (fitted on [%g, %g]), with %s seeds "
        "per validation run (seeds %s, none used by a fitted run)."
        % (
            ", ".join("%.0f" % j for j in s["top_thresholds"]),
            ", ".join("%g" % c["sigma"] for c in pred["held_out"]),
            pred["fitted_utd_range"][0],
            pred["fitted_utd_range"][1],
            pred.get("n_seeds") or "?",
            _span(pred.get("validation_seeds")),
        ),
        "- Measured vs predicted: median |error| %s, max %s (target %.0f%%); %d of %d inside the 95%% "
        "interval; widest interval %s (upper / lower)."
        % (
            _pct(med),
            _pct(s["max_abs_rel_error"]),
            100 * s["target_rel_error"],
            s["inside_interval"],
            s["n_measured"],
            "n/a" if s.get("max_interval_ratio") is None else "%.2fx" % s["max_interval_ratio"],
        ),
        "- Calibration: %s of %s held-out points (every threshold) inside their nominal 95%% intervals (%s)."
        % (cal.get("inside", 0), cal.get("n", 0), _pct(cal.get("coverage"), "%.0f%%")),
    ]
    for d in pred.get("held_out_not_run") or []:
        L.append("- Held-out UTD %g predicted but **not run**: %s." % (d["sigma"], d["reason"]))
    if s.get("median_abs_rel_error_if_unbiased") is not None:
        L.append(
            "- Noise floor: with these intervals an unbiased prediction would miss by %s (median) at the top "
            "thresholds; standardised errors log(pred/meas)/sigma over every held-out point: mean %s (bias), "
            "rms %s (1 = calibrated, > 1 intervals too narrow, < 1 too wide)."
            % (
                _pct(s["median_abs_rel_error_if_unbiased"]),
                _num(cal.get("z_mean")),
                _num(cal.get("z_rms"), "%.2f"),
            )
        )
    br = g.get("budget_return")
    if br:
        L.append(
            "- Budget leg: F = %.3g, σ* = %.4g%s: return after %.0f env steps predicted %s %s, measured %s "
            "(error %s)."
            % (
                br["F"],
                br["sigma"],
                " (a fitted UTD: in-sample D_J rows)" if br.get("in_sample") else "",
                br["env_steps"],
                _fmt(br["predicted"], "%.0f"),
                _ci(br["ci95"]),
                _fmt(br["measured"], "%.0f"),
                _pct(br.get("rel_error"), "%+.1f%%"),
            )
        )
    ss = g.get("sigma_star_grade")
    if ss:
        L.append(
            "- σ* graded: measured return at F by UTD %s; best at σ = %.4g; σ* %s."
            % (
                ", ".join("%s: %.0f" % kv for kv in ss["measured"].items()),
                ss["best_measured_sigma"],
                "was the best"
                if ss["sigma_star_is_best"]
                else "fell %.0f points (of 1000) short of it" % (ss["shortfall"] or 0),
            )
        )
        pi = ss.get("p_sigma_star_better") or {}
        if pi:
            L.append(
                "  Across seeds (Agarwal et al. 2021): IQM of the normalised return at F %s; P(a σ* seed beats a seed "
                "at σ) %s; σ* %s."
                % (
                    ", ".join("σ=%s: %.3f %s" % (k, v[0], _ci(v[1])) for k, v in ss["iqm_at_F"].items()),
                    ", ".join("σ=%s: %.2f %s" % (k, v[0], _ci(v[1])) for k, v in pi.items()),
                    "holds (no neighbour beats it with confidence)"
                    if ss.get("sigma_star_holds")
                    else "does not hold: a neighbour beats it with confidence",
                )
            )
    elif pred.get("budget_not_run"):
        L.append("- Budget leg not run: %s." % pred["budget_not_run"]["reason"])
    return L


def _pct(v, f="%.1f%%"):
    return "n/a" if v is None else f % (100 * v)


def _span(seeds):
    return "%d-%d" % (min(seeds), max(seeds)) if seeds else "?"


def _seed_lines(choice, pred):
    L = []
    for stage, c in (choice or {}).items():
        if "predicted_stage_s" in c:
            L.append(
                "- %s seeds: auto -> %d (limited by %s): predicted %.0f s for the stage from %d measured runs "
                "(%s)"
                % (
                    stage,
                    c["seeds"],
                    c["limited_by"],
                    c["predicted_stage_s"],
                    c["calibrated_on_runs"],
                    c["model"],
                )
            )
        else:
            L.append("- %s seeds: auto -> %d (%s)" % (stage, c["seeds"], c.get("why")))
    return L


def _study_laws(grid_res, fit_res):
    """Sections 1-3 of the study report: hyperparameter rules, D_J(sigma), compute and budget."""
    L = ["## 1. Hyperparameter rules (grid stage)", "", "![](grid_analysis/hparams.png)", ""]
    for name, r in grid_res["hparams"].items():
        L.append(
            "- %s*(σ) ∝ σ^%.3f (95%% CI of the slope %s), %s"
            % (name, r["slope"], _ci(r.get("slope_ci95")), r.get("source", ""))
        )
    L += [
        "",
        "## 2. Data efficiency D_J(σ) = D_min + (β/σ)^α (fitted stage)",
        "",
        "![](fitted_analysis/data_efficiency.png)",
        "",
        "| J | D_min | 95% CI | α | 95% CI | β | 95% CI | converged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in fit_res["data_efficiency"]:
        L.append(
            "| %.0f | %s | %s | %s | %s | %s | %s | %s |"
            % (
                r["J"],
                _fmt(r.get("D_min")),
                _ci(r.get("D_min_ci95")),
                _fmt(r.get("alpha")),
                _ci(r.get("alpha_ci95")),
                _fmt(r.get("beta")),
                _ci(r.get("beta_ci95")),
                r.get("converged"),
            )
        )
    L += [
        "",
        "## 3. Compute, frontier and budget",
        "",
        "Compute: %s." % fit_res["compute"]["formula"],
        "",
        "![](fitted_analysis/pareto.png)",
        "",
        "![](fitted_analysis/budget.png)",
        "",
    ]
    b = fit_res.get("budget", {})
    if "sigma_star" in b:
        err = "n/a" if b.get("holdout_rel_error") is None else "%.1f%%" % (100 * b["holdout_rel_error"])
        L.append(
            "σ*(F) = %.3g · F^%.3f (exponent 95%% CI %s); held-out error of the fit's top-%d budgets: "
            "%s"
            % (
                b["sigma_star"]["coef"],
                b["sigma_star"]["exponent"],
                _ci(b["sigma_star"].get("exponent_ci95")),
                b["holdout_top_k"],
                err,
            )
        )
    else:
        L.append("σ*(F): not fitted (%s)" % b.get("error"))
    return L + [""] + wall_clock_section(fit_res.get("wall_clock"))


def _study_validation(pred, g, rec):
    """Sections 4-6 of the study report: the prediction, its grade and the recommendation."""
    L = [
        "## 4. Prediction (held out of every fit)",
        "",
        "Fitted UTD range %s. Interval: %s." % (pred["fitted_utd_range"], pred["interval"]),
        "",
    ]
    if pred.get("budget"):
        pb = pred["budget"]
        L.append(
            "Budget F = %.3g (%.1fx the largest fitted optimum %.3g): σ* = %.4g %s, %d env steps, "
            "predicted return %s %s%s."
            % (
                pb["F"],
                pb["F"] / pb["largest_fitted_F"],
                pb["largest_fitted_F"],
                pb["sigma"],
                _ci(pb.get("sigma_ci95")),
                pb["env_steps_for_F"],
                _fmt(pb["return_at_F"], "%.0f"),
                _ci(pb.get("return_at_F_ci95")),
                " (approaching the fitted runs' plateau %s %s)"
                % (_fmt(pb["return_ceiling"], "%.0f"), _ci(pb.get("return_ceiling_ci95")))
                if pb.get("return_ceiling") is not None
                else "",
            )
        )
    elif pred.get("budget_not_run"):
        pb = pred["budget_not_run"]
        L.append(
            "Budget F = %.3g (%.1fx the largest fitted optimum): σ* = %.4g %s, **not run**: %s."
            % (
                pb["F"],
                pb["F"] / pb["largest_fitted_F"],
                pb["sigma"],
                _ci(pb.get("sigma_ci95")),
                pb["reason"],
            )
        )
    return L + _study_grade(g) + _study_recommendation(pred, rec)


def _study_grade(g):
    """Section 5: predicted vs measured data to threshold, row by row, and the summary."""
    L = [
        "",
        "## 5. Grade: predicted vs measured data to threshold",
        "",
        "![](grade.png)",
        "",
        "| config | σ | J | D predicted | 95% interval | D measured | resolution | rel. error | inside |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in g["rows"]:
        L.append(
            "| %s | %.4g | %.0f | %s | %s | %s | %s | %s | %s |"
            % (
                r["kind"] + (" (in-sample: a fitted UTD)" if r.get("in_sample") else ""),
                r["sigma"],
                r["J"],
                _fmt(r["D_pred"], "%.0f"),
                _ci([r["D_pred_lo"], r["D_pred_hi"]]),
                _fmt(r["D_meas"], "%.0f"),
                _fmt(r.get("D_meas_resolution"), "±%.0f"),
                "n/a" if r["rel_error"] is None else "%+.1f%%" % (100 * r["rel_error"]),
                r["inside"],
            )
        )
    s = g["summary"]
    med = "n/a" if s["median_abs_rel_error"] is None else "%.1f%%" % (100 * s["median_abs_rel_error"])
    L += [
        "",
        "Held out, top thresholds %s: median |error| %s (target %.0f%%), %d of %d within target, %d of %d "
        "inside the interval%s."
        % (
            s["top_thresholds"],
            med,
            100 * s["target_rel_error"],
            s["within_target"],
            s["n_measured"],
            s["inside_interval"],
            s["n_measured"],
            ("; not reached: " + ", ".join(s["not_reached"])) if s["not_reached"] else "",
        ),
    ]
    br = g.get("budget_return")
    if br:
        L.append(
            "Return at the budget: predicted %s %s, measured %s (budget reached: %s)."
            % (
                _fmt(br["predicted"], "%.0f"),
                _ci(br["ci95"]),
                _fmt(br["measured"], "%.0f"),
                br["reached_budget"],
            )
        )
    for c in g.get("budget_checks", []):
        L.append(
            "Beside it, σ = %.4g with the same budget (%.0f env steps): predicted %s %s, measured %s."
            % (
                c["sigma"],
                c["env_steps"],
                _fmt(c["predicted"], "%.0f"),
                _ci(c["ci95"]),
                _fmt(c["measured"], "%.0f"),
            )
        )
    ins = g.get("in_sample_summary")
    if ins and ins.get("n_measured"):
        L.append(
            "In-sample (a validation UTD that was also fitted, fresh seeds; not counted above): median |error| %s "
            "over %d rows." % (_pct(ins["median_abs_rel_error"]), ins["n_measured"])
        )
    return L


def _study_recommendation(pred, rec):
    """Section 6: the configuration recommended for the budget (marked where it extrapolates)."""
    L = []
    if rec:
        lo, hi = pred["fitted_utd_range"]
        L += [
            "",
            "## 6. Recommendation",
            "",
            "For budget F = %.3g: σ* = %.4g%s"
            % (
                rec["budget"],
                rec["sigma"],
                ""
                if lo <= rec["sigma"] <= hi
                else " (**extrapolated**: outside the fitted UTD range [%g, %g]; the rules' B and lr are clipped to "
                "the grid's values)" % (lo, hi),
            ),
            "",
            "```",
            rec["line"],
            "```",
        ]
    return L
