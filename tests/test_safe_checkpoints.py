"""Checkpoints load weights-only (issue 24): a planted checkpoint whose pickle would run code is refused with a
clear message, with no fallback to prev.pt, and nothing in it runs."""

import io
import os
from fractions import Fraction

import pytest
import torch

from pql_scaling.rundir import disk
from pql_scaling.runtime.train import train
from tests.test_drills import SMALL, cli


class Planted:
    """Unpickled, it calls open(marker, "w"): the marker file appearing is the code having run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("safe") / "run")
    train(SMALL + ["max_env_steps=400", "log.checkpoint_every_s=0.2", "run_dir=" + d], quiet=True)
    return d


def plant(path, marker):
    """Replace `path` with a checkpoint of the right format and a valid SHA-256 trailer that holds Planted."""
    good = disk.read_checkpoint(path, stamped=path.endswith(("last.pt", "prev.pt")))
    with open(path, "wb") as f:
        f.write(disk.pack(dict(good, planted=Planted(marker))))


def test_the_planted_pickle_does_run_code_when_loaded_unsafely(tmp_path):
    """The control: the same bytes loaded the old way (weights_only=False) create the marker."""
    marker = str(tmp_path / "ran")
    torch.load(io.BytesIO(disk.pack({"x": Planted(marker)})), weights_only=False)
    assert os.path.exists(marker)


@pytest.mark.parametrize("which", ["last.pt", "replay"])
def test_resume_refuses_a_checkpoint_that_would_run_code(run_dir, tmp_path, which):
    import shutil

    d, marker = str(tmp_path / "copy"), str(tmp_path / "ran")
    shutil.copytree(run_dir, d)
    ckpt = os.path.join(d, "checkpoints")
    if which == "replay":
        seg = sorted(os.listdir(os.path.join(ckpt, "replay")))[-1]
        plant(os.path.join(ckpt, "replay", seg), marker)
    else:  # prev.pt stays good: still no fallback, a tampered run directory is not resumed at all
        plant(os.path.join(ckpt, "last.pt"), marker)
    p = cli("resume=" + d, "max_env_steps=800")
    out, _ = p.communicate(timeout=180)
    assert p.returncode != 0, out
    assert "holds io.open, not only tensors and plain containers: refused unloaded" in out, out
    assert not os.path.exists(marker)
    assert os.path.exists(os.path.join(ckpt, "last.pt"))  # kept where it was, for inspection


def test_checkpoints_hold_plain_types_the_owed_fractions_as_pairs(run_dir):
    """Every checkpoint loads weights-only; the owed-update debts are (numerator, denominator) pairs that
    load_state_dict turns back into exact Fractions (test_resume's bit-for-bit resumes check that)."""
    state = disk.read_checkpoint(os.path.join(run_dir, "checkpoints", "last.pt"))
    assert state["format_version"] == disk.CKPT_FORMAT
    assert not any(isinstance(v, Fraction) for v in state["counters"].values())
    assert set(state["fractions"]) == {"critic_owed", "policy_owed"}
    assert all(len(v) == 2 and all(isinstance(x, int) for x in v) for v in state["fractions"].values())
