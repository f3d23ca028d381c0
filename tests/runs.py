"""Readers of a run directory's files, shared by the training tests."""
import json
import os


# metrics that measure the machine, not the learning: left out when two runs' curves are compared
TIME_KEYS = frozenset({"wall_time_s", "env_steps_per_s", "critic_updates_per_s", "policy_updates_per_s", "startup_s",
                       "checkpoint_time_s"})


def same_curve(rows):
    """The rows without their timing columns: what two runs of one seed must agree on exactly."""
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in rows]


def rows(run_dir):
    """metrics.jsonl's complete lines: a run may be appending the last one right now."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        lines = f.read().split("\n")
    return [json.loads(line) for line in lines[:-1] if line]  # the text after the last newline is partial


def status(run_dir):
    with open(os.path.join(run_dir, "status.json")) as f:
        return json.load(f)
