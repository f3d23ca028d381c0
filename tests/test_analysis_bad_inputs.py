"""Malformed analysis inputs end in a clear message and exit code 2, never a traceback."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from pql_scaling.analysis import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_run(d, config=None, metrics=None, status=None, run=None):
    os.makedirs(d, exist_ok=True)
    config = (
        {"task": "ta", "seed": 0, "num_envs": 8, "algo": {"name": "pql", "critic_updates_per_step": 8}}
        if config is None
        else config
    )
    with open(os.path.join(d, "config.yaml"), "w") as f:
        yaml.safe_dump(config, f)
    lines = (
        metrics
        if metrics is not None
        else [json.dumps({"env_steps": 1000 * k, "return_mean": 10.0 * k}) for k in range(1, 6)]
    )
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(d, "status.json"), "w") as f:
        json.dump({"status": "completed"} if status is None else status, f)
    if run is not None:
        with open(os.path.join(d, "run.json"), "w") as f:
            json.dump(run, f)


CASES = {
    "config.yaml is a list": (dict(config=["task", "ta"]), "config.yaml holds a list"),
    "a null metrics line": (dict(metrics=["null"]), "line 1 is NoneType, not a JSON object"),
    "status.json is a list": (dict(status=["completed"]), "status.json holds a list"),
    "run.json is a list": (dict(run=[1, 2], metrics=["null"]), "run.json holds a list"),
    "a string env_steps": (
        dict(metrics=[json.dumps({"env_steps": "many", "return_mean": 1.0})]),
        "without a finite numeric env_steps",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_run_directory_is_named_with_exit_code_2(tmp_path, capsys, case):
    kw, message = CASES[case]
    write_run(str(tmp_path / "runs" / "bad"), **kw)
    code = cli.analyze_main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--no-plots"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "bad" in err, err


def test_a_malformed_run_is_skipped_and_listed_next_to_good_ones(tmp_path):
    from pql_scaling.analysis import load

    write_run(str(tmp_path / "runs" / "good"))
    write_run(str(tmp_path / "runs" / "bad"), config=["x"])
    table, skipped = load.load_runs(str(tmp_path / "runs"))
    assert set(table.run) == {str(tmp_path / "runs" / "good")}
    assert [r for p, r in skipped if p.endswith("bad")] == [
        "config.yaml holds a list, not a mapping of config keys"
    ]


def test_one_dimensional_qscaled_array(tmp_path, capsys):
    d = tmp_path / "exp" / "utd_0.5" / "Ant-v4" / "episode.return"
    d.mkdir(parents=True)
    np.save(d / "bs_256_lr_0.0003.npy", np.arange(10.0))
    assert cli.analyze_main([str(tmp_path / "exp"), "--no-plots", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "expected a [T, 1 + seeds] array" in err and "(10,)" in err, err


def test_config_file_that_is_a_list_or_missing(tmp_path, capsys):
    bad = tmp_path / "a.yaml"
    bad.write_text("- inputs\n- runs\n")
    assert cli.analyze_main(["--config", str(bad)]) == 2
    assert "must be a mapping" in capsys.readouterr().err
    assert cli.analyze_main(["--config", str(tmp_path / "none.yaml")]) == 2
    assert "cannot read --config" in capsys.readouterr().err


FITS = {
    "budget": {"sigma_star": {"coef": 1e-3, "exponent": 0.1}, "points": []},
    "hparams": {
        "batch_size": {"slope": -0.3, "intercepts": {"Ant": 2.0}},
        "learning_rate": {"slope": 0.1, "intercepts": {"Ant": -3.0}},
    },
}


@pytest.mark.parametrize(
    "fits,args,message",
    [
        (FITS, ["--task", "Hopper"], "task 'Hopper' not in the fitted batch_size rule"),
        ({"budget": {"error": "needs >= 4 distinct UTD values"}}, [], "no budget.sigma_star"),
        ({"budget": {"sigma_star": {"coef": 1.0}}}, [], "no budget.sigma_star"),
        # a degenerate sigma*(F) fit written with a null coefficient (10**c overflowed): an error, not a TypeError
        ({"budget": {"sigma_star": {"coef": None, "exponent": 1e3}}}, [], "no budget.sigma_star"),
        ([1, 2], [], "fits file holds a list"),
    ],
)
def test_recommend_bad_fits_or_task(tmp_path, capsys, fits, args, message):
    path = tmp_path / "fits.json"
    path.write_text(json.dumps(fits))
    assert cli.recommend_main(["--fits", str(path), "--budget", "1e12"] + args) == 2
    assert message in capsys.readouterr().err


def test_recommend_good_fits_still_print_a_train_line(tmp_path, capsys):
    path = tmp_path / "fits.json"
    path.write_text(json.dumps(FITS))
    assert (
        cli.recommend_main(["--fits", str(path), "--budget", "1e12", "--task", "Ant", "--num-envs", "64"])
        == 0
    )
    sigma = 1e-3 * 1e12**0.1
    out = capsys.readouterr().out
    assert "algo.critic_updates_per_step=%.6g" % (sigma * 64) in out
    assert "algo.batch_size=%d" % round(10 ** (-0.3 * np.log10(sigma) + 2.0)) in out


def test_entry_point_exit_code_without_traceback(tmp_path):
    write_run(str(tmp_path / "runs" / "bad"), status=[1])
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pql_scaling.analysis",
            "analyze",
            str(tmp_path / "runs"),
            "--no-plots",
            "--out",
            str(tmp_path / "o"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and "status.json holds a list" in r.stderr, (
        r.stderr
    )
