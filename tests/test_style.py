"""The formatter and the linter (ruff, configured in ruff.toml): part of the suite, so CI runs them."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ruff(*args):
    exe = shutil.which("ruff") or pytest.fail("ruff is not installed: pip install -e '.[dev]' installs it")
    return subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True)


def test_code_is_formatted():
    r = ruff("format", "--check", ".")
    assert r.returncode == 0, "run `ruff format .`:\n" + r.stdout[-3000:] + r.stderr[-1000:]


def test_lint_is_clean():
    r = ruff("check", ".")
    assert r.returncode == 0, "run `ruff check --fix .`, then fix the rest by hand:\n" + r.stdout[-4000:]
