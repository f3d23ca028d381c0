"""W&B for a population: each member is its own W&B run, as each is its own run directory.

A member's W&B run is the one its single run would be (id: the member's run_id, kept in its checkpoint, so
`resume=<member dir>` continues it too; its own config with its seed and varied values; files under its run
directory) plus what ties the members together: the population's id as the config field `population_id` (and
`population`: id, size, index) and as the W&B group, unless wandb.group names one (a sweep's name). The K runs
are concurrent in one process (wandb.init's reinit="create_new"), each logging only its member's rows.
"""

import os
from typing import Any

from omegaconf import OmegaConf

from pql_scaling.rundir import schema
from pql_scaling.rundir.wandb_mirror import WandbMirror


def mirror(pop: Any) -> None:
    """Start a W&B run for every live member (wandb.mode online or offline); rows go there as they are logged."""
    if pop.cfg.wandb.mode == "disabled":
        return
    for m in pop.live():
        facts = schema.read_facts(os.path.join(m.run.path, schema.FACTS)) or {}
        p = facts.get("population") or {}
        member = {"id": p.get("id"), "size": pop.k, "index": m.k}
        cfg = OmegaConf.create(OmegaConf.to_container(m.cfg))
        cfg.wandb.group = cfg.wandb.group or "population-%s" % member["id"]
        cfg.wandb.name = cfg.wandb.name or _name(m.run.path)
        w = WandbMirror(
            cfg, m.run.path, m.counters["run_id"], rewind_to=m.rewind_to,
            rows_written=lambda run=m.run: run.metrics_rows,
            extra_config={"population_id": member["id"], "population": member}, reinit="create_new",
        )  # fmt: skip
        m.metrics.mirror_to(w, None)


def finish(pop: Any) -> None:
    """Close every member's W&B run: exit code 0 for a completed member, 1 otherwise."""
    for m in pop.members:
        if m.metrics.wandb is not None:
            m.metrics.wandb.finish(0 if m.status == "completed" else 1)


def _name(path: str) -> str:
    """The member's run directory as a W&B name: its folder and the population's (or sweep's) above it."""
    parts = os.path.normpath(os.path.abspath(path)).split(os.sep)
    return "-".join(parts[-2:])
