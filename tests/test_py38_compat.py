"""The training path must import on Python 3.8 (Isaac Gym exists only there). No 3.8 interpreter is
available in CI, so check statically with vermin: any construct newer than 3.8 fails the test."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_training_path_is_python38_compatible():
    pytest.importorskip("vermin")
    # analysis/config.py too: the study's spec (the training path) reads the analysis schema's defaults
    paths = [
        os.path.join(ROOT, p)
        for p in (
            "pql_scaling",
            "envs",
            "tasks",
            "analysis/__init__.py",
            "analysis/errors.py",
            "analysis/config.py",
        )
    ]
    # this interpreter's vermin, not whichever `vermin` is on PATH (the package has no __main__ for -m)
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, vermin; sys.exit(vermin.main())",
            "--target=3.8-",
            "--no-tips",
            "--violations",
            "--eval-annotations",
            "--feature",
            "union-types",
            "--backport",
            "typing",
        ]
        + paths,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, "constructs newer than Python 3.8 in the training path:\n" + p.stdout + p.stderr
