"""`pql-scale train`: resolve the config, open the run directory, run a runtime, leave a clean record.

Whatever happens (completion, Ctrl-C / SIGTERM, a bad value, a NaN, a crash) the run directory keeps
config.yaml, metrics.jsonl, train.log, a status.json saying what happened and why, and its last good
checkpoint; `resume=RUN_DIR` continues from that checkpoint and appends to the same logs.
"""

import os
import signal
import time
import traceback
import uuid
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch

from pql_scaling import config as config_lib
from pql_scaling import envs
from pql_scaling.config import Config
from pql_scaling.envs.contract import VecEnv, critic_obs_dim
from pql_scaling.rundir import summary
from pql_scaling.rundir.disk import DiskFull, log
from pql_scaling.rundir.display import Display
from pql_scaling.rundir.rundir import RunDir
from pql_scaling.rundir.wandb_mirror import WandbMirror
from pql_scaling.runtime import resources, sync, trio
from pql_scaling.runtime.session import Diverged, Runtime, Session

__all__ = ["Diverged", "RUNTIMES", "Runtime", "Session", "resolve", "train"]

GRACEFUL_SIGNALS = (signal.SIGTERM,)
RUNTIMES = {"sync": sync.run, "trio": trio.run}  # cfg.mode -> the loop that drives a Session


def resolve(overrides: List[str]) -> Tuple[Config, str]:
    """(cfg, run directory path) from command-line overrides."""
    pairs = dict(config_lib.parse_overrides(overrides))
    resume = pairs.get("resume")
    if resume:
        import yaml

        path = os.path.join(resume, "config.yaml")
        if not os.path.exists(path):
            raise config_lib.ConfigError(
                "resume=%s: no config.yaml there; pass the run directory printed by "
                "`pql-scale train`" % resume
            )
        with open(path) as f:
            base = yaml.safe_load(f)
        base["resume"] = None
        cfg = config_lib.load(overrides, base=base)
        return cfg, resume
    cfg = config_lib.load(overrides)
    from pql_scaling.rundir.rundir import default_run_dir

    return cfg, cfg.run_dir or default_run_dir(cfg)


def train(overrides: Iterable[str] = (), quiet: bool = False, started: Optional[float] = None) -> str:
    """Run training; return the run directory. Raises after recording failures in the run directory.

    `started` (time.monotonic()) is when start-up began: the CLI passes its own entry time, so startup_s
    covers the imports too; default: now. max_time_s and wall_time_s count training time, from the
    first actor step."""
    started = time.monotonic() if started is None else started
    from pql_scaling.runtime import population

    resume_pop = population.is_population(dict(config_lib.parse_overrides(list(overrides))).get("resume"))
    if resume_pop:  # K members as one batch, each its own run directory (runtime/population.py)
        cfg = population.resolve_resume(list(overrides))
        run_path = dict(config_lib.parse_overrides(list(overrides)))["resume"]
    else:
        cfg, run_path = resolve(list(overrides))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.population.size > 1:
        return population.train(cfg, run_path, quiet, started, resuming=resume_pop)
    if not cfg.resume and os.path.exists(os.path.join(run_path, "metrics.jsonl")):
        raise config_lib.ConfigError(
            "run_dir=%s already holds a run; pick another run_dir, or continue it "
            "with resume=%s" % (run_path, run_path)
        )
    resources.check_devices(cfg)
    torch.manual_seed(cfg.seed)
    env = _make_env(cfg)
    run = RunDir(run_path)
    s, run_id, rewind_to = _open_session(cfg, run, env, started, quiet)
    wandb = WandbMirror(cfg, run.path, run_id, rewind_to=rewind_to, rows_written=lambda: run.metrics_rows)
    display = Display(
        "off" if quiet else cfg.log.live, cfg.max_env_steps, cfg.task, cfg.max_time_s, cfg.log.console_every_s
    )
    s.metrics.mirror_to(wandb, display)
    old_handlers = {
        sig: signal.signal(sig, lambda signum, frame: s.interrupt(signum)) for sig in GRACEFUL_SIGNALS
    }
    outcome = Outcome()
    try:
        _drive(s, outcome)
    finally:
        _close(s, env, outcome, old_handlers)
        if not quiet:
            _print_summary(run.path, wandb.where)
    return run.path


def _print_summary(path: str, wandb_where: Optional[str]) -> None:
    """The end-of-run summary (rundir/summary.py), read back from the run directory as any reader would."""
    try:
        lines = summary.summarize(path, wandb_where)
    except Exception as e:  # noqa: BLE001 - the run's record is complete; only the summary is lost
        log.warning("no end-of-run summary (%s: %s)", type(e).__name__, e)
        return
    print("\n".join(lines), flush=True)


def _make_env(cfg: Config) -> VecEnv:
    # env_kwargs and gymnasium.* as the backend's constructor takes them
    options = config_lib.env_options(cfg, cfg.backend or envs.default_backend(cfg.task))
    env = envs.make(
        cfg.task,
        cfg.num_envs,
        device=cfg.actor_device or cfg.device,
        seed=cfg.seed,
        backend=cfg.backend,
        **options,
    )
    try:
        resources.check_memory(cfg, env.obs_dim, env.act_dim, env.num_envs, critic_obs_dim(env))
    except config_lib.ConfigError:
        if hasattr(env, "close"):
            env.close()
        raise
    return env


def _open_session(
    cfg: Config, run: RunDir, env: VecEnv, started: float, quiet: bool
) -> Tuple[Session, str, Optional[int]]:
    """The Session, from the checkpoint when resuming (log points it never saw superseded), with its run
    directory written and marked running: (session, run_id, the W&B step to rewind to or None)."""
    resuming = bool(cfg.resume)
    rewind_to = None
    try:
        # to the CPU: each role moves what it owns to its device (RNG states must stay CPU ByteTensors)
        state = run.load_checkpoint(map_location="cpu") if resuming else None
        if state is not None:  # one timeline: log points the checkpoint never saw are superseded
            moved, last = run.supersede(state.get("metrics_rows"), state["actor"]["steps"] * env.num_envs)
            if moved:
                rewind_to = -1 if last is None else last
        s = Session(cfg, run, env, state, started=started)
        s.facts["clock_starts_at"] = "the first actor step"  # wall_time_s, max_time_s; start-up is startup_s
        run_id = s.counters.get("run_id") or uuid.uuid4().hex[:12]
        s.counters["run_id"] = run_id
        if not resuming:
            run.write_config(cfg, s.facts)
            s.checkpoint()  # a run can always be resumed, even if it dies before its first periodic one
        run.set_status("running")
        log.info(
            "run %s: %s on %s, %d envs, utd %.5f, critic %d params, defaults %s",
            run.path,
            cfg.algo.name,
            cfg.task,
            env.num_envs,
            s.facts["utd"],
            s.facts["critic_params"],
            s.facts["defaults"],
        )
        backend = cfg.backend or envs.default_backend(cfg.task)
        if backend in config_lib.ONE_SIM_PER_PROCESS:
            log.info(
                "evaluation off: %s allows one simulation per process, so no separate eval batch",
                config_lib.ONE_SIM_PER_PROCESS[backend],
            )
        if not quiet and not resuming:
            print(
                "%s on %s: defaults from %s (overrides on top)" % (cfg.task, cfg.device, s.facts["defaults"]),
                flush=True,
            )
    except Exception:
        run.close()
        if hasattr(env, "close"):
            env.close()
        raise
    return s, run_id, rewind_to


class Outcome:
    """What status.json will say: failed unless the run gets further."""

    def __init__(self) -> None:
        self.status: str = "failed"
        self.reason: Optional[str] = None
        self.exit_code = 1


def _drive(s: Session, outcome: Outcome) -> None:
    """Run the configured runtime, then the last log point and checkpoint; record how it ended."""
    run = s.run
    try:
        RUNTIMES[s.cfg.mode](s)
        if s.metrics.unlogged_progress():  # trio learners may still have paid owed updates after the last one
            s.log_point(time.monotonic())
        s.checkpoint()
        outcome.status, outcome.reason, outcome.exit_code = "completed", s.stop_reason, 0
    except KeyboardInterrupt as e:
        log.warning("interrupted (%s): writing a final checkpoint", e or "Ctrl-C")
        outcome.reason = "interrupted (%s); continue with resume=%s" % (e or "Ctrl-C", run.path)
        s.checkpoint()
        outcome.status = "stopped"
    except (Diverged, DiskFull) as e:
        outcome.reason = str(e)
        log.error(outcome.reason)
        raise
    except Exception as e:
        outcome.reason = "%s: %s (traceback in %s)" % (
            type(e).__name__,
            e,
            os.path.join(run.path, "train.log"),
        )
        log.error("training failed:\n%s", traceback.format_exc())
        raise


def _close(s: Session, env: VecEnv, outcome: Outcome, old_handlers: Dict[Any, Any]) -> None:
    """Leave a clean record on every path: the last background write landed, status.json, every writer
    closed."""
    run = s.run
    try:
        s.writer.wait()  # a background checkpoint still being written lands before the status says so
    except Exception as e:  # noqa: BLE001 - the failure is logged; the status below still gets written
        log.error("the last background checkpoint failed: %s", e)
    try:
        run.set_status(outcome.status, outcome.reason, env_steps=s.env_steps)
    except DiskFull as e:  # the disk is full: say so where it can still be said
        log.error("could not write status.json (%s): %s; %s", outcome.status, outcome.reason, e)
    for sig, handler in old_handlers.items():
        signal.signal(sig, handler)
    s.metrics.display.close()
    s.metrics.wandb.finish(outcome.exit_code)
    if hasattr(env, "close"):
        env.close()
    if s.evaluator is not None:
        s.evaluator.close()
    run.close()
