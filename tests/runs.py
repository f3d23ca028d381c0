"""Readers of a run directory's files, shared by the training tests (through pql_scaling.rundir.schema)."""

import os

from pql_scaling.rundir import schema

# metrics that measure the machine, not the learning: left out when two runs' curves are compared
# (wall_time_s, env_steps_per_s, critic_updates_per_s, policy_updates_per_s, startup_s, checkpoint_time_s)
TIME_KEYS = schema.TIMING_FIELDS

# a seconds-long sync pendulum run the population and critic-observation tests extend (their lengths, evaluation
# and checkpoint keys their own)
TINY_PENDULUM = [
    "task=pendulum",
    "mode=sync",
    "num_envs=8",
    "algo.batch_size=64",
    "net.actor_hidden=[32]",
    "net.critic_hidden=[32,32]",
    "log.every_steps=10",
    "threads=1",
    "log.live=off",
    "algo.warmup_steps=4",
    "algo.critic_updates_per_step=2",
]


def same_curve(rows):
    """The rows without their timing columns: what two runs of one seed must agree on exactly."""
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in rows]


def rows(run_dir):
    """metrics.jsonl's complete lines: a run may be appending the last one right now (a truncated last line
    is skipped); any other line that is not a JSON object fails."""
    found, notes = schema.read_metrics(os.path.join(run_dir, schema.METRICS))
    bad = [n for n in notes if not n.endswith(schema.TRUNCATED)]
    if bad:
        raise ValueError("%s: %s" % (os.path.join(run_dir, schema.METRICS), "; ".join(bad)))
    return found


def status(run_dir):
    return schema.read_status(os.path.join(run_dir, schema.STATUS))
