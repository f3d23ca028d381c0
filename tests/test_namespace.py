"""One import namespace: a researcher's own `analysis/`, `tasks/` or `envs/` folder (very common) never shadows ours."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def decoys(tmp_path):
    for name in ("analysis", "tasks", "envs"):
        os.makedirs(tmp_path / name)
        (tmp_path / name / "__init__.py").write_text(
            "raise ImportError('the decoy %s was imported')\n" % name
        )
    return str(tmp_path)


def test_study_analysis_and_envs_import_from_a_folder_with_decoys(tmp_path):
    cwd = decoys(tmp_path)
    code = (
        "import pql_scaling.experiments.study, pql_scaling.analysis.pipeline, pql_scaling.envs, pql_scaling.tasks;"
        "import pql_scaling.analysis as a, os; print(os.path.dirname(a.__file__))"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert os.path.realpath(r.stdout.strip()) == os.path.realpath(os.path.join(ROOT, "analysis"))


def test_the_cli_works_from_a_folder_with_decoys(tmp_path):
    cwd = decoys(tmp_path)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pql_scaling.cli",
            "train",
            "task=pendulum",
            "max_env_steps=64",
            "num_envs=16",
            "algo.batch_size=32",
            "mode=sync",
            "log.live=off",
            "run_dir=run",
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert os.path.exists(os.path.join(cwd, "run", "metrics.jsonl"))
    r = subprocess.run(
        [sys.executable, "-m", "pql_scaling.analysis", "recommend", "--help"],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "usage" in r.stdout.lower(), r.stderr


def test_a_second_checkout_imports_its_own_wings(tmp_path):
    """A second source checkout on PYTHONPATH (a git worktree, a clean clone) beside an editable install of this
    one: its pql_scaling must import envs, tasks and analysis from its own tree, not the installed checkout's."""
    import shutil

    other = tmp_path / "worktree"
    shutil.copytree(
        os.path.join(ROOT, "pql_scaling"), other / "pql_scaling", ignore=shutil.ignore_patterns("*.pyc")
    )
    shutil.copy(os.path.join(ROOT, "setup.py"), other / "setup.py")
    for name in ("analysis", "tasks", "envs"):
        os.makedirs(other / name)
        (other / name / "__init__.py").write_text("WHERE = 'worktree'\n")
    code = (
        "import pql_scaling.envs as e, pql_scaling.tasks as t, pql_scaling.analysis as a;"
        "print(e.WHERE, t.WHERE, a.WHERE)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=str(tmp_path),
        env=dict(os.environ, PYTHONPATH=str(other)),
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and r.stdout.split() == ["worktree"] * 3, r.stderr[-2000:]
