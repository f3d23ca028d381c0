import os

import pytest


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
