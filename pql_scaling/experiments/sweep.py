"""Sweeps: one spec -> many ordinary run directories, run on a local pool, a Ray cluster or SLURM (submitit).

    spec (YAML or dict) --load_spec--> Spec --expand--> [Run] --launch--> manifest rows

A run is an ordinary `pql-scale train` process writing an ordinary run directory at a stable path built from
the varied values and the seed, so the analysis reads a sweep as it is. The state lives on disk, never in a
launcher: each run directory's status.json plus a lock file (`.sweep.lock`, fcntl flock) held by the process
that runs it, and the sweep's manifest.json (rewritten atomically). A launcher killed at any moment loses
nothing: rerunning it skips completed runs, waits for runs another process still holds, resumes stopped,
killed or failed runs from their checkpoints and starts the missing ones.

The flock is taken by the launcher's worker and inherited by the `train` child (pass_fds): the lock lives as
long as either holds it and vanishes with them, so a dead holder never blocks a rerun and a live one (a
train process that outlived its SIGKILLed launcher) is never duplicated.
"""
import concurrent.futures
import difflib
import fcntl
import itertools
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import yaml
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pql_scaling import config as config_lib
from pql_scaling.rundir.disk import write_json_atomic

LOCK_NAME = ".sweep.lock"
LOG_NAME = "launcher.log"  # the train process's stdout and stderr
# flag sums, not `a.B | a.C`: vermin takes that for a Python 3.10 union type (the bits are distinct)
LOCK_TRY = fcntl.LOCK_EX + fcntl.LOCK_NB
STATES = ("queued", "running", "completed", "stopped", "failed")


# --------------------------------------------------------------------------------------------------- the spec
@dataclass
class LocalOptions:
    devices: List[str] = field(default_factory=lambda: ["cpu"])  # "cpu", GPU indices ("0", "1"), or ["auto"]
    runs_per_device: int = 1  # concurrent runs per device (on "cpu": the pool size)
    threads_per_run: int = 1  # torch intra-op threads (and OMP/MKL threads) of each run


@dataclass
class RayOptions:
    address: Optional[str] = None  # "auto", "ray://host:port", or None: start a local Ray cluster
    num_cpus: float = 1.0  # Ray resources of each run's task (fractional GPUs allowed)
    num_gpus: float = 0.0


@dataclass
class SlurmOptions:
    partition: Optional[str] = None
    time_min: int = 60  # per run
    gpus_per_task: int = 0
    cpus_per_task: int = 1
    mem_gb: Optional[float] = None
    array_parallelism: int = 64  # runs of the array running at once
    account: Optional[str] = None
    setup: List[str] = field(default_factory=list)  # lines run before each job (module load ..., source venv)
    extra: Dict[str, str] = field(default_factory=dict)  # more #SBATCH options, e.g. {qos: high, constraint: a100}
    folder: Optional[str] = None  # submitit's job files and logs; default <out>/.submitit


@dataclass
class LauncherSpec:
    kind: str = "local"  # local | ray | slurm
    local: LocalOptions = field(default_factory=LocalOptions)
    ray: RayOptions = field(default_factory=RayOptions)
    slurm: SlurmOptions = field(default_factory=SlurmOptions)


@dataclass
class Spec:
    name: str = MISSING
    out: Optional[str] = None  # the sweep directory; default runs/<name>
    base: Dict[str, Any] = field(default_factory=dict)  # training overrides shared by every run (grid/zip win)
    grid: Dict[str, List[Any]] = field(default_factory=dict)  # key -> values: the Cartesian product
    zip: Dict[str, List[Any]] = field(default_factory=dict)  # keys whose (equal-length) lists vary together
    seeds: Any = 1  # a count (seeds 0..n-1) or a list of seeds
    rules: Optional[str] = None  # fits.json of `pql-scale analyze`: batch size and lr from B*(sigma), lr*(sigma)
    retry: int = 2  # resumes of a failed run per launch
    launcher: LauncherSpec = field(default_factory=LauncherSpec)


LAUNCHERS = ("local", "ray", "slurm")
# sweep-only axes: utd = critic updates per env step (sets algo.critic_updates_per_step = utd x num_envs);
# lr = both learning rates at once (R1's sweeps tie the actor's to the critic's)
SWEEP_KEYS = ("utd", "lr")
SWEPT_ELSEWHERE = {"seed": "seeds", "run_dir": "out", "resume": "(a sweep resumes its runs itself)"}
SHORT = {"algo.batch_size": "bs", "algo.critic_lr": "lr", "algo.actor_lr": "alr", "algo.critic_updates_per_step": "cups",
         "num_envs": "envs", "net.critic_hidden": "critic", "net.actor_hidden": "actor", "algo.name": "algo"}


class SpecError(config_lib.ConfigError):
    pass


def _closest(key, valid):
    return difflib.get_close_matches(key, valid, n=3, cutoff=0.5)


def _check_keys(d, where, prefix=""):
    """Unknown spec keys fail naming the closest valid ones (the training config's style)."""
    valid = config_lib.spec_keys(Spec)
    for k, v in d.items():
        full = prefix + str(k)
        if full not in valid:
            close = _closest(full, valid)
            raise SpecError("unknown sweep key %r (in %s)%s" % (full, where, ("; did you mean: " + ", ".join(close)) if close else ""))
        if isinstance(v, dict) and full not in ("base", "grid", "zip", "launcher.slurm.extra"):
            _check_keys(v, where, full + ".")


def _check_train_key(key, section):
    if key in SWEPT_ELSEWHERE:
        raise SpecError("%s.%s: a sweep sets %s itself; use %s" % (section, key, key, SWEPT_ELSEWHERE[key]))
    if key in SWEEP_KEYS and section != "base":
        return
    if key not in config_lib.all_keys():
        close = config_lib._closest(key) + difflib.get_close_matches(key, list(SWEEP_KEYS))
        raise SpecError("unknown training key %r in %s%s. `pql-scale keys` lists every key" % (
            key, section, ("; did you mean: " + ", ".join(close)) if close else ""))


def _flat(d):
    return dict(config_lib._flatten(d)) if d else {}


def _flat_axes(d, section):
    """grid/zip: {key: list}; nested mappings ({algo: {batch_size: [..]}}) flatten to dotted keys."""
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            for k2, v2 in _flat_axes(v, section).items():
                out["%s.%s" % (k, k2)] = v2
        else:
            out[str(k)] = v
    return out


def load_spec(path_or_dict, overrides=()):
    """A validated Spec from a YAML path or a dict, with `key=value` overrides (e.g. launcher.kind=ray, seeds=3,
    grid.utd=[0.25,0.5]). Unknown keys, wrong types, empty grids fail here, before anything runs."""
    if isinstance(path_or_dict, Spec):  # already loaded: re-validate a copy with the overrides
        path_or_dict = OmegaConf.to_container(OmegaConf.structured(path_or_dict))
    where, raw = config_lib.read_spec(path_or_dict, "sweep", SpecError, "name, out, base, grid, ...")
    for section in ("base", "grid", "zip"):  # keep training keys as written (dotted or nested)
        if isinstance(raw.get(section), dict):
            raw[section] = _flat_axes(raw[section], section) if section != "base" else _flat(raw[section])
    for arg in overrides:
        if "=" not in arg:
            raise SpecError("expected key=value, got %r (e.g. launcher.kind=ray seeds=3)" % arg)
        key, value = arg.split("=", 1)
        value = yaml.safe_load(value) if value != "" else None
        section, _, rest = key.partition(".")
        if section in ("base", "grid", "zip") and rest:
            raw.setdefault(section, {})[rest] = value
        else:
            config_lib.set_dotted(raw, key, value, arg, SpecError)
    _check_keys(raw, where)
    try:
        spec = OmegaConf.merge(OmegaConf.structured(Spec), raw)
        spec = OmegaConf.to_object(spec)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        raise SpecError("bad value in sweep spec %s at %s: %s" % (where, key, str(e).splitlines()[0]))
    _validate(spec, where)
    return spec


def _validate(spec, where):
    if not spec.name or not re.match(r"^[A-Za-z0-9._-]+$", spec.name):
        raise SpecError("name=%r (in %s): use letters, digits, '.', '_' or '-'" % (spec.name, where))
    spec.out = os.path.abspath(spec.out or os.path.join("runs", spec.name))
    if spec.launcher.kind not in LAUNCHERS:
        raise SpecError("launcher.kind=%r is not one of %s" % (spec.launcher.kind, ", ".join(LAUNCHERS)))
    for k in spec.base:
        _check_train_key(k, "base")
    if not spec.grid and not spec.zip:
        raise SpecError("the grid is empty (in %s): give grid: {key: [values]} (e.g. grid: {utd: [0.25, 0.5]}; "
                        "one configuration: grid: {task: [pendulum]})" % where)
    for section, axes in (("grid", spec.grid), ("zip", spec.zip)):
        for k, values in axes.items():
            _check_train_key(k, section)
            if not isinstance(values, list) or not values:
                raise SpecError("%s.%s is empty: give a non-empty list of values" % (section, k))
    if set(spec.grid) & set(spec.zip):
        raise SpecError("keys both in grid and zip: %s" % sorted(set(spec.grid) & set(spec.zip)))
    if len({len(v) for v in spec.zip.values()}) > 1:
        raise SpecError("zip lists must have equal lengths: %s" % {k: len(v) for k, v in spec.zip.items()})
    seeds = spec.seeds
    if isinstance(seeds, bool) or not (isinstance(seeds, int) and seeds > 0 or isinstance(seeds, list) and seeds
                                       and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise SpecError("seeds=%r: give a count > 0 or a non-empty list of integer seeds" % (seeds,))
    if isinstance(seeds, list) and len(set(seeds)) != len(seeds):
        raise SpecError("seeds=%r has duplicates" % (seeds,))
    if spec.retry < 0:
        raise SpecError("retry=%d must be >= 0" % spec.retry)
    lo = spec.launcher.local
    if lo.runs_per_device < 1 or lo.threads_per_run < 0 or not lo.devices:
        raise SpecError("launcher.local: devices must be non-empty, runs_per_device >= 1, threads_per_run >= 0")
    if spec.rules is not None:
        _load_rules(spec.rules)
        swept = set(spec.base).union(spec.grid, spec.zip)
        clash = sorted(swept & {"algo.batch_size", "algo.critic_lr", "algo.actor_lr", "lr"})
        if clash:
            raise SpecError("rules=%s sets the batch size and learning rates; remove %s from the spec" % (spec.rules, clash))


# --------------------------------------------------------------------------------------------------- expand
@dataclass
class Run:
    path: str  # absolute run directory
    overrides: List[str]  # for `pql-scale train`
    key: Dict[str, Any]  # the varied values (utd included, seed not)
    seed: int
    name: str  # path relative to the sweep directory


def _seeds(spec):
    return list(range(spec.seeds)) if isinstance(spec.seeds, int) else list(spec.seeds)


def _arg(value):
    """A Python value as a `key=value` right-hand side that config.parse_overrides reads back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value) if not isinstance(value, float) else repr(value)


def _seg(value):
    if isinstance(value, float):
        s = "%g" % value
    elif isinstance(value, (list, tuple)):
        s = "x".join(_seg(v) for v in value)
    else:
        s = str(value)
    return re.sub(r"[^A-Za-z0-9.+-]", "-", s)


def _short(key):
    return SHORT.get(key, key.rsplit(".", 1)[-1])


def _load_rules(path):
    from pql_scaling.analysis import rules as analysis_rules

    try:
        hp = analysis_rules.read_rules(path)
    except (OSError, ValueError) as e:
        raise SpecError("rules=%s: cannot read it (%s); give a fits.json written by `pql-scale analyze`" % (path, e))
    missing = [k for k in ("batch_size", "learning_rate") if k not in hp]
    if missing:
        raise SpecError("rules=%s has no hparams.%s rule: analyze a (batch size, lr) sweep first" % (path, missing[0]))
    return hp


def rule_hparams(rules, task, sigma):
    """(B, lr) of R1's shared-slope rules for a task at UTD sigma; B rounded to a multiple of 16 (as R1).
    Each value is clipped to the range its sweep tried (the rule's `swept`, when fits.json records it): a
    slope fitted on a few UTDs says nothing about values outside the grid, and extrapolating it (batch 64 at
    UTD 1/32 from a 128..512 grid) gave runs that never learned."""
    from pql_scaling.analysis import rules as analysis_rules

    for name in analysis_rules.RULES:
        r = rules[name]
        if task not in r["intercepts"]:
            raise SpecError("the %s rule has no intercept for task %r (tasks: %s)" % (name, task, sorted(r["intercepts"])))
    return analysis_rules.train_hparams(rules, task, sigma)


def expand(spec):
    """Spec -> the list of Runs (grid product x zip x seeds), each checked as a training config."""
    axes = [[((k, v),) for v in values] for k, values in spec.grid.items()]
    if spec.zip:
        n = len(next(iter(spec.zip.values())))
        axes.append([tuple((k, spec.zip[k][i]) for k in spec.zip) for i in range(n)])
    rules = _load_rules(spec.rules) if spec.rules else None
    runs, seen = [], {}
    for combo in itertools.product(*axes):
        varied = [kv for group in combo for kv in group]
        settings = dict(spec.base)
        settings.update(varied)
        utd = settings.pop("utd", None)
        lr = settings.pop("lr", None)
        if lr is not None:
            settings.update({"algo.critic_lr": lr, "algo.actor_lr": lr})
        for seed in _seeds(spec):
            args = ["%s=%s" % (k, _arg(v)) for k, v in settings.items()] + ["seed=%d" % seed]
            try:
                cfg = config_lib.load(args)
                if utd is not None:
                    if not (isinstance(utd, (int, float)) and utd > 0):
                        raise SpecError("utd=%r must be a number > 0" % (utd,))
                    args.append("algo.critic_updates_per_step=%r" % (float(utd) * cfg.num_envs))
                sigma = cfg.algo.critic_updates_per_step / cfg.num_envs if utd is None else float(utd)
                if rules is not None:
                    b, lr = rule_hparams(rules, cfg.task, sigma)
                    args += ["algo.batch_size=%d" % b, "algo.critic_lr=%r" % lr, "algo.actor_lr=%r" % lr]
            except config_lib.ConfigError as e:
                raise SpecError("run %s seed %d: %s" % (dict(varied), seed, e))
            segs = [_seg(cfg.task)]
            for group in combo:
                group = [(k, v) for k, v in group if k != "task"]
                if group:
                    segs.append("_".join("%s_%s" % (_short(k), _seg(v)) for k, v in group))
            segs.append("s%d" % seed)
            name = "/".join(segs)
            if name in seen:
                raise SpecError("runs %s and %s map to the same directory %s: make their values distinct"
                                % (seen[name], dict(varied), name))
            seen[name] = dict(varied)
            key = dict(varied)
            tags = ["%s=%s" % (_short(k), _seg(v)) for k, v in varied]
            args += ["wandb.group=%s" % spec.name, "wandb.tags=%s" % json.dumps(tags),
                     "wandb.name=%s" % name.replace("/", "-"), "log.live=off",
                     "run_dir=%s" % os.path.join(spec.out, name)]
            if "wandb.group" in settings or "wandb.tags" in settings:  # the user's own W&B grouping wins
                args = [a for a in args if not (a.startswith("wandb.group=") or a.startswith("wandb.tags="))] + \
                       ["%s=%s" % (k, _arg(settings[k])) for k in ("wandb.group", "wandb.tags") if k in settings]
            try:
                config_lib.load(args)
            except config_lib.ConfigError as e:
                raise SpecError("run %s: %s" % (name, e))
            runs.append(Run(os.path.join(spec.out, name), args, key, seed, name))
    return runs


# --------------------------------------------------------------------------------------------------- run state
def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _last_metrics(run_dir):
    """The last complete line of metrics.jsonl (a truncated last line, from a kill mid-write, is skipped)."""
    try:
        with open(os.path.join(run_dir, "metrics.jsonl"), "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 16384))
            lines = f.read().splitlines()
    except OSError:
        return None
    last = None
    for line in reversed(lines):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        last = last or dict(row)
        if row.get("return_mean") is not None:  # the last log point may have seen no finished episode
            last["return_mean"] = row["return_mean"]
            break
    return last


def _locked(path):
    """True while some process holds the run's lock (probing takes it for an instant)."""
    lock = os.path.join(path, LOCK_NAME)
    if not os.path.exists(lock):
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, LOCK_TRY)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we took


def run_state(path, probe=True):
    """(state, reason) from the run directory: queued (nothing yet), running, completed, stopped, failed.
    A status.json saying running whose lock nobody holds is a killed process: stopped."""
    st = _read_json(os.path.join(path, "status.json"))
    if st is None:
        if probe and _locked(path):
            return "running", "starting"
        return "queued", None
    s = st.get("status")
    if s == "running" and probe and not _locked(path):
        return "stopped", "the process died without a final status (killed?); rerun the sweep to resume it"
    return s, st.get("reason")


def _row(run, state=None, reason=None, launches=0, probe=True):
    if state is None:
        state, reason = run_state(run.path, probe)
    m = _last_metrics(run.path) or {}
    return {"name": run.name, "path": run.path, "key": run.key, "seed": run.seed, "overrides": run.overrides,
            "state": state, "reason": reason, "env_steps": m.get("env_steps"), "return_mean": m.get("return_mean"),
            "wall_time_s": m.get("wall_time_s"), "launches": launches}


def _acquire(path, wait):
    os.makedirs(path, exist_ok=True)
    fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDWR + os.O_CREAT, 0o644)
    for i in range(1 if wait else 5):  # a few tries: `sweep status` probes the lock for an instant
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else LOCK_TRY)
            return fd
        except OSError:
            time.sleep(0.1 * (i + 1))
    os.close(fd)
    return None


def run_one(run, retry=0, extra=(), env=None, wait=False):
    """Bring one run to an end under its lock, in a child `pql-scale train` process; return its manifest row.

    completed: skip. Nothing there (or no checkpoint yet): start. Stopped or killed: resume from the checkpoint.
    Failed: resume up to `retry` times. Held by another process: return state 'busy' at once (wait=False) or
    block until it is released and decide then (wait=True). `extra` overrides go before the run's own (a
    launcher's threads/device; the spec's values win)."""
    fd = _acquire(run.path, wait)
    if fd is None:
        return _row(run, "busy", "held by another process", probe=False)
    launches, retries = 0, 0
    try:
        while True:
            state, reason = run_state(run.path, probe=False)  # we hold the lock: "running" means it was killed
            if state == "completed":
                return _row(run, state, reason, launches)
            if state == "running":
                state = "stopped"
            ckpt = os.path.exists(os.path.join(run.path, "checkpoints", "last.pt")) and \
                os.path.exists(os.path.join(run.path, "config.yaml"))
            if launches and state == "stopped":  # interrupted while we ran it: the launcher is being stopped
                return _row(run, state, reason, launches)
            if state == "failed" or (launches and state == "queued"):
                if retries >= retry:
                    return _row(run, "failed", reason or "the train process exited without a status (see %s)"
                                % os.path.join(run.path, LOG_NAME), launches)
                retries += 1
            if ckpt:
                args = list(extra) + ["resume=%s" % run.path]
            elif os.path.exists(os.path.join(run.path, "metrics.jsonl")):
                return _row(run, "failed", "metrics but no checkpoint: cannot resume; delete %s to start it again"
                            % run.path, launches)
            else:
                args = list(extra) + run.overrides
            cmd = [sys.executable, "-m", "pql_scaling.cli", "train"] + args
            with open(os.path.join(run.path, LOG_NAME), "ab") as out:
                out.write(("\n$ %s\n" % " ".join(cmd)).encode())
                out.flush()
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=env, pass_fds=(fd,))
                launches += 1
                code = proc.wait()
            if code != 0 and run_state(run.path, probe=False)[0] in ("running", "queued"):
                # died before writing a final status (bad install, OOM kill): record why; the checkpoint stays
                write_json_atomic(os.path.join(run.path, "status.json"), {
                    "status": "failed", "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "reason": "train exited with code %d before writing a status; see %s" % (code, os.path.join(run.path, LOG_NAME))})
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------------- launchers
def _env(threads, cuda=None):
    env = dict(os.environ)
    if threads:
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[k] = str(threads)
    if cuda is not None:
        env["CUDA_VISIBLE_DEVICES"] = cuda
    return env


def _local(spec, runs, retry, board):
    lo = spec.launcher.local
    devices = list(lo.devices)
    if devices == ["auto"]:
        import torch

        devices = [str(i) for i in range(torch.cuda.device_count())] or ["cpu"]
    slots = queue.Queue()
    for _ in range(lo.runs_per_device):
        for d in devices:
            slots.put(d)
    n = slots.qsize()

    def job(run, wait):
        dev = slots.get()
        try:
            gpu = dev != "cpu"
            extra = (["threads=%d" % lo.threads_per_run] if lo.threads_per_run else []) + (["device=cuda"] if gpu else [])
            board.update(run, "running")
            return run_one(run, retry, extra, _env(lo.threads_per_run, dev if gpu else None), wait)
        finally:
            slots.put(dev)

    return _pool(lambda submit_runs, wait: _futures(job, submit_runs, wait, n, board), runs, board)


def _futures(job, runs, wait, n, board):
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        futs = [pool.submit(job, r, wait) for r in runs]
        pending = set(futs)
        try:
            while pending:
                done, pending = concurrent.futures.wait(pending, 2.0, concurrent.futures.FIRST_COMPLETED)
                for f in done:
                    yield f.result()
                board.refresh()
        finally:  # Ctrl-C: start nothing new (the running children got the SIGINT too and checkpoint)
            for f in futs:
                f.cancel()


def _pool(launch_round, runs, board):
    """Run everything once; then wait for the runs another process held and decide them again."""
    busy = []
    for row in launch_round(runs, False):
        board.done(row)
        if row["state"] == "busy":
            busy.append(next(r for r in runs if r.path == row["path"]))
    if busy:
        board.note("%d run(s) held by another process: waiting for them" % len(busy))
        for row in launch_round(busy, True):
            board.done(row)
    return board.rows()


def _ray(spec, runs, retry, board):
    try:
        import ray
    except ImportError:
        raise SpecError("launcher.kind=ray needs Ray: pip install -e \".[ray]\"")
    o = spec.launcher.ray
    env_vars = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}
    started = not ray.is_initialized()
    sigterm = signal.getsignal(signal.SIGTERM)  # ray.init installs its own handler in this (driver) process
    if started:
        kw = dict(address=o.address) if o.address else dict(include_dashboard=False)
        try:
            ray.init(runtime_env={"env_vars": env_vars} if env_vars else None, log_to_driver=False, **kw)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise SpecError("launcher.ray.address=%r: cannot connect to Ray (%s: %s); start one with `ray start "
                            "--head`, or leave address null for a local cluster" % (o.address, type(e).__name__, e))
    threads = max(1, int(o.num_cpus))
    extra = ["threads=%d" % threads] + (["device=cuda"] if o.num_gpus > 0 else [])
    remote = ray.remote(num_cpus=o.num_cpus, num_gpus=o.num_gpus, max_retries=0)(_ray_task)

    def launch_round(rs, wait):
        refs = {}
        for r in rs:
            refs[remote.remote(r, retry, extra, threads, wait)] = r
            board.update(r, "queued")
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=2.0)
            board.refresh()
            for ref in ready:
                refs.pop(ref)
                yield ray.get(ref)

    try:
        return _pool(launch_round, runs, board)
    finally:
        if started:
            ray.shutdown()
            signal.signal(signal.SIGTERM, sigterm)


def _ray_task(run, retry, extra, threads, wait):
    # Ray sets CUDA_VISIBLE_DEVICES for the task's GPUs; the train child inherits it
    return run_one(run, retry, extra, _env(threads), wait)


def slurm_parameters(spec):
    """The SlurmExecutor parameters a spec submits with (tested for a GPU cluster spec)."""
    o = spec.launcher.slurm
    p = {"job_name": spec.name, "time": o.time_min, "cpus_per_task": o.cpus_per_task, "ntasks_per_node": 1,
         "array_parallelism": o.array_parallelism, "setup": list(o.setup), "signal_delay_s": 60}
    if o.partition:
        p["partition"] = o.partition
    if o.gpus_per_task:
        p["gpus_per_task"] = o.gpus_per_task
    if o.mem_gb:
        p["mem"] = "%dGB" % int(o.mem_gb) if float(o.mem_gb).is_integer() else "%dMB" % int(o.mem_gb * 1024)
    if o.account:
        p["account"] = o.account
    if o.extra:
        p["additional_parameters"] = dict(o.extra)
    return p


def _slurm_task(run, retry, extra, threads):
    # on the node: SLURM pins the job's GPUs (CUDA_VISIBLE_DEVICES); a run held elsewhere returns 'busy'
    return run_one(run, retry, extra, _env(threads), False)


def _slurm(spec, runs, retry, board):
    try:
        import submitit
    except ImportError:
        raise SpecError("launcher.kind=slurm needs submitit: pip install -e \".[slurm]\"")
    import logging

    logging.getLogger("submitit").setLevel(logging.ERROR)  # without slurmdbd every sacct call warns
    o = spec.launcher.slurm
    folder = o.folder or os.path.join(spec.out, ".submitit", "%j")
    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=0)
    ex.update_parameters(**slurm_parameters(spec))
    extra = ["threads=%d" % o.cpus_per_task] + (["device=cuda"] if o.gpus_per_task else [])

    def launch_round(rs, wait):
        if wait:  # wait here, on the shared file system, for the other holders; then submit what is left
            for r in rs:
                os.close(_acquire(r.path, True))
            for r in [r for r in rs if run_state(r.path)[0] == "completed"]:
                yield _row(r)
            rs = [r for r in rs if run_state(r.path)[0] != "completed"]
        if not rs:
            return
        try:
            jobs = ex.map_array(_slurm_task, rs, [retry] * len(rs), [extra] * len(rs), [o.cpus_per_task] * len(rs))
        except Exception as e:  # noqa: BLE001 - sbatch missing or refusing: say so, nothing was started
            raise SpecError("SLURM submission failed (%s: %s); check `sinfo` and the launcher.slurm options"
                            % (type(e).__name__, str(e).strip().splitlines()[-1] if str(e).strip() else ""))
        board.note("submitted SLURM array %s (%d runs)" % (jobs[0].job_id.split("_")[0], len(jobs)))
        for r in rs:
            board.update(r, "queued")
        pending = dict(zip(jobs, rs))
        last_check = time.monotonic()
        while pending:
            time.sleep(1.0)
            board.refresh()
            # result files say most; ask SLURM (submitit's watcher) now and then for jobs that died without one
            check = time.monotonic() - last_check > 30
            last_check = time.monotonic() if check else last_check
            for job in [j for j in pending if j.paths.result_pickle.exists() or (check and j.done(force_check=True))]:
                r = pending.pop(job)
                try:
                    yield job.result()
                except Exception as e:  # noqa: BLE001 - the job died (time limit, node failure): the run dir tells
                    yield _row(r, reason="SLURM job %s: %s" % (job.job_id, str(e).splitlines()[-1][:300]))

    return _pool(launch_round, runs, board)


# --------------------------------------------------------------------------------------------------- board
class Board:
    """The launcher's view: one cached row per run, the manifest (rewritten atomically on every change) and
    the live display (a rich table on a terminal, one plain line per finished run otherwise)."""

    def __init__(self, spec, runs, live="auto"):
        self.spec, self.lock = spec, threading.Lock()
        self.runs = {r.path: r for r in runs}
        self.cache = {r.path: _row(r, probe=False) for r in runs}
        self.mine, self.written = set(), 0.0
        self.finished = 0
        self.mode = ("rich" if sys.stdout.isatty() else "plain") if live == "auto" else live
        self.live = None
        if self.mode == "rich":
            from rich.live import Live

            self.live = Live(status_table(self.rows(), spec.name), refresh_per_second=1)
            self.live.start()

    def rows(self):
        return list(self.cache.values())

    def _set(self, path, state, reason, launches=0):
        self.cache[path] = _row(self.runs[path], state, reason, self.cache[path]["launches"] + launches, probe=False)
        self.mine.add(path)
        if time.monotonic() - self.written > 1.0:  # a derived view: throttled; launch() writes the final one
            self.write()

    def write(self, final=False):
        """Rows this launcher did not touch are re-read from disk: another launcher may be running them."""
        for path, run in self.runs.items():
            if final or path not in self.mine:
                st = run_state(path, probe=final)
                if final or st[0] != self.cache[path]["state"]:
                    self.cache[path] = _row(run, st[0], st[1], self.cache[path]["launches"], probe=False)
        write_manifest(self.spec, self.rows())
        self.written = time.monotonic()

    def update(self, run, state, reason=None):
        with self.lock:
            self._set(run.path, state, reason)
        self.refresh()

    def done(self, row):
        with self.lock:
            if row["state"] == "busy":
                self._set(row["path"], "running", "held by another process", row["launches"])
            else:
                self._set(row["path"], row["state"], row["reason"], row["launches"])
                self.finished += 1
            n = self.finished
        if self.mode == "plain":
            why = ("  (%s)" % row["reason"]) if row["state"] != "completed" and row["reason"] else ""
            print("[%d] %-9s %s%s" % (n, row["state"], row["name"], why), flush=True)
        self.refresh()

    def note(self, text):
        if self.mode == "plain":
            print(text, flush=True)

    def refresh(self):
        if self.live is not None:
            with self.lock:  # running rows: fresh env steps and returns
                for path, row in self.cache.items():
                    if row["state"] == "running":
                        self.cache[path] = _row(self.runs[path], "running", row["reason"], row["launches"], probe=False)
                table = status_table(self.rows(), self.spec.name)
            self.live.update(table)

    def close(self):
        if self.live is not None:
            self.refresh()
            self.live.stop()


def write_manifest(spec, rows):
    """manifest.json, replaced atomically (a temporary file per process and thread: launchers may share it)."""
    os.makedirs(spec.out, exist_ok=True)
    path = os.path.join(spec.out, "manifest.json")
    tmp = "%s.%d.%d.tmp" % (path, os.getpid(), threading.get_ident())
    with open(tmp, "w") as f:
        json.dump({"name": spec.name, "out": spec.out, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
                   "spec": OmegaConf.to_container(OmegaConf.structured(spec)), "runs": rows}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def totals(rows):
    t = {s: 0 for s in STATES}
    for r in rows:
        t[r["state"]] = t.get(r["state"], 0) + 1
    return t


def status_table(rows, title):
    from rich.table import Table

    t = Table(title="sweep %s: %s" % (title, "  ".join("%s %d" % kv for kv in totals(rows).items() if kv[1])))
    for col in ("run", "state", "env steps", "return", "wall s"):
        t.add_column(col, justify="left" if col in ("run", "state") else "right")
    for r in rows:
        t.add_row(r["name"], r["state"], "-" if r["env_steps"] is None else "{:,}".format(r["env_steps"]),
                  "-" if r["return_mean"] is None else "%.1f" % r["return_mean"],
                  "-" if r["wall_time_s"] is None else "%.0f" % r["wall_time_s"])
    return t


# --------------------------------------------------------------------------------------------------- entry points
def status(spec):
    """Rows for every run of the spec, read from the run directories (the source of truth)."""
    return [_row(r) for r in expand(spec)]


def launch(spec, launcher=None, retry=None, dry_run=False, live="off"):
    """Run the spec's missing / unfinished runs; return the manifest rows. Idempotent (see module doc)."""
    kind = launcher or spec.launcher.kind
    if kind not in LAUNCHERS:
        raise SpecError("launcher %r is not one of %s" % (kind, ", ".join(LAUNCHERS)))
    retry = spec.retry if retry is None else retry
    runs = expand(spec)
    if dry_run:
        return [_row(r) for r in runs]
    os.makedirs(spec.out, exist_ok=True)
    todo = [r for r in runs if run_state(r.path, probe=False)[0] != "completed"]
    board = Board(spec, runs, live)
    try:
        board.write()
        board.note("sweep %s: %d runs, %d to do, launcher %s, out %s" % (spec.name, len(runs), len(todo), kind, spec.out))
        if todo:
            {"local": _local, "ray": _ray, "slurm": _slurm}[kind](spec, todo, retry, board)
        board.write(final=True)
        return board.rows()
    finally:
        board.close()
