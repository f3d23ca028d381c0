"""R1's hyperparameter rules (docs/science.md 2.8) as analysis writes them to fits.json["hparams"], evaluated.

A rule is {"slope", "intercepts": {task: log10 value at sigma = 1}, "swept": [lo, hi] (optional), ...}:
value(sigma) = 10^(slope log10 sigma + intercept), clipped to the range the sweep tried. numpy and the
standard library only (and Python 3.8): the sweep launcher (pql_scaling/experiments/sweep/) applies the rules through
this module.
"""

import json
import math

import numpy as np

RULES = ("batch_size", "learning_rate")


def read_rules(path):
    """The rules of a fits.json written by `pql-scale analyze` ({} when it holds none). OSError or ValueError
    (json.JSONDecodeError) when the file cannot be read."""
    with open(path) as f:
        return json.load(f).get("hparams") or {}


def rule_value(rule, sigma, task=None):
    """Evaluate a shared-slope rule; without a task, the mean over tasks of the per-task values
    (R1 averages the batch-size rule over tasks for the compute formula). Clipped to the range the sweep
    tried when the rule records it (`swept`): a slope fitted on a few UTDs says nothing outside the grid."""
    sigma = np.asarray(sigma, float)
    ks = [rule["intercepts"][task]] if task is not None else list(rule["intercepts"].values())
    v = [10 ** (rule["slope"] * np.log10(sigma) + k) for k in ks]
    if rule.get("swept"):
        v = [np.clip(x, *rule["swept"]) for x in v]
    return np.mean(v, axis=0)


def train_hparams(rules, task, sigma):
    """(B, lr) a training run at UTD sigma takes from the rules of `task`: each value clipped to its sweep's
    range, B rounded to a multiple of 16 (as R1; at least 16, halves round up), lr to 4 significant digits."""
    b, lr = (float(rule_value(rules[name], sigma, task)) for name in RULES)
    return max(16, int(math.floor(b / 16.0 + 0.5)) * 16), float("%.4g" % lr)
