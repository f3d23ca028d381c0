"""The run directory is the contract between training and analysis: real `train()` output must load
into the analysis table with the same numbers, and a run killed mid-write must be tolerated."""
import json
import os

from analysis import load
from pql_scaling.train import train

ARGS = ["task=pendulum", "mode=sync", "num_envs=8", "algo.batch_size=64", "net.actor_hidden=[32]",
        "net.critic_hidden=[32]", "log.every_steps=50", "threads=1", "log.live=off", "max_env_steps=2400",
        "r_max=200"]


def test_trained_runs_load_into_the_analysis_table(tmp_path):
    for seed, cu in ((0, 1), (1, 1), (0, 4)):
        train(ARGS + ["seed=%d" % seed, "algo.critic_updates_per_step=%d" % cu,
                      "run_dir=%s" % (tmp_path / ("u%d_s%d" % (cu, seed)))], quiet=True)
    # a truncated last line, as left by a killed run
    with open(tmp_path / "u4_s0" / "metrics.jsonl", "a") as f:
        f.write('{"env_steps": 9999, "critic_up')
    table, skipped = load.load_runs(str(tmp_path))
    assert any("u4_s0" in str(path) for path, _ in skipped)  # the truncated line is reported, not silent
    assert sorted(table["sigma"].unique()) == [1 / 8, 4 / 8]
    assert set(table["seed"].unique()) == {0, 1} and (table["task"] == "pendulum").all()
    assert (table["batch_size"] == 64).all() and (table["r_max"] == 200).all()
    assert table["env_steps"].max() == 2400  # the truncated line was skipped
    run = table[(table["sigma"] == 0.5)]
    rows = [json.loads(line) for line in open(os.path.join(tmp_path, "u4_s0", "metrics.jsonl")) if line.endswith("}\n")]
    assert list(run["env_steps"]) == [r["env_steps"] for r in rows]
    assert list(run["return"].fillna(-1e9)) == [-1e9 if r["return_mean"] is None else r["return_mean"] for r in rows]
    assert list(run["grad_steps"]) == [r["critic_updates"] for r in rows]
    assert list(run["flops"]) == [r["flops"] for r in rows]
    facts = json.load(open(os.path.join(tmp_path, "u4_s0", "run.json")))
    assert (run["model_size"] == facts["critic_params"]).all()
    assert len(load.curves(table)) == 2  # one curve per configuration, seeds pooled
