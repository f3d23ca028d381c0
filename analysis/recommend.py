"""The compute-optimal training configuration for a budget, from a fits.json (`pql-scale recommend`, and the
study's recommendation): sigma*(F), the rules' B and lr at it, the model size N and the width giving it."""

from .errors import AnalysisInputError
from .load import is_number
from .modelsize import width_for
from .rules import rule_value


def _surface_pick(fits, budget, task):
    """The R5 surface to recommend from: the task's (or the only / pooled one); with several thresholds,
    the highest J whose compute-optimal budget F* fits in `budget` (else the cheapest)."""
    surf = {k: v for k, v in (fits.get("surface") or {}).items() if "optimum" in v}
    if not surf:
        return None, None
    if task is not None:
        surf = {k: v for k, v in surf.items() if k.split("@J=")[0] == task}
        if not surf:
            raise AnalysisInputError(
                f"task {task!r} has no fitted surface (surfaces: {sorted(fits.get('surface') or {})})"
            )
    elif len({k.split("@J=")[0] for k in surf}) > 1:
        first = sorted({k.split("@J=")[0] for k in surf})[0]
        surf = {k: v for k, v in surf.items() if k.split("@J=")[0] == first}
    fit_ok = {k: v for k, v in surf.items() if v["optimum"]["F"] <= budget}
    pool = fit_ok or surf
    if fit_ok:
        key = max(pool, key=lambda k: pool[k].get("J") or 0)
    else:
        key = min(pool, key=lambda k: pool[k]["optimum"]["F"])
    return key, surf[key]


def recommend(fits, budget, task=None, num_envs=4096):
    """Compute-optimal sigma (and B, lr, model size N and the width that gives it, when fitted) for a
    budget F from a fits.json dict."""
    if not isinstance(fits, dict):
        raise AnalysisInputError(
            f"fits file holds a {type(fits).__name__}, not the JSON object `pql-scale analyze` writes"
        )
    b = (fits.get("budget") or {}).get("sigma_star")
    if b is not None and (
        not isinstance(b, dict) or not all(is_number(b.get(k)) for k in ("coef", "exponent"))
    ):
        b = None  # absent, or a degenerate fit that fits.json wrote with a null coefficient
    skey, surf = _surface_pick(fits, budget, task)
    if not b and surf is None:
        raise AnalysisInputError(
            "fits file has no budget.sigma_star and no R5 surface: run `pql-scale "
            "analyze` on runs at >= 4 UTD values (or several model sizes) first"
        )
    out = {"num_envs": num_envs}
    if surf is not None:
        o = surf["optimum"]
        out["surface"] = {
            "name": skey,
            "J": surf.get("J"),
            "sigma": o["sigma"],
            "model_size": o["model_size"],
            "F_needed": o["F"],
            "D": o["D"],
            "fits_budget": o["F"] <= budget,
        }
    sigma = b["coef"] * budget ** b["exponent"] if b else surf["optimum"]["sigma"]
    out.update(sigma=sigma, critic_updates_per_step=sigma * num_envs)
    for key, name in (("batch_size", "batch_size"), ("learning_rate", "lr")):
        r = fits.get("hparams", {}).get(key)
        if not r:
            continue
        if task is not None and task not in r["intercepts"]:
            raise AnalysisInputError(
                f"task {task!r} not in the fitted {key} rule (tasks: {sorted(r['intercepts'])})"
            )
        out[name] = float(rule_value(r, sigma, task or None))
    ms = fits.get("model_size_fits", {})
    n_opt = ms.get("n_opt")
    if n_opt:
        out["model_size"] = n_opt["coef"] * budget ** n_opt["exponent"]
    elif surf is not None:
        out["model_size"] = surf["optimum"]["model_size"]
    wf = fits.get("width_fit") or ms.get("width_fit")
    if wf and "model_size" in out:
        out["width"] = width_for(wf, out["model_size"])
    return out


def recommend_line(r, num_envs, task=None, width=True):
    """The `key=value` overrides of `pql-scale train` for a recommendation `r` (as `recommend` returns it):
    task (when given), num_envs, the critic updates per step, B and lr (when fitted) and the critic width
    (when fitted, unless `width` is false)."""
    line = ([f"task={task}"] if task is not None else []) + [
        "num_envs=%d" % num_envs,
        "algo.critic_updates_per_step=%.6g" % r["critic_updates_per_step"],
    ]
    if "batch_size" in r:
        line.append("algo.batch_size=%d" % int(round(r["batch_size"])))
    if "lr" in r:
        line += ["algo.critic_lr=%.4g" % r["lr"], "algo.actor_lr=%.4g" % r["lr"]]
    if width and "width" in r:
        line.append("net.critic_width=%d" % max(1, int(round(r["width"]))))
    return " ".join(line)
