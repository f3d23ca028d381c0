"""The three launchers (a local pool, a Ray cluster, SLURM job arrays through submitit) and the entry points
`launch` and `status`. Every launcher runs `run_one` (state.py) per run; Ray and submitit pickle the task
functions below by their module path, so they stay top-level functions of this module. With
`launcher.population` a launcher's unit is a population (packing.py: one pool job, Ray task or SLURM array task
running `run_group`, with the resources a run gets) or a run left alone."""

import concurrent.futures
import os
import queue
import signal
import time

from pql_scaling.experiments.sweep import packing, sizing, slurm_jobs
from pql_scaling.experiments.sweep.board import Board
from pql_scaling.experiments.sweep.expand import expand
from pql_scaling.experiments.sweep.spec import LAUNCHERS, SpecError
from pql_scaling.experiments.sweep.state import _acquire, _row, run_one, run_state
from pql_scaling.rundir.disk import log


def _env(threads, cuda=None):
    env = dict(os.environ)
    if threads:
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[k] = str(threads)
    if cuda is not None:
        env["CUDA_VISIBLE_DEVICES"] = cuda
    return env


def _once(fn):
    """fn's value, computed at the first call (a measurement shared by a launch's rounds)."""
    memo = []

    def get():
        if not memo:
            memo.append(fn())
        return memo[0]

    return get


def _units(spec, rs, board, target):
    """A round's launch units: populations (launcher.population) and runs left alone; auto's INFO lines."""
    groups, alone, lines = packing.pack(rs, spec.launcher.population, spec.out, target)
    for line in lines:
        if board.mode == "plain":
            board.note("INFO: " + line)
        else:
            log.info(line)
    return groups + alone


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

    def job(unit, wait):
        """Rows of a run, or of a population of runs (launcher.population, packing.py)."""
        dev = slots.get()
        try:
            gpu = dev != "cpu"
            extra = (["threads=%d" % lo.threads_per_run] if lo.threads_per_run else []) + (
                ["device=cuda"] if gpu else []
            )
            env = _env(lo.threads_per_run, dev if gpu else None)
            if isinstance(unit, packing.Group):
                for r in unit.runs:
                    board.update(r, "running")
                return packing.run_group(unit, retry, extra, env, wait)
            board.update(unit, "running")
            return [run_one(unit, retry, extra, env, wait)]
        finally:
            slots.put(dev)

    target = _once(lambda: sizing.local_target(spec, devices))

    def launch_round(rs, wait):
        for rows in _futures(job, _units(spec, rs, board, target), wait, n, board):
            yield from rows

    return _pool(launch_round, runs, board)


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
    undo = None
    if started:
        runtime_env = {"env_vars": env_vars} if env_vars else None
        if o.address:
            try:
                ray.init(address=o.address, runtime_env=runtime_env, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise SpecError(
                    "launcher.ray.address=%r: cannot connect to Ray (%s: %s); start one with `ray start "
                    "--head`, or leave address null for a local cluster" % (o.address, type(e).__name__, e)
                )
        else:
            undo = ray_local_init(ray, o.host, runtime_env, board)
    threads = max(1, int(o.num_cpus))
    extra = ["threads=%d" % threads] + (["device=cuda"] if o.num_gpus > 0 else [])
    task = ray.remote(num_cpus=o.num_cpus, num_gpus=o.num_gpus, max_retries=0)  # a run's or a population's
    remote, remote_group = task(_ray_task), task(_ray_group_task)

    def probe():  # population=auto: measured by a task with the runs' resources, on a node they would get
        memory, what = ray.get(task(sizing.ray_probe).remote(o.num_cpus, o.num_gpus))
        return sizing.Target(memory, what)

    target = _once(lambda: sizing.given(spec) or probe())

    def launch_round(rs, wait):
        refs = {}
        for u in _units(spec, rs, board, target):
            f = remote_group if isinstance(u, packing.Group) else remote
            refs[f.remote(u, retry, extra, threads, wait)] = u
            for r in packing.members(u):
                board.update(r, "queued")
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=2.0)
            board.refresh()
            for ref in ready:
                refs.pop(ref)
                out = ray.get(ref)
                yield from out if isinstance(out, list) else [out]

    try:
        return _pool(launch_round, runs, board)
    finally:
        if started:
            ray.shutdown()
            signal.signal(signal.SIGTERM, sigterm)
        if undo:
            undo()


LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Ray's single-machine mode (its default on Windows and macOS), read by Ray when it is imported
RAY_SINGLE_MACHINE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _ray_single_machine():
    """Switch Ray to its single-machine mode, in which it keeps a loopback node address as it is (otherwise it
    replaces 127.0.0.1 by this machine's IP) and its servers bind it; return the function that switches back.
    The processes Ray spawns read the variable; this driver, which may have imported Ray already, reads the
    constant Ray derived from it."""
    old_env = os.environ.get(RAY_SINGLE_MACHINE)
    os.environ[RAY_SINGLE_MACHINE] = "0"
    try:
        from ray._private import ray_constants
    except ImportError:  # another layout: the variable alone (read at Ray's import) has to do
        ray_constants = None
    old = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    if old is not None:
        ray_constants.ENABLE_RAY_CLUSTER = False

    def undo():
        if old_env is None:
            os.environ.pop(RAY_SINGLE_MACHINE, None)
        else:
            os.environ[RAY_SINGLE_MACHINE] = old_env
        if old is not None:
            ray_constants.ENABLE_RAY_CLUSTER = old

    return undo


def ray_local_init(ray, host, runtime_env=None, board=None):
    """Start the sweep's own local Ray cluster listening on `host` and connect to it; return the function that
    undoes the settings once Ray is shut down.

    Loopback (the default): Ray's single-machine mode with the node address 127.0.0.1, so the GCS, the raylet,
    the object manager, the workers' gRPC servers, the runtime-env agent and the dashboard (kept to its minimal
    head) listen on loopback only; a Ray that would still pick another address is shut down and refused. Any
    other address (for other machines to join): Ray advertises it, and its gRPC servers listen on every
    interface (Ray 2.60: nothing confines them), guarded by Ray's own token authentication."""
    loopback = host in LOOPBACK
    undo = _ray_single_machine() if loopback else None
    try:
        ray.init(
            runtime_env=runtime_env,
            log_to_driver=False,
            include_dashboard=False,
            dashboard_host="127.0.0.1",
            _node_ip_address=host,
        )
        node_ip = ray.util.get_node_ip_address()
        if loopback and node_ip not in LOOPBACK:
            ray.shutdown()
            raise SpecError(
                "launcher.ray.host=%s: Ray %s started its local cluster on %s, not on loopback; start a "
                "cluster by hand and name it in launcher.ray.address" % (host, ray.__version__, node_ip)
            )
    except BaseException:
        if undo:
            undo()
        raise
    if not loopback and board is not None:
        board.note(
            "local Ray cluster on %s: Ray listens on every interface of this machine (token "
            "authentication only); launcher.ray.host=127.0.0.1 keeps it to loopback" % host
        )
    return undo


def _ray_task(run, retry, extra, threads, wait):
    # Ray sets CUDA_VISIBLE_DEVICES for the task's GPUs; the train child inherits it
    return run_one(run, retry, extra, _env(threads), wait)


def _ray_group_task(group, retry, extra, threads, wait):
    """A population's rows (packing.run_group), with the resources of one run's task."""
    return packing.run_group(group, retry, extra, _env(threads), wait)


def slurm_parameters(spec):
    """The SlurmExecutor parameters a spec submits with (tested for a GPU cluster spec)."""
    o = spec.launcher.slurm
    p = {
        "job_name": spec.name,
        "time": o.time_min,
        "cpus_per_task": o.cpus_per_task,
        "ntasks_per_node": 1,
        "array_parallelism": o.array_parallelism,
        "setup": list(o.setup),
        "signal_delay_s": 60,
    }
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


def _slurm_task(unit, retry, extra, threads):
    # on the node: SLURM pins the job's GPUs (CUDA_VISIBLE_DEVICES); a run held elsewhere returns 'busy'.
    # A population (packing.Group) returns its members' rows, a run its row.
    if isinstance(unit, packing.Group):
        return packing.run_group(unit, retry, extra, _env(threads), False)
    return run_one(unit, retry, extra, _env(threads), False)


def _slurm_results(pending, board):
    """Rows of submitted jobs ({job: its runs}) as they finish: result files say most; ask SLURM (submitit's
    watcher) now and then for jobs that died without one."""
    last_check = time.monotonic()
    while pending:
        time.sleep(1.0)
        board.refresh()
        check = time.monotonic() - last_check > 30
        last_check = time.monotonic() if check else last_check
        finished = [
            j for j in pending if j.paths.result_pickle.exists() or (check and j.done(force_check=True))
        ]
        for job in finished:
            rs = pending.pop(job)
            try:
                out = job.result()
                rows = out if isinstance(out, list) else [out]
            except Exception as e:  # noqa: BLE001 - the job died (time limit, node failure): run dirs tell
                why = "SLURM job %s: %s" % (job.job_id, str(e).splitlines()[-1][:300])
                rows = [_row(r, reason=why) for r in rs]
            paths = {r.path for r in rs}  # a population's members this launch did not ask for are not its
            yield from (row for row in rows if row["path"] in paths)


def _slurm_submit(ex, units, retry, extra, threads):
    n = len(units)
    try:
        return ex.map_array(_slurm_task, units, [retry] * n, [extra] * n, [threads] * n)
    except Exception as e:  # noqa: BLE001 - sbatch missing or refusing: say so, nothing was started
        raise SpecError(
            "SLURM submission failed (%s: %s); check `sinfo` and the launcher.slurm options"
            % (type(e).__name__, str(e).strip().splitlines()[-1] if str(e).strip() else "")
        )


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
    target = _once(lambda: sizing.slurm_target(spec))

    def launch_round(rs, wait):
        if wait:  # wait here, on the shared file system, for the other holders; then submit what is left
            for r in rs:
                os.close(_acquire(r.path, True))
            for r in [r for r in rs if run_state(r.path)[0] == "completed"]:
                yield _row(r)
            rs = [r for r in rs if run_state(r.path)[0] != "completed"]
        if not rs:
            return
        with slurm_jobs.submit_lock(spec.out):  # decide, submit and record as one step (slurm_jobs.py)
            try:
                held = slurm_jobs.held(spec.out, rs)
            except slurm_jobs.SlurmQueryError as e:
                raise SpecError(
                    "cannot tell which runs this sweep's earlier SLURM jobs still hold (%s); nothing was "
                    "submitted, so none is submitted twice: check `squeue`, then rerun" % e
                )
            todo = [r for r in rs if r.path not in held]
            units = _units(spec, todo, board, target) if todo else []
            jobs = _slurm_submit(ex, units, retry, extra, o.cpus_per_task) if units else []
            # a population's job holds every member: each member's name records its id
            slurm_jobs.record(
                spec.out, [(r.name, j.job_id) for u, j in zip(units, jobs) for r in packing.members(u)]
            )
        if jobs:
            board.note(
                "submitted SLURM array %s (%d tasks, %d runs)"
                % (jobs[0].job_id.split("_")[0], len(jobs), len(todo))
            )
        if held:
            board.note(
                "%d run(s) still held by SLURM jobs of an earlier launch (%s): not submitted again, watched"
                % (len(held), ", ".join("%s %s" % v for v in sorted(held.values())[:6]))
            )
        pending = {j: packing.members(u) for u, j in zip(units, jobs)}
        watched = {}  # job id -> the runs it holds (a population's job: all its members)
        for r in rs:
            job_id, state = held.get(r.path, (None, "PENDING"))
            board.update(r, "running" if state == "RUNNING" else "queued")
            if job_id:
                watched.setdefault(job_id, []).append(r)
        for job_id, held_runs in watched.items():
            pending[submitit.SlurmJob(folder, job_id)] = held_runs
        yield from _slurm_results(pending, board)

    return _pool(launch_round, runs, board)


# ---------------------------------------------------------------------------------------------- entry points
def status(spec):
    """Rows for every run of the spec, read from the run directories (the source of truth)."""
    return [_row(r) for r in expand(spec)]


def _check_packing(spec, kind, todo):
    """Fail before any launcher starts: an integer K with a config that cannot be packed; auto on SLURM
    without the memory of a task."""
    k = spec.launcher.population
    if k == "auto" and kind == "slurm":
        sizing.slurm_target(spec)
    elif k != "auto" and k > 1:
        packing.pack(todo, k, spec.out)


def launch(spec, launcher=None, retry=None, dry_run=False, live="off"):
    """Run the spec's missing / unfinished runs; return the manifest rows. Idempotent: a launcher killed at
    any moment loses nothing (see the package's doc)."""
    kind = launcher or spec.launcher.kind
    if kind not in LAUNCHERS:
        raise SpecError("launcher %r is not one of %s" % (kind, ", ".join(LAUNCHERS)))
    retry = spec.retry if retry is None else retry
    runs = expand(spec)
    if dry_run:
        return [_row(r) for r in runs]
    os.makedirs(spec.out, exist_ok=True)
    todo = [r for r in runs if run_state(r.path, probe=False)[0] != "completed"]
    board = Board(spec, runs, live, todo=len(todo))
    try:
        board.write()
        board.note(
            "sweep %s: %d runs, %d to do, launcher %s, out %s"
            % (spec.name, len(runs), len(todo), kind, spec.out)
        )
        if todo:
            _check_packing(spec, kind, todo)
            {"local": _local, "ray": _ray, "slurm": _slurm}[kind](spec, todo, retry, board)
        board.write(final=True)
        return board.rows()
    finally:
        board.close()
