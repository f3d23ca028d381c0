"""Expansion: a Spec -> its Runs (grid product x zip x seeds), each an ordinary `pql-scale train` command
line at a stable path named from the varied values and the seed, checked as a training config."""

import itertools
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List

from pql_scaling import config as config_lib
from pql_scaling.experiments.sweep.spec import SpecError, load_rules

SHORT = {
    "algo.batch_size": "bs",
    "algo.critic_lr": "lr",
    "algo.actor_lr": "alr",
    "algo.critic_updates_per_step": "cups",
    "num_envs": "envs",
    "net.critic_hidden": "critic",
    "net.actor_hidden": "actor",
    "algo.name": "algo",
}


@dataclass
class Run:
    path: str  # absolute run directory
    overrides: List[str]  # for `pql-scale train`
    key: Dict[str, Any]  # the varied values (utd included, seed not)
    seed: int
    name: str  # path relative to the sweep directory


def _seeds(spec):
    return list(range(spec.seeds)) if isinstance(spec.seeds, int) else list(spec.seeds)


def arg_string(value):
    """A Python value as a `key=value` right-hand side that config.parse_overrides reads back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value) if not isinstance(value, float) else repr(value)


def _seg(value):
    if isinstance(value, float):
        s = "%g" % value
    elif isinstance(value, (list, tuple)):
        s = "x".join(_seg(v) for v in value)
    else:
        s = str(value)
    return re.sub(r"[^A-Za-z0-9.+-]", "-", s)


def _short(key):
    return SHORT.get(key, key.rsplit(".", 1)[-1])


def rule_hparams(rules, task, sigma):
    """(B, lr) of R1's shared-slope rules for a task at UTD sigma; B rounded to a multiple of 16 (as R1).
    Each value is clipped to the range its sweep tried (the rule's `swept`, when fits.json records it): a
    slope fitted on a few UTDs says nothing about values outside the grid, and extrapolating it (batch 64 at
    UTD 1/32 from a 128..512 grid) gave runs that never learned."""
    from pql_scaling.analysis import rules as analysis_rules

    for name in analysis_rules.RULES:
        r = rules[name]
        if task not in r["intercepts"]:
            raise SpecError(
                "the %s rule has no intercept for task %r (tasks: %s)" % (name, task, sorted(r["intercepts"]))
            )
    return analysis_rules.train_hparams(rules, task, sigma)


def _train_args(settings, utd, seed, rules, varied):
    """One run's training overrides (utd -> critic updates per step, rules -> batch size and lr) and its
    resolved config."""
    args = ["%s=%s" % (k, arg_string(v)) for k, v in settings.items()] + ["seed=%d" % seed]
    try:
        cfg = config_lib.load(args)
        if utd is not None:
            if not (isinstance(utd, (int, float)) and utd > 0):
                raise SpecError("utd=%r must be a number > 0" % (utd,))
            args.append("algo.critic_updates_per_step=%r" % (float(utd) * cfg.num_envs))
        sigma = cfg.algo.critic_updates_per_step / cfg.num_envs if utd is None else float(utd)
        if rules is not None:
            b, lr = rule_hparams(rules, cfg.task, sigma)
            args += ["algo.batch_size=%d" % b, "algo.critic_lr=%r" % lr, "algo.actor_lr=%r" % lr]
    except config_lib.ConfigError as e:
        raise SpecError("run %s seed %d: %s" % (dict(varied), seed, e))
    return args, cfg


def _run_name(task, combo, seed):
    """The run's path under the sweep directory: task / one segment per varied group / seed."""
    segs = [_seg(task)]
    for group in combo:
        group = [(k, v) for k, v in group if k != "task"]
        if group:
            segs.append("_".join("%s_%s" % (_short(k), _seg(v)) for k, v in group))
    segs.append("s%d" % seed)
    return "/".join(segs)


def _with_wandb(args, spec, name, varied, settings):
    """The W&B grouping (the sweep's name, the varied values as tags) and the run's directory."""
    tags = ["%s=%s" % (_short(k), _seg(v)) for k, v in varied]
    args = args + [
        "wandb.group=%s" % spec.name,
        "wandb.tags=%s" % json.dumps(tags),
        "wandb.name=%s" % name.replace("/", "-"),
        "log.live=off",
        "run_dir=%s" % os.path.join(spec.out, name),
    ]
    if "wandb.group" in settings or "wandb.tags" in settings:  # the user's own W&B grouping wins
        args = [a for a in args if not (a.startswith("wandb.group=") or a.startswith("wandb.tags="))]
        args += [
            "%s=%s" % (k, arg_string(settings[k])) for k in ("wandb.group", "wandb.tags") if k in settings
        ]
    return args


def expand(spec):
    """Spec -> the list of Runs (grid product x zip x seeds), each checked as a training config."""
    axes = [[((k, v),) for v in values] for k, values in spec.grid.items()]
    if spec.zip:
        n = len(next(iter(spec.zip.values())))
        axes.append([tuple((k, spec.zip[k][i]) for k in spec.zip) for i in range(n)])
    rules = load_rules(spec.rules) if spec.rules else None
    runs, seen = [], {}
    for combo in itertools.product(*axes):
        varied = [kv for group in combo for kv in group]
        settings = dict(spec.base)
        settings.update(varied)
        utd = settings.pop("utd", None)
        lr = settings.pop("lr", None)
        if lr is not None:
            settings.update({"algo.critic_lr": lr, "algo.actor_lr": lr})
        for seed in _seeds(spec):
            args, cfg = _train_args(settings, utd, seed, rules, varied)
            name = _run_name(cfg.task, combo, seed)
            if name in seen:
                raise SpecError(
                    "runs %s and %s map to the same directory %s: make their values distinct"
                    % (seen[name], dict(varied), name)
                )
            seen[name] = dict(varied)
            args = _with_wandb(args, spec, name, varied, settings)
            try:
                config_lib.load(args)
            except config_lib.ConfigError as e:
                raise SpecError("run %s: %s" % (name, e))
            runs.append(Run(os.path.join(spec.out, name), args, dict(varied), seed, name))
    return runs
