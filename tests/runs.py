"""Readers of a run directory's files, shared by the training tests."""
import json
import os


def rows(run_dir):
    """metrics.jsonl's complete lines: a run may be appending the last one right now."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        lines = f.read().split("\n")
    return [json.loads(line) for line in lines[:-1] if line]  # the text after the last newline is partial


def status(run_dir):
    with open(os.path.join(run_dir, "status.json")) as f:
        return json.load(f)
