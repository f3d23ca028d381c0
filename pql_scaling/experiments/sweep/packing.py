"""Populations in a sweep (`launcher.population: K | auto`): runs that differ only in their seed train as one
population of up to K members (runtime/population.py), one `pql-scale train` process, each member writing the
run directory the sweep expects, so `sweep status`, `analyze` and studies read them as any runs. Every launcher
runs a population as one unit (a pool job, a Ray task, a SLURM array task) through `run_group`; `auto` picks K
per configuration from memory (sizing.py).

A group holds the locks of all its members' run directories while its process runs (the same flock as a single
run's, inherited by the child), taken in path order so two launchers waiting for the same runs never deadlock.
Nothing there yet: start the population. Its directory holds population.json: resume it (every member not yet
ended continues from its checkpoint); such a population keeps its members on every later launch, whatever K
is then (auto may pick another), so a killed population resumes once, members and all. Members that ran apart
before (an earlier launch without packing): each goes on as its own run (state.run_one).
"""

import math
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Dict, List, Tuple

from pql_scaling import config as config_lib
from pql_scaling import population_spec
from pql_scaling.experiments.sweep import sizing
from pql_scaling.experiments.sweep.expand import Run
from pql_scaling.experiments.sweep.spec import SpecError
from pql_scaling.experiments.sweep.state import LOG_NAME, _acquire, _row, read_json, run_one, run_state

POPULATIONS = "_populations"  # under the sweep directory: one directory per population
POPULATION = "population.json"  # runtime/population.py's record: size, seeds, member directories, config
SEED_KEYS = ("seed=", "run_dir=", "wandb.name=")  # what differs between runs that differ only in their seed


@dataclass
class Group:
    path: str  # the population's directory
    runs: List[Run]
    overrides: List[str]  # the population's `pql-scale train` overrides (none once started: it resumes)


def members(unit) -> List[Run]:
    """The runs of a launcher's unit: a Group's members, or the one run."""
    return unit.runs if isinstance(unit, Group) else [unit]


def _started(runs: List[Run], out: str) -> Tuple[List[Group], List[Run]]:
    """(populations started earlier with members among `runs`, the other runs)."""
    root = os.path.join(out, POPULATIONS)
    by_path = {os.path.abspath(r.path): r for r in runs}
    groups = []
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        record = read_json(os.path.join(root, name, POPULATION)) or {}
        mine = [
            by_path.pop(os.path.abspath(p))
            for p in record.get("members", [])
            if os.path.abspath(p) in by_path
        ]
        if mine:
            groups.append(Group(os.path.join(root, name), mine, []))
    return groups, [r for r in runs if os.path.abspath(r.path) in by_path]


def _auto(rs: List[Run], target, total: int) -> Tuple[int, str]:
    """(members per population, the INFO line's reason) for one configuration's runs."""
    try:
        config_lib.load(list(rs[0].overrides) + ["population.size=2"])
    except config_lib.ConfigError as e:
        return 1, "one process a run, it cannot be a population: %s" % e
    cfg = config_lib.load(rs[0].overrides)
    apart = population_spec.not_seeded_apart(cfg)
    if apart:
        return 1, "one process a run: %s" % apart
    k, why = sizing.auto_size(cfg, len(rs), target() if callable(target) else target, total)
    return k, ("populations of up to %d (%s)" % (k, why) if k > 1 else "one process a run (%s)" % why)


def _chunks(rs: List[Run], k: int, balanced: bool) -> List[List[Run]]:
    """Consecutive chunks of at most k runs; balanced (auto): as even as possible (5 runs, k=4: 3 + 2)."""
    if not balanced:
        return [rs[i : i + k] for i in range(0, len(rs), k)]
    n = math.ceil(len(rs) / k)
    bounds = [round(i * len(rs) / n) for i in range(n + 1)]
    return [rs[a:b] for a, b in zip(bounds, bounds[1:])]


def _group(chunk: List[Run], rest, out: str, size) -> Group:
    name = chunk[0].name.rsplit("/", 1)[0].replace("/", "-") + "-s" + "-".join(str(r.seed) for r in chunk)
    path = os.path.join(out, POPULATIONS, name)
    args = list(rest) + [
        "population.size=%d" % len(chunk),
        "population.seeds=[%s]" % ",".join(str(r.seed) for r in chunk),
        "population.run_dirs=[%s]" % ",".join(r.path for r in chunk),
        "seed=%d" % chunk[0].seed,
        "run_dir=%s" % path,
    ]
    try:
        why = population_spec.not_seeded_apart(config_lib.load(args))
    except config_lib.ConfigError as e:
        why = str(e)
    if why:
        raise SpecError(
            "launcher.population=%s: runs %s cannot train as a population: %s; set launcher.population=auto "
            "(one process a run where a config cannot be packed) or 1" % (size, name, why)
        )
    return Group(path, chunk, args)


def pack(runs: List[Run], size, out: str, target=None) -> Tuple[List[Group], List[Run], List[str]]:
    """(groups of runs differing only in their seed, runs left alone, INFO lines). size: an int K (groups of up
    to K; a config that cannot be a population is a SpecError) or "auto" (K per configuration against `target`,
    a sizing.Target or a function returning one, called only if needed; a config that cannot be a population
    runs alone and a line says why). Populations started earlier keep their members (see the module's doc)."""
    groups, runs = _started(runs, out)
    by_rest: Dict[Tuple[str, ...], List[Run]] = {}
    for r in runs:
        rest = tuple(a for a in r.overrides if not a.startswith(SEED_KEYS))
        by_rest.setdefault(rest, []).append(r)
    alone, notes = [], {}  # notes: reason -> configurations
    for rest, rs in by_rest.items():
        k = 1 if size == "auto" else size  # auto with one seed: nothing to pack, nothing to measure
        if size == "auto" and len(rs) > 1:
            k, why = _auto(rs, target, len(runs))
            notes.setdefault(why, []).append(rs[0].name.rsplit("/", 1)[0])
        for chunk in _chunks(rs, k, size == "auto"):
            if len(chunk) == 1:
                alone += chunk
            else:
                groups.append(_group(chunk, rest, out, size))
    lines = [
        "launcher.population=auto: %s%s: %s"
        % (names[0], " and %d more" % (len(names) - 1) if names[1:] else "", why)
        for why, names in notes.items()
    ]
    return groups, alone, lines


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
    for r in sorted(g.runs, key=lambda r: r.path):
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
            started = os.path.exists(os.path.join(g.path, POPULATION))
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
