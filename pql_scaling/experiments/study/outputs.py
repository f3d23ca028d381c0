"""The study's outputs besides its report: the `recommend` line for the held-out budget, and the W&B analysis run
(fits, grade table and plots in the runs' group)."""

import os

from pql_scaling.experiments import sweep
from pql_scaling.experiments.study.spec import _dir, base_cfg
from pql_scaling.rundir.disk import log


def _recommend(spec, fit_out, prediction):
    from pql_scaling.analysis.recommend import recommend, recommend_line

    fits = sweep.read_json(os.path.join(fit_out, "fits.json"))
    # the held-out budget, run or not (a sigma* far outside the fitted range is recorded but not run)
    held_out = prediction.get("budget") or prediction.get("budget_not_run") or {}
    budget = spec.recommend.budget or held_out.get("F")
    if not budget or not (fits or {}).get("budget", {}).get("sigma_star"):
        return None
    n = spec.recommend.num_envs or base_cfg(spec).num_envs
    r = recommend(fits, budget, spec.task, n)
    line = recommend_line(r, n, task=spec.task, width=False)  # the study's runs are at one width
    return {"budget": budget, "sigma": r["sigma"], "line": "pql-scale train " + line}


def _wandb(spec, fit_res, g, pred):
    """The study's fits, tables and plots to a W&B run of job type `analysis` in the runs' group."""
    try:
        import wandb

        config = {"study": spec.name, "task": spec.task, "code_version": pred["code_version"]}
        run = wandb.init(
            project=spec.wandb.project,
            entity=spec.wandb.entity,
            group=spec.name,
            job_type="analysis",
            name="%s-analysis" % spec.name,
            mode=spec.wandb.mode,
            dir=spec.out,
            reinit=True,
            config=config,
        )
        cols = ["kind", "sigma", "J", "D_pred", "D_pred_lo", "D_pred_hi", "D_meas", "rel_error", "inside"]
        run.log(
            {
                "grade": wandb.Table(columns=cols, data=[[r[c] for c in cols] for r in g["rows"]]),
                "data_efficiency": wandb.Table(
                    columns=["J", "D_min", "alpha", "beta"],
                    data=[
                        [r["J"], r.get("D_min"), r.get("alpha"), r.get("beta")]
                        for r in fit_res["data_efficiency"]
                    ],
                ),
            }
        )
        for img in (
            "grade.png",
            "fitted_analysis/data_efficiency.png",
            "fitted_analysis/pareto.png",
            "fitted_analysis/budget.png",
            "grid_analysis/hparams.png",
        ):
            if os.path.exists(_dir(spec, img)):
                run.log({img.replace("/", "_").replace(".png", ""): wandb.Image(_dir(spec, img))})
        s = g["summary"]
        run.summary.update(
            {"grade_median_abs_rel_error": s["median_abs_rel_error"], "grade_coverage": s["coverage"]}
        )
        b = fit_res.get("budget", {}).get("sigma_star")
        if b:
            run.summary.update({"sigma_star_coef": b["coef"], "sigma_star_exponent": b["exponent"]})
        run.finish()
    except Exception as e:  # noqa: BLE001 - the local files are the record; W&B is a mirror
        log.warning("W&B analysis run failed (%s: %s); the study's files are complete", type(e).__name__, e)
