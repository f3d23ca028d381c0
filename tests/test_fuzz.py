"""Fuzzing with hypothesis: every training override, analysis config and malformed log file ends in a
ConfigError / AnalysisInputError naming the key or file (or loads), never a traceback.

Budgets are small (FUZZ_EXAMPLES, default 30 per test) so the suite stays fast; benchmarks/drills.py --fuzz
runs the same checks with more examples and records the counts in benchmarks/results/drills.json."""

import json
import math
import os

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pql_scaling import config  # noqa: E402
from pql_scaling.runtime import resources  # noqa: E402

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
TRIED = {}  # family -> cases tried, read by benchmarks/drills.py


def tried(family):
    TRIED[family] = TRIED.get(family, 0) + 1


# ---------------------------------------------------------------- training overrides
SCALARS = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [
            "",
            "nan",
            ".inf",
            "-.inf",
            "null",
            "true",
            "no",
            "[]",
            "[1,",
            "{a: 1}",
            "[0]",
            "[-5, 3]",
            "cuda",
            "cuda:3",
            "cpu",
            "mps",
            "gpu",
            "sac",
            "pql",
            "trio",
            "sync",
            "1e400",
            "0x10",
            "'quoted'",
            "\x00",
            "é",
            "a=b",
            "[[1]]",
        ]
    ),
    st.text(max_size=12),
)
KEYS = st.one_of(
    st.sampled_from(config.all_keys()),
    st.sampled_from(["algo", "algo.", ".x", "algo.batchsize", "", "net", "wandb.mode.x", "=", "task "]),
    st.text(max_size=10),
)
OVERRIDES = st.lists(
    st.one_of(st.tuples(KEYS, SCALARS).map(lambda kv: "%s=%s" % kv), st.text(max_size=15)), max_size=6
)


def check_overrides(args):
    """config.load + the device checks: a config, or a ConfigError; nothing else."""
    tried("training overrides")
    try:
        cfg = config.load(args)
        resources.check_devices(cfg)
    except config.ConfigError as e:
        assert str(e)
        return None
    return cfg


@FUZZ
@given(OVERRIDES)
def test_fuzz_training_overrides(args):
    cfg = check_overrides(args)
    if cfg is not None:  # whatever got through is a valid config: the checks the runtime relies on hold
        assert cfg.num_envs > 0 and cfg.algo.batch_size > 0 and cfg.algo.buffer_size >= cfg.num_envs
        assert 0 < cfg.algo.gamma <= 1 and cfg.mode in ("sync", "trio")


# ---------------------------------------------------------------- analysis configs (the CLI path)
YAML_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 10**6),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=8),
    ),
    lambda v: st.one_of(st.lists(v, max_size=3), st.dictionaries(st.text(max_size=6), v, max_size=3)),
    max_leaves=6,
)
ANALYSIS_KEYS = st.sampled_from(
    [
        "inputs",
        "format",
        "max_returns",
        "thresholds",
        "sweep_threshold",
        "model_size",
        "delta",
        "holdout_top_k",
        "bootstrap",
        "hparam_fits",
        "seed",
        "compute",
        "no_crossing",
        "plots",
        "bogus",
    ]
)


def check_analysis_config(text, tmp, inputs):
    from pql_scaling.analysis import cli as acli

    tried("analysis configs")
    path = os.path.join(tmp, "a.yaml")
    with open(path, "w") as f:
        f.write(text)
    code = acli.analyze_main(
        ["--config", path, "--no-plots", "--out", os.path.join(tmp, "out")] + ([inputs] if inputs else [])
    )
    assert code in (0, 2)


@FUZZ
@given(
    st.one_of(
        st.dictionaries(ANALYSIS_KEYS, YAML_VALUES, max_size=5).map(lambda d: json.dumps(d)),
        st.text(max_size=40),
        st.sampled_from(["[1, 2]", "plain", "a: [", "bootstrap: -1", ": :", "inputs: 3"]),
    ),
    st.booleans(),
)
def test_fuzz_analysis_configs(tmp_path_factory, text, with_inputs):
    tmp = str(tmp_path_factory.mktemp("acfg"))
    check_analysis_config(text, tmp, os.path.join(tmp, "missing") if with_inputs else None)


# ---------------------------------------------------------------- loaders over malformed files
NUM = st.one_of(
    st.integers(-10, 10**7),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.text(max_size=3),
    st.booleans(),
)
ROW = st.fixed_dictionaries(
    {"env_steps": NUM}, optional={"return_mean": NUM, "critic_updates": NUM, "flops": NUM, "wall_time_s": NUM}
)


def _line(row, cut):
    text = json.dumps(row)  # NaN / Infinity are written as json.dumps does (Python's JSON accepts them back)
    return text[: max(1, int(len(text) * cut))] if cut < 1 else text


RUN = st.tuples(
    st.lists(st.tuples(ROW, st.sampled_from([1.0, 1.0, 1.0, 0.5])), max_size=8),
    st.sampled_from(
        [
            "task: pendulum\nnum_envs: 8\nalgo: {name: pql, critic_updates_per_step: 2}\n",
            "task: [\n",
            "",
            "- 1\n",
            "num_envs: zero\n",
            "task: T\nnum_envs: -1\n",
        ]
    ),
    st.sampled_from([None, '{"status": "completed"}', '{"status": "failed"}', "{", '{"utd": "x"}']),
    st.integers(0, 3),
)


def check_loader(runs, tmp):
    from pql_scaling.analysis import load

    tried("loaders over malformed files")
    for i, (lines, cfg_text, run_json, seed) in enumerate(runs):
        d = os.path.join(tmp, "r%d" % i)
        os.makedirs(d)
        with open(os.path.join(d, "config.yaml"), "w") as f:
            f.write(
                cfg_text + "seed: %d\n" % seed
                if cfg_text and not cfg_text.startswith(("-", "task: ["))
                else cfg_text
            )
        with open(os.path.join(d, "metrics.jsonl"), "w") as f:
            f.write("".join(_line(r, c) + "\n" for r, c in lines))
        if run_json is not None:
            with open(os.path.join(d, "run.json"), "w") as f:
                f.write(run_json)
    try:
        table, skipped = load.load([tmp])
        curves = load.curves(table)
    except load.AnalysisInputError as e:
        assert str(e)
        return
    for c in curves:  # what loads is one clean curve per configuration
        steps = c["steps"]
        assert all(a < b for a, b in zip(steps, steps[1:])) and all(math.isfinite(s) for s in steps)
        assert c["returns"].shape[0] == len(steps)


@FUZZ
@given(st.lists(RUN, min_size=1, max_size=3))
def test_fuzz_loaders_over_malformed_run_directories(tmp_path_factory, runs):
    check_loader(runs, str(tmp_path_factory.mktemp("runs")))


def check_qscaled(arrays, tmp):
    import numpy as np

    from pql_scaling.analysis import load

    tried("loaders over malformed files")
    for i, arr in enumerate(arrays):
        d = os.path.join(tmp, "utd_0.5", "T", "episode.return")
        os.makedirs(d, exist_ok=True)
        np.save(os.path.join(d, "bs_%d_lr_0.001.npy" % (64 * (i + 1))), np.asarray(arr, dtype=float))
    try:
        curves = load.curves(load.load_qscaled(tmp))
    except load.AnalysisInputError as e:
        assert str(e)
        return
    for c in curves:
        assert all(a < b for a, b in zip(c["steps"], c["steps"][1:]))


QS_ARRAY = st.one_of(
    st.integers(0, 4).flatmap(
        lambda s: st.lists(
            st.lists(
                st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=s + 1, max_size=s + 1
            ),
            max_size=5,
        )
    ),
    st.lists(st.floats(width=32), max_size=4),
    st.just([]),
    st.just([[1.0, 2.0], [1.0]]),
)


@FUZZ
@given(st.lists(QS_ARRAY, min_size=1, max_size=3))
def test_fuzz_qscaled_loader_over_malformed_arrays(tmp_path_factory, arrays):
    import numpy as np

    try:
        [np.asarray(a, dtype=float) for a in arrays]
    except ValueError:  # ragged: cannot even be saved as an array; not a file anyone could have
        return
    check_qscaled(arrays, str(tmp_path_factory.mktemp("qs")))
