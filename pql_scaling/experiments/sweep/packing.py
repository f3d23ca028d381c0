"""Populations in a sweep (`launcher.population: K`): runs that differ only in their seed train as one
population of up to K members (runtime/population.py), one `pql-scale train` process, each member writing the
run directory the sweep expects, so `sweep status`, `analyze` and studies read them as any runs.

A group holds the locks of all its members' run directories while its process runs (the same flock as a single
run's, inherited by the child). Nothing there yet: start the population. Its directory holds population.json:
resume it (every member not yet ended continues from its checkpoint). Members that ran apart before (an earlier
launch without packing): each goes on as its own run (state.run_one).
"""

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Dict, List, Tuple

from pql_scaling import config as config_lib
from pql_scaling.experiments.sweep.expand import Run
from pql_scaling.experiments.sweep.spec import SpecError
from pql_scaling.experiments.sweep.state import LOG_NAME, _acquire, _row, run_one, run_state

POPULATIONS = "_populations"  # under the sweep directory: one directory per population
SEED_KEYS = ("seed=", "run_dir=", "wandb.name=")  # what differs between runs that differ only in their seed


@dataclass
class Group:
    path: str  # the population's directory
    runs: List[Run]
    overrides: List[str]  # the population's `pql-scale train` overrides


def pack(runs: List[Run], size: int, out: str) -> Tuple[List[Group], List[Run]]:
    """(groups of up to `size` runs differing only in their seed, runs left alone)."""
    by_rest: Dict[Tuple[str, ...], List[Run]] = {}
    for r in runs:
        rest = tuple(a for a in r.overrides if not a.startswith(SEED_KEYS))
        by_rest.setdefault(rest, []).append(r)
    groups, alone = [], []
    for rest, rs in by_rest.items():
        for i in range(0, len(rs), size):
            chunk = rs[i : i + size]
            if len(chunk) == 1:
                alone += chunk
                continue
            name = (
                chunk[0].name.rsplit("/", 1)[0].replace("/", "-")
                + "-s"
                + "-".join(str(r.seed) for r in chunk)
            )
            path = os.path.join(out, POPULATIONS, name)
            args = list(rest) + [
                "population.size=%d" % len(chunk),
                "population.seeds=[%s]" % ",".join(str(r.seed) for r in chunk),
                "population.run_dirs=[%s]" % ",".join(r.path for r in chunk),
                "seed=%d" % chunk[0].seed,
                "run_dir=%s" % path,
            ]
            try:
                config_lib.load(args)
            except config_lib.ConfigError as e:
                raise SpecError(
                    "launcher.population=%d: runs %s cannot train as a population: %s" % (size, name, e)
                )
            groups.append(Group(path, chunk, args))
    return groups, alone


def _train(g: Group, args: List[str], fds: List[int], env) -> int:
    os.makedirs(g.path, exist_ok=True)
    cmd = [sys.executable, "-m", "pql_scaling.cli", "train"] + args
    with open(os.path.join(g.path, LOG_NAME), "ab") as out:
        out.write(("\n$ %s\n" % " ".join(cmd)).encode())
        out.flush()
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, pass_fds=tuple(fds)
        )
        return proc.wait()


def run_group(g: Group, retry=0, extra=(), env=None, wait=False) -> List[dict]:
    """Bring a group's runs to an end (see the module's doc); their manifest rows."""
    fds = []
    for r in g.runs:
        fd = _acquire(r.path, wait)
        if fd is None:
            for f in fds:
                os.close(f)
            return [_row(r, "busy", "held by another process", probe=False) for r in g.runs]
        fds.append(fd)
    launches, failures, code = 0, 0, 0
    try:
        while True:
            states = [run_state(r.path, probe=False)[0] for r in g.runs]
            open_ = [s for s in states if s not in ("completed", "failed")]
            if not open_:
                return [_row(r, launches=launches, probe=False) for r in g.runs]
            started = os.path.exists(os.path.join(g.path, "population.json"))
            if not started and any(s != "queued" for s in states):
                break  # members that ran apart before: each its own run (below, after the locks are dropped)
            if launches and (code == 0 or failures > retry):  # ended, interrupted, or out of retries
                return [_row(r, launches=launches, probe=False) for r in g.runs]
            args = list(extra) + (["resume=%s" % g.path] if started else g.overrides)
            launches += 1
            code = _train(g, args, fds, env)
            failures += code != 0
    finally:
        for f in fds:
            os.close(f)
    return [run_one(r, retry, extra, env, wait) for r in g.runs]
