"""Readers of a run directory's files, shared by the training tests."""
import json
import os


def rows(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def status(run_dir):
    with open(os.path.join(run_dir, "status.json")) as f:
        return json.load(f)
