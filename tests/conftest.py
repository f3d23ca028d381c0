"""Shared fixtures and markers.

- `gpu`: tests that need CUDA are skipped without it (benchmarks/gpu_check.sh runs them).
- `slurm_cluster`: a real one-node SLURM cluster for the session (tests/slurm_cluster.py).
"""

import os

import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "gpu: needs a CUDA GPU; skipped without one (run by benchmarks/gpu_check.sh)"
    )
    config.addinivalue_line(
        "markers", "compiled: compiles through inductor (gpu_check.sh runs these after the eager ones)"
    )


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none visible to torch)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real one-node SLURM cluster (tests/slurm_cluster.py) for the session; stopped afterwards."""
    from tests import slurm_cluster as sc

    reason = sc.missing()
    if reason:
        pytest.skip(reason)
    cluster = sc.Cluster().start()
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = cluster.conf  # sbatch / squeue / submitit talk to this cluster
    try:
        yield cluster
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        cluster.stop()
