"""Sweeps: one spec -> many ordinary run directories, run on a local pool, a Ray cluster or SLURM (submitit).

    spec (YAML or dict) --load_spec--> Spec --expand--> [Run] --launch--> manifest rows

A run is an ordinary `pql-scale train` process writing an ordinary run directory at a stable path built from
the varied values and the seed, so the analysis reads a sweep as it is. The state lives on disk, never in a
launcher: each run directory's status.json plus a lock file (`.sweep.lock`, fcntl flock) held by the process
that runs it, and the sweep's manifest.json (rewritten atomically). A launcher killed at any moment loses
nothing: rerunning it skips completed runs, waits for runs another process still holds, resumes stopped,
killed or failed runs from their checkpoints and starts the missing ones.

    spec.py       the spec's schema, load_spec and its validation
    expand.py     Spec -> Runs: the grid, the rules' hyperparameters, path naming
    state.py      on disk: run_state (status.json + the lock), run_one (one run under its lock)
    packing.py    populations (launcher.population): runs differing only in their seed as one process
    sizing.py     launcher.population=auto: members per population from memory
    slurm_jobs.py the SLURM jobs a sweep submitted and which of them SLURM still holds
    launchers.py  local pool, Ray, SLURM; the entry points launch and status
    board.py      the live view and manifest.json

The names below are the package's interface (the CLI, studies and tests use them). Note that `expand` here
is the function; its module is `pql_scaling.experiments.sweep.expand` in sys.modules. `_ray_task`,
`_slurm_task` and `Run` are also reachable here, the module path Ray and submitit pickles used before the
split, so a pickle that names them that way still resolves.
"""

from pql_scaling.experiments.sweep.board import STATES, Board, status_table, totals, write_manifest
from pql_scaling.experiments.sweep.expand import SHORT, Run, arg_string, expand, rule_hparams
from pql_scaling.experiments.sweep.launchers import _ray_task, _slurm_task, launch, slurm_parameters, status
from pql_scaling.experiments.sweep.spec import (
    LAUNCHERS,
    SWEEP_KEYS,
    SWEPT_ELSEWHERE,
    LauncherSpec,
    LocalOptions,
    RayOptions,
    SlurmOptions,
    Spec,
    SpecError,
    load_rules,
    load_spec,
)
from pql_scaling.experiments.sweep.state import LOCK_NAME, LOG_NAME, read_json, run_one, run_state

__all__ = [
    "STATES",
    "Board",
    "status_table",
    "totals",
    "write_manifest",
    "SHORT",
    "Run",
    "arg_string",
    "expand",
    "rule_hparams",
    "_ray_task",
    "_slurm_task",
    "launch",
    "slurm_parameters",
    "status",
    "LAUNCHERS",
    "SWEEP_KEYS",
    "SWEPT_ELSEWHERE",
    "LauncherSpec",
    "LocalOptions",
    "RayOptions",
    "SlurmOptions",
    "Spec",
    "SpecError",
    "load_rules",
    "load_spec",
    "LOCK_NAME",
    "LOG_NAME",
    "read_json",
    "run_one",
    "run_state",
]
