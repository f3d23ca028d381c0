"""The run directory is the contract between training and analysis: real `train()` output must load
into the analysis table with the same numbers, and a run killed mid-write must be tolerated."""

import json
import os

from pql_scaling.analysis import load
from pql_scaling.runtime.train import train

ARGS = [
    "task=pendulum",
    "mode=sync",
    "num_envs=8",
    "algo.batch_size=64",
    "net.actor_hidden=[32]",
    "net.critic_hidden=[32]",
    "log.every_steps=50",
    "threads=1",
    "log.live=off",
    "max_env_steps=2400",
    "r_max=200",
]


def test_trained_runs_load_into_the_analysis_table(tmp_path):
    for seed, cu in ((0, 1), (1, 1), (0, 4)):
        train(
            ARGS
            + [
                "seed=%d" % seed,
                "algo.critic_updates_per_step=%d" % cu,
                "run_dir=%s" % (tmp_path / ("u%d_s%d" % (cu, seed))),
            ],
            quiet=True,
        )
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
    rows = [
        json.loads(line)
        for line in open(os.path.join(tmp_path, "u4_s0", "metrics.jsonl"))
        if line.endswith("}\n")
    ]
    assert list(run["env_steps"]) == [r["env_steps"] for r in rows]
    assert list(run["return"].fillna(-1e9)) == [
        -1e9 if r["return_mean"] is None else r["return_mean"] for r in rows
    ]
    assert list(run["grad_steps"]) == [r["critic_updates"] for r in rows]
    assert list(run["flops"]) == [r["flops"] for r in rows]
    facts = json.load(open(os.path.join(tmp_path, "u4_s0", "run.json")))
    assert (run["model_size"] == facts["critic_params"]).all()
    assert len(load.curves(table)) == 2  # one curve per configuration, seeds pooled


def test_recommend_prints_a_line_that_train_accepts(tmp_path, capsys):
    """analyze -> fits.json -> recommend -> `key=value` line -> the training config parses it."""
    import yaml

    from pql_scaling import config
    from pql_scaling.analysis import cli

    data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "qscaled_gym", "gym_sweep")
    spec = {
        "inputs": [data],
        "format": "qscaled",
        "bootstrap": 5,
        "model_size": 1.5e5,
        "out": str(tmp_path / "out"),
        "max_returns": {
            "HalfCheetah-v4": 9125.0,
            "Walker2d-v4": 5000.0,
            "Ant-v4": 6625.0,
            "Humanoid-v4": 6500.0,
        },
    }
    with open(tmp_path / "sweep.yaml", "w") as f:
        yaml.safe_dump(spec, f)
    assert cli.analyze_main(["--config", str(tmp_path / "sweep.yaml")]) == 0
    capsys.readouterr()
    assert (
        cli.recommend_main(
            [
                "--fits",
                str(tmp_path / "out" / "fits.json"),
                "--budget",
                "1e15",
                "--task",
                "Ant-v4",
                "--num-envs",
                "4096",
            ]
        )
        == 0
    )
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("num_envs=")][-1]
    cfg = config.load(line.split())
    assert cfg.num_envs == 4096 and cfg.algo.batch_size > 0 and 0 < cfg.algo.critic_lr < 0.1
    assert cfg.algo.critic_updates_per_step / cfg.num_envs > 0.1  # sigma* in R1's Gym range
