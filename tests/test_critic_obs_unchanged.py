"""Without a critic observation nothing changed (issue 22): short seeded sync runs log exactly the metrics they
logged before asymmetric critics existed (tests/data/critic_obs/reference_metrics.json, written by that code:
PQL with evaluation, SAC, and a population of two). Fails if the symmetric path draws one random number more,
normalises differently or feeds the critic anything else."""

import json
import os

import pytest

from pql_scaling.runtime.train import train
from tests.runs import TINY_PENDULUM, rows, same_curve

REFERENCE = os.path.join(os.path.dirname(__file__), "data", "critic_obs", "reference_metrics.json")
COMMON = TINY_PENDULUM + ["max_env_steps=1200"]
RUNS = {
    "pql": COMMON + ["seed=3", "eval.every_steps=400", "eval.episodes=2"],
    "sac": COMMON + ["seed=4", "algo=sac", "eval.every_steps=0"],
    "population": COMMON + ["seed=5", "population.size=2", "eval.every_steps=0"],
}


def _learned(path):
    return [{k: v for k, v in r.items() if k != "eval_time_s"} for r in same_curve(rows(path))]


def curve(path):
    """A run's metrics without timing columns; a population's: each member's, in order."""
    members = os.path.join(path, "population.json")
    if os.path.exists(members):
        with open(members) as f:
            return [_learned(m) for m in json.load(f)["members"]]
    return _learned(path)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_runs_without_critic_obs_are_bit_identical_to_before(tmp_path, name):
    with open(REFERENCE) as f:
        expected = json.load(f)[name]
    got = curve(train(RUNS[name] + ["run_dir=%s" % (tmp_path / name)], quiet=True))
    assert json.loads(json.dumps(got)) == expected
