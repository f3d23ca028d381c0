"""Bring your own logs: tidy tables (format: table) and TensorBoard event files (format: tensorboard) flow into
the same tidy table and the same fits as our own loaders (issue 23's acceptance), with clear errors."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import yaml

from pql_scaling.analysis import cli, config, gym, load, pipeline
from pql_scaling.analysis.load import AnalysisInputError
from pql_scaling.analysis.report import to_json

GYM = os.path.join(os.path.dirname(__file__), "data", "qscaled_gym")
TB_TAG = "charts/episodic_return"


def _same(a, b, keys):
    for k in keys:
        assert json.dumps(to_json(a[k]), sort_keys=True) == json.dumps(to_json(b[k]), sort_keys=True), k


def _qscaled_to_csv(src, path):
    """R1's qscaled arrays as the tidy CSV a paper would release: one row per (run, seed, step), the UTD
    only inside an experiment name (mapped back by the config), batch size and lr as columns."""
    q = load.load_qscaled(src)
    files = q["run"].to_numpy()
    df = pd.DataFrame(
        {
            "exp_name": ["utd%g" % s for s in q["sigma"]],
            "file": [f.rsplit("/", 1)[1] for f in files],
            "env_name": q["task"],
            "seed": q["seed"],
            "env_step": q["env_steps"].astype(np.int64),
            "metric": "avg_return",
            "value": q["return"],
            "batch_size": q["batch_size"].astype(np.int64),
            "lr": q["lr"],
        }
    )
    # a second metric in the same file: `where` must keep only the returns
    other = df.iloc[::7].assign(metric="critic_loss", value=0.5)
    pd.concat([df, other]).to_csv(path, index=False)
    return sorted(float(s) for s in q["sigma"].unique())


def _table_spec(utds):
    return {
        "run": ["exp_name", "file", "env_name", "seed"],
        "task": "env_name",
        "seed": "seed",
        "step": "env_step",
        "value": "value",
        "where": {"metric": "avg_return"},
        "params": {
            "utd": {"column": "exp_name", "map": {"utd%g" % s: s for s in utds}},
            "batch_size": "batch_size",
            "lr": "lr",
        },
    }


@pytest.fixture(scope="module")
def gym_tables(tmp_path_factory):
    out = tmp_path_factory.mktemp("gymcsv")
    return {
        n: (str(out / f"{n}.csv"), _qscaled_to_csv(os.path.join(GYM, n), out / f"{n}.csv"))
        for n in ("gym_sweep", "gym_ours")
    }


def test_r1_gym_as_a_table_gives_the_qscaled_fits(gym_tables, tmp_path):
    """The sweep's rules and the fitted runs' D_J(sigma) fits through `format: table` equal the qscaled
    loader's exactly (same rules, same crossings, same fits: the bootstrap draws the same resamples)."""
    sweep, ours, _ = gym.configs(GYM, str(tmp_path / "q"), bootstrap=20, plots=False)
    by_qscaled = pipeline.run_analysis(sweep).fits
    csv, utds = gym_tables["gym_sweep"]
    by_table = pipeline.run_analysis(
        {**sweep, "inputs": [csv], "format": "table", "table": _table_spec(utds)}
    ).fits
    _same(by_qscaled, by_table, ("hparams", "data_efficiency", "crossings", "counts"))
    os.makedirs(sweep["out"])
    with open(os.path.join(sweep["out"], "fits.json"), "w") as fh:
        json.dump({"hparams": by_qscaled["hparams"]}, fh)
    a = pipeline.run_analysis(ours).fits
    csv, utds = gym_tables["gym_ours"]
    b = pipeline.run_analysis({**ours, "inputs": [csv], "format": "table", "table": _table_spec(utds)}).fits
    _same(a, b, ("hparams", "hparams_configured", "data_efficiency", "crossings", "budget", "pareto"))
    assert a["data_efficiency"][-1]["converged"]


def test_table_parquet_glob(gym_tables, tmp_path):
    csv, utds = gym_tables["gym_ours"]
    df = pd.read_csv(csv)
    df = df[df.metric == "avg_return"]
    for task, g in df.groupby("env_name"):  # one Parquet file per task, read through a glob
        g.to_parquet(tmp_path / f"{task}.parquet")
    spec = config.check_table({"table": _table_spec(utds)})
    t, _ = load.load_table([str(tmp_path / "*.parquet")], spec)
    ref = load.load_qscaled(os.path.join(GYM, "gym_ours"))
    key = ["task", "sigma", "batch_size", "lr", "seed", "env_steps"]
    a, b = t.sort_values(key).reset_index(drop=True), ref.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[key + ["return", "grad_steps"]], b[key + ["return", "grad_steps"]])


def _tiny(tmp_path, rows=None, **over):
    rows = rows or [
        {"run": "a", "task": "T", "step": 1, "ret": 1.0, "utd": 1, "bs": 256},
        {"run": "a", "task": "T", "step": 2, "ret": 2.0, "utd": 1, "bs": 256},
        {"run": "b", "task": "T", "step": 1, "ret": 1.5, "utd": 2, "bs": 256},
        {"run": "b", "task": "T", "step": 2, "ret": 2.5, "utd": 2, "bs": 256},
    ]
    path = tmp_path / "t.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    spec = {
        "run": "run",
        "task": "task",
        "step": "step",
        "value": "ret",
        "params": {"utd": "utd", "batch_size": "bs"},
    }
    spec.update(over)
    return str(path), {"table": spec}


def test_table_loads_a_small_file_and_numbers_seeds(tmp_path):
    path, cfg = _tiny(tmp_path)
    t, _ = load.load_table([path], config.check_table(cfg))
    assert sorted(t.sigma.unique()) == [1.0, 2.0] and (t.seed == 0).all()  # one run per configuration
    assert t.grad_steps.tolist() == (t.env_steps * t.sigma).tolist()
    # no step column: row k of a run is step (k + 1) * steps_per_row
    path, cfg = _tiny(tmp_path, step=None, steps_per_row=1000)
    t, _ = load.load_table([path], config.check_table(cfg))
    assert t.env_steps.tolist() == [1000, 2000, 1000, 2000] and t["return"].tolist() == [1.0, 2.0, 1.5, 2.5]
    d = load.describe(t)
    assert d["runs"] == 2 and d["tasks"] == ["T"] and d["params"]["sigma"] == [1.0, 2.0]


@pytest.mark.parametrize(
    "rows_edit,over,match",
    [
        (None, {"value": "return"}, r"t\.csv: column\(s\) \['return'\] .* its columns are"),
        (
            {2: {"ret": "12 pts"}},
            {},
            r"t\.csv line 4: table\.value \(column 'ret'\) holds '12 pts', not a number",
        ),
        (
            {1: {"bs": 512}},
            {},
            r"t\.csv line 3: run 'a' has two values of table\.params\.batch_size \(column 'bs'\) \(256 and 512\)",
        ),
        ({3: {"step": 1}}, {}, r"t\.csv line 5: run 'b' logs step 1 twice \(first at line 4\)"),
        ({0: {"utd": "fast"}, 1: {"utd": "fast"}}, {}, r"t\.csv line 2: table\.params\.utd .* holds 'fast'"),
        (None, {"params": {"utd": {"column": "utd", "map": {1: 1.0}}}}, r"line 4: utd=2 is not a key of"),
        (None, {"where": {"task": "X"}}, r"no row left after `table.where`"),
    ],
)
def test_table_errors_name_the_file_and_row(tmp_path, rows_edit, over, match):
    path, cfg = _tiny(tmp_path, **over)
    if rows_edit:
        df = pd.read_csv(path).astype(object)
        for i, kv in rows_edit.items():
            for k, v in kv.items():
                df.loc[i, k] = v
        df.to_csv(path, index=False)
    with pytest.raises(AnalysisInputError, match=match):
        load.load_table([path], config.check_table(cfg))


@pytest.mark.parametrize(
    "spec,match",
    [
        (
            {"run": "r", "task": "t", "step": "s", "valeu": "v"},
            r"unknown key\(s\) \['valeu'\] under `table`.*value",
        ),
        ({"run": "r", "task": "t", "value": "v", "params": {"utd": "u"}}, r"one of `table.step`"),
        ({"run": "r", "task": "t", "step": "s", "value": "v"}, r"`table.params` needs `utd`"),
        (
            {"run": "r", "task": "t", "step": "s", "value": "v", "params": {"btach_size": "b"}},
            r"did you mean",
        ),
        ({"run": "r", "task": "t", "step": "s", "value": "v", "params": {"utd": {"map": {}}}}, r"params.utd"),
    ],
)
def test_table_config_errors(spec, match):
    with pytest.raises(AnalysisInputError, match=match):
        config.with_defaults({"inputs": ["x.csv"], "format": "table", "table": spec})


def test_format_needs_its_mapping_and_auto_takes_the_one_given():
    with pytest.raises(AnalysisInputError, match="format: table needs a `table:` mapping"):
        config.with_defaults({"inputs": ["x.csv"], "format": "table"})
    with pytest.raises(AnalysisInputError, match="set format: tensorboard"):
        config.with_defaults({"inputs": ["x"], "format": "runs", "tensorboard": {"scalar": "r"}})
    cfg = config.with_defaults({"inputs": ["x"], "tensorboard": {"scalar": "r", "pattern": "utd_{utd}"}})
    assert cfg["format"] == "tensorboard"
    with pytest.raises(AnalysisInputError, match=r"unknown parameter\(s\) \['utdd'\]"):
        config.with_defaults({"inputs": ["x"], "tensorboard": {"scalar": "r", "pattern": "utd_{utdd}"}})


# ------------------------------------------------------------------------------------------- TensorBoard
SIGMAS = [0.5, 1.0, 2.0, 4.0, 8.0]
R_MAX = 5000.0


def _curve(sigma, seed, task):
    """A learning curve whose time constant follows D(sigma) = 2e4 (1 + (2 / sigma)^0.8), with float32 returns
    (TensorBoard stores scalars as float32, so both formats hold the same numbers exactly)."""
    rng = np.random.default_rng([int(sigma * 100), seed, len(task)])
    tau = 2e4 * (1 + (2.0 / sigma) ** 0.8) * np.exp(rng.normal(0, 0.03))
    steps = np.arange(1000, 8 * 2e4 * (1 + (2.0 / sigma) ** 0.8), 1000)
    ret = R_MAX * (1 - np.exp(-steps / tau)) + rng.normal(0, 50, len(steps))
    return steps.astype(np.int64), ret.astype(np.float32).astype(float)


def _write_run_dir(d, task, sigma, seed, steps, ret, batch=256):
    """The run directory `pql-scale train` writes, reduced to what the analysis reads."""
    os.makedirs(d)
    with open(os.path.join(d, "config.yaml"), "w") as fh:
        yaml.safe_dump({"task": task, "seed": seed, "num_envs": 1}, fh)
    info = {"task": task, "algo": "sac", "seed": seed, "num_envs": 1, "utd": sigma, "batch_size": batch}
    info.update(critic_lr=3e-4, critic_params=1e5)
    with open(os.path.join(d, "run.json"), "w") as fh:
        json.dump(info, fh)
    with open(os.path.join(d, "metrics.jsonl"), "w") as fh:
        for t, r in zip(steps, ret):
            fh.write(
                json.dumps({"env_steps": int(t), "critic_updates": float(sigma * t), "return_mean": r}) + "\n"
            )
    with open(os.path.join(d, "status.json"), "w") as fh:
        json.dump({"status": "completed"}, fh)


def _write_tensorboard(d, task, steps, ret, hparams, per_iteration):
    """What CleanRL / rsl_rl write: torch's SummaryWriter, the return against the global step (the env step,
    or an iteration count when `per_iteration`), the env step also as its own tag, hparams via add_hparams."""
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(d)
    for i, (t, r) in enumerate(zip(steps, ret)):
        gs = i if per_iteration else int(t)
        w.add_scalar(TB_TAG, float(r), gs)
        w.add_scalar("global/env_steps", float(t), gs)
        w.add_scalar("losses/qf_loss", 0.1, gs)
    if hparams:
        w.add_hparams({**hparams, "task": task}, {"hparam/last_return": float(ret[-1])})
    w.close()


@pytest.fixture(scope="module")
def tb_and_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tb")
    for task in ("A", "B"):
        for sigma in SIGMAS:
            for seed in range(3):
                steps, ret = _curve(sigma, seed, task)
                _write_run_dir(str(root / "runs" / f"{task}_{sigma}_{seed}"), task, sigma, seed, steps, ret)
                # task A logs its parameters as hparams and counts iterations; B has them only in its path
                hp = {"batch_size": 256, "lr": 3e-4, "model_size": 1e5} if task == "A" else None
                tb = root / "tb" / task / f"utd_{sigma:g}" / f"seed_{seed}"
                _write_tensorboard(str(tb), task, steps, ret, hp, per_iteration=task == "A")
    return root


def _tb_spec(**over):
    spec = {"scalar": TB_TAG, "step": "global/env_steps", "pattern": "{task}/utd_{utd}/seed_{seed}"}
    spec["params"] = {"batch_size": 256, "lr": 3e-4}
    return {**spec, **over}


def test_tensorboard_runs_give_the_run_directory_fits(tb_and_runs):
    """SummaryWriter's event files at five UTDs and two tasks give the fits of the same curves written as our
    run directories: the same crossings, rules and D_J(sigma) fits, to the last bit."""
    base = {"max_returns": {"A": R_MAX, "B": R_MAX}, "bootstrap": 20, "plots": False, "model_size": 1e5}
    ours = pipeline.run_analysis({**base, "inputs": [str(tb_and_runs / "runs")]}).fits
    lines = []
    cfg = {**base, "inputs": [str(tb_and_runs / "tb")], "tensorboard": _tb_spec()}
    tb = pipeline.run_analysis(cfg, echo=lines.append).fits
    _same(ours, tb, ("hparams", "data_efficiency", "crossings", "counts"))
    assert ours["data_efficiency"][-1]["converged"]
    assert "30 runs, 2 task(s) (A, B), 3 seed(s)" in lines[0] and "utd: 0.5, 1, 2, 4, 8" in lines[0]
    assert "model_size: 100000" in lines[0]  # only task A's hparams name it


def test_tensorboard_event_step_hparams_and_pattern(tb_and_runs):
    root = str(tb_and_runs / "tb")
    t, _ = load.load_tensorboard(root, config.check_tensorboard({"tensorboard": _tb_spec()}))
    a = t[t.task == "A"]
    assert a.model_size.eq(1e5).all() and t[t.task == "B"].model_size.isna().all()  # hparams plugin: A only
    # without the env-step tag, B's event step (its env step) gives the same table; A's counts iterations
    t2, _ = load.load_tensorboard(root, config.check_tensorboard({"tensorboard": _tb_spec(step=None)}))
    b, b2 = t[t.task == "B"], t2[t2.task == "B"]
    assert np.array_equal(b.env_steps.to_numpy(), b2.env_steps.to_numpy())
    assert np.array_equal(b["return"].to_numpy(), b2["return"].to_numpy())
    assert t2[t2.task == "A"].env_steps.max() < 1000


def test_tensorboard_errors(tb_and_runs):
    root = str(tb_and_runs / "tb")
    spec = config.check_tensorboard({"tensorboard": _tb_spec(pattern="bs_{batch_size}/seed_{seed}")})
    with pytest.raises(AnalysisInputError, match=r"does not match tensorboard.pattern"):
        load.load_tensorboard(root, spec)
    spec = config.check_tensorboard({"tensorboard": _tb_spec(scalar="charts/return")})
    with pytest.raises(
        AnalysisInputError, match=r"holds the scalar tag 'charts/return'.*charts/episodic_return"
    ):
        load.load_tensorboard(root, spec)
    spec = config.check_tensorboard(
        {"tensorboard": _tb_spec(pattern="{task}/utd_{utd}/seed_{seed}", params={})}
    )
    with pytest.raises(AnalysisInputError, match="format: tensorboard"):
        load.load([root])


def test_cli_prints_what_each_input_held(gym_tables, tmp_path, capsys):
    csv, utds = gym_tables["gym_ours"]
    cfg = {"inputs": [csv], "format": "table", "table": _table_spec(utds), "bootstrap": 0}
    cfg.update(max_returns=gym.FITTED_MAX_RETURNS, model_size=gym.MODEL_SIZE, out=str(tmp_path / "out"))
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(cfg))
    assert cli.analyze_main(["--config", str(tmp_path / "a.yaml"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert f"input {csv} (table): " in out and "4 task(s)" in out and "utd: " in out


def test_report_compares_utds_across_tasks(tb_and_runs, tmp_path):
    """analyze's report: the aggregate measures of each UTD across tasks and seeds, table and figure."""
    from pql_scaling.analysis import report

    cfg = {"max_returns": {"A": R_MAX, "B": R_MAX}, "bootstrap": 0, "inputs": [str(tb_and_runs / "runs")]}
    res = pipeline.run_analysis(cfg)
    agg = res.fits["aggregates"]
    assert agg["tasks"] == ["A", "B"] and [r["sigma"] for r in agg["rows"]] == SIGMAS
    # a higher UTD learns faster here (D falls with sigma): at the shared budget it scores higher
    assert agg["rows"][-1]["IQM"] > agg["rows"][0]["IQM"] and agg["rows"][-1]["P_improve_vs_first"] > 0.9
    report.write_outputs(res, str(tmp_path / "out"), plots=True)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Across tasks and seeds" in md and "![aggregates.png](aggregates.png)" in md
    assert (tmp_path / "out" / "aggregates.png").stat().st_size > 1000
    assert "stratified-bootstrap" in md and "P_improve_vs_first" in md


def test_readme_examples_are_valid_configs():
    """README's "Bring your own logs" examples pass the config checks (the docs cannot drift from the keys)."""
    with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md")) as fh:
        text = fh.read()
    section = text.split("### Bring your own logs", 1)[1].split("\n### ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```yaml\n")[1:]]
    assert len(blocks) == 4
    cfgs = [config.with_defaults(yaml.safe_load(b)) for b in blocks]
    assert [c["format"] for c in cfgs] == ["table", "table", "tensorboard", "wandb"] and cfgs[1]["table"][
        "wide"
    ]


def test_table_the_same_run_in_two_files_is_an_error(tmp_path):
    path, cfg = _tiny(tmp_path)
    os.makedirs(tmp_path / "two")
    for name in ("x.csv", "y.csv"):  # the same runs twice: pooled silently, they would double the seeds
        pd.read_csv(path).to_csv(tmp_path / "two" / name, index=False)
    with pytest.raises(
        AnalysisInputError, match=r"x\.csv', '.*y\.csv'\] have the same task, parameters and seed"
    ):
        load.load_table([str(tmp_path / "two")], config.check_table(cfg))
    t, _ = load.load_table([str(tmp_path / "two" / "x.csv")], config.check_table(cfg))
    assert len(t) == 4


# ----------------------------------------------------------------------------------------- W&B wide exports
WIDE_TAG = "charts/episodic_return"


def _wide_and_tidy(tmp_path, names=None):
    """The TensorBoard test's curves (two tasks, five UTDs, three seeds) as a W&B chart export (one row per
    step, columns `<run> - <metric>` with their __MIN / __MAX band, a second metric logged every other step,
    empty cells where a run logged nothing) and as the tidy CSV of the same numbers."""
    tidy, cols = [], {}
    for task in ("A", "B"):
        for sigma in SIGMAS:
            for seed in range(3):
                steps, ret = _curve(sigma, seed, task)
                name = (names or "{task}_utd{sigma:g}_s{seed}").format(task=task, sigma=sigma, seed=seed)
                tidy.append(
                    pd.DataFrame({"name": name, "task": task, "utd": sigma, "seed": seed, "step": steps})
                )
                tidy[-1]["ret"] = ret
                s = pd.Series(ret, index=steps)
                cols.update(
                    {f"{name} - {WIDE_TAG}{b}": s + d for b, d in (("", 0), ("__MIN", -9), ("__MAX", 9))}
                )
                cols[f"{name} - losses/qf_loss"] = pd.Series(0.1, index=steps[::2])
    wide = pd.DataFrame(cols).rename_axis("global_step").reset_index()  # the union of the runs' steps
    wide.to_csv(tmp_path / "wide.csv", index=False)
    pd.concat(tidy).to_csv(tmp_path / "tidy.csv", index=False)
    return str(tmp_path / "wide.csv"), str(tmp_path / "tidy.csv")


def _wide_spec(**over):
    return {
        "wide": True,
        "step": "global_step",
        "value": WIDE_TAG,
        "pattern": "{task}_utd{utd}_s{seed}",
        **over,
    }


def test_wandb_wide_export_gives_the_tidy_table_fits(tmp_path):
    """A wide W&B export of curves at five UTDs and two tasks gives the tidy table's runs, rows and fits."""
    wide, tidy = _wide_and_tidy(tmp_path)
    tidy_spec = {"run": "name", "task": "task", "seed": "seed", "step": "step", "value": "ret"}
    tidy_spec["params"] = {"utd": "utd", "batch_size": {"value": 256}}
    base = {"max_returns": {"A": R_MAX, "B": R_MAX}, "bootstrap": 20, "plots": False, "model_size": 1e5}
    a = pipeline.run_analysis({**base, "inputs": [tidy], "format": "table", "table": tidy_spec}).fits
    lines = []
    cfg = {**base, "inputs": [wide], "table": _wide_spec(params={"batch_size": {"value": 256}})}
    b = pipeline.run_analysis(cfg, echo=lines.append).fits
    _same(a, b, ("hparams", "data_efficiency", "crossings", "counts"))
    assert a["data_efficiency"][-1]["converged"]
    assert "(table): 30 runs, 2 task(s) (A, B), 3 seed(s)" in lines[0] and "utd: 0.5, 1, 2, 4, 8" in lines[0]
    key = ["task", "sigma", "seed", "env_steps"]
    t1, _ = load.load_table([tidy], config.check_table({"table": tidy_spec}))
    t2, _ = load.load_table([wide], config.check_table({"table": _wide_spec()}))
    t1, t2 = (t.sort_values(key).reset_index(drop=True) for t in (t1, t2))
    pd.testing.assert_frame_equal(t1[key + ["return", "grad_steps"]], t2[key + ["return", "grad_steps"]])
    # W&B's default step column, a task given as a constant, a field mapped like a column
    df = pd.read_csv(wide).rename(columns={"global_step": "Step"})
    df[[c for c in df.columns if c == "Step" or c.startswith("A_")]].to_csv(tmp_path / "a.csv", index=False)
    spec = _wide_spec(step=None, pattern="A_utd{u}_s{seed}", task={"value": "A"})
    spec["params"] = {"utd": {"column": "u", "map": {f"{s:g}": s for s in SIGMAS}}}
    t3, _ = load.load_table([str(tmp_path / "a.csv")], config.check_table({"table": spec}))
    a1, cols = t1[t1.task == "A"].reset_index(drop=True), key[1:] + ["return"]
    assert (t3.task == "A").all()
    pd.testing.assert_frame_equal(a1[cols], t3.sort_values(key).reset_index(drop=True)[cols])


def test_wandb_wide_export_errors(tmp_path):
    wide, _ = _wide_and_tidy(tmp_path)
    check = lambda path, **over: load.load_table([path], config.check_table({"table": _wide_spec(**over)}))
    with pytest.raises(AnalysisInputError, match=r"wide\.csv: no step column 'Step' \(table\.step\)"):
        check(wide, step="Step")
    pd.read_csv(wide).drop(columns="global_step").to_csv(tmp_path / "nostep.csv", index=False)
    with pytest.raises(
        AnalysisInputError, match=r"nostep\.csv: no step column \(Step, _step, global_step, step\)"
    ):
        check(str(tmp_path / "nostep.csv"), step=None)
    with pytest.raises(
        AnalysisInputError, match=r"no column `<run name> - return`.*'charts/episodic_return'"
    ):
        check(wide, value="return")
    with pytest.raises(
        AnalysisInputError,
        match=r"wide\.csv: column 'A_utd0\.5_s0 - charts/episodic_return': run name 'A_utd0\.5_s0' does not "
        r"match table.pattern '\{task\}-utd\{utd\}_s\{seed\}'",
    ):
        check(wide, pattern="{task}-utd{utd}_s{seed}")
    df = pd.read_csv(wide).astype(object)
    df.loc[3, f"B_utd2_s1 - {WIDE_TAG}"] = "12 pts"
    df.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(
        AnalysisInputError, match=rf"bad\.csv line 5 \(column 'B_utd2_s1 - {WIDE_TAG}'\): table"
    ):
        check(str(tmp_path / "bad.csv"))
    df = pd.read_csv(wide)
    df.columns = [c.replace("A_utd1_s", "A_utd2_s") for c in df.columns]  # two runs of one name
    df.to_csv(tmp_path / "twice.csv", index=False)
    with pytest.raises(
        AnalysisInputError, match=r"column 'A_utd2_s0 - .*' appears twice: two runs share a name"
    ):
        check(str(tmp_path / "twice.csv"))
    with pytest.raises(AnalysisInputError, match=r"\['exp'\] named in the `table:` config: a wide export's"):
        check(wide, run="exp")
    for spec, match in (
        (
            {"wide": False, "pattern": "{utd}"},
            r"`table.wide` must be true or false \(true for a pattern\): False",
        ),
        ({"steps_per_row": 10}, r"`table.wide`: no steps_per_row"),
        (
            {"pattern": "utd{utd}"},
            r"`table.task` must name a column or be \{value: the task\}.*\{task\} in table",
        ),
        ({"pattern": "{task}_{seed}"}, r"`table.params` needs `utd`"),
        ({"wide": "yes"}, r"`table.wide` must be true or false .*: 'yes'"),
    ):
        with pytest.raises(AnalysisInputError, match=match):
            config.check_table({"table": _wide_spec(**spec)})
