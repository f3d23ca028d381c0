"""`pql-scale train`: resolve the config, open the run directory, run a runtime, leave a clean record.

Whatever happens (completion, Ctrl-C / SIGTERM, a bad value, a NaN, a crash) the run directory keeps
config.yaml, metrics.jsonl, train.log, a status.json saying what happened and why, and its last good
checkpoint; `resume=RUN_DIR` continues from that checkpoint and appends to the same logs.
"""
import math
import os
import shutil
import signal
import threading
import time
import traceback
import uuid

import torch

from pql_scaling import envs
from pql_scaling import tasks
from pql_scaling import config as config_lib
from pql_scaling.core import nets
from pql_scaling.runtime import resources
from pql_scaling.runtime.actor import ActorRole
from pql_scaling.runtime.learner import PLearner, VLearner
from pql_scaling.core.replay import Normalizer, Replay
from pql_scaling.rundir.replay_store import ReplayStore
from pql_scaling.rundir.disk import DiskFull, log, to_host
from pql_scaling.rundir.display import Display
from pql_scaling.rundir.rundir import RunDir
from pql_scaling.rundir.wandb_mirror import WandbMirror

GRACEFUL_SIGNALS = (signal.SIGTERM,)


class Diverged(RuntimeError):
    pass


class Session:
    """Everything one run holds: config, env, roles, counters, and the run directory's writers."""

    def __init__(self, cfg, run, env, resumed_state=None, started=None):
        self.cfg, self.run, self.env = cfg, run, env
        a, device = cfg.algo, torch.device(cfg.device)
        self.device = device
        # trio placement: the actor (policy copy, normaliser) on actor_device, the replay on the V-learner's
        # device; the learners here are the main process's mirrors of the spawned ones (see trio.py)
        trio = cfg.mode == "trio"
        actor_device = torch.device(cfg.actor_device or cfg.device) if trio else device
        replay_device = torch.device(cfg.v_learner_device or cfg.device) if trio else device
        actor_net, critic = nets.build(cfg, env.obs_dim, env.act_dim)
        actor_net, critic = actor_net.to(actor_device), critic.to(device)
        self.norm = Normalizer(env.obs_dim, actor_device, clip=a.obs_clip, enabled=a.obs_norm)
        self.replay = Replay(a.buffer_size, env.obs_dim, env.act_dim, env.num_envs, replay_device)
        self.replay_store = None
        if cfg.save_replay:
            need = 1.5 * self.replay.capacity * resources.replay_row_bytes(env.obs_dim, env.act_dim)
            free = shutil.disk_usage(run.ckpt_dir).free
            if need < 0.5 * free:
                self.replay_store = ReplayStore(run.ckpt_dir, self.replay.capacity)
            else:
                log.warning("save_replay: the replay's segments would take up to %.1f GB, more than half of the %.1f GB "
                            "free in %s; checkpoints hold no replay (a resume refills it)", need / 1e9, free / 1e9,
                            run.ckpt_dir)
        self.v_learner = VLearner(cfg, critic, actor_net, self.norm, device)
        self.p_learner = PLearner(cfg, actor_net, critic, self.norm, actor_device, env.act_dim)
        self.actor = ActorRole(cfg, env, self.replay, self.norm, actor_device)
        self.learning_starts = max(a.learning_starts, a.batch_size)
        self.flops_critic, self.flops_policy = nets.update_flops(actor_net, critic, a.batch_size)
        self.facts = {
            "task": cfg.task, "backend": getattr(env, "backend", cfg.backend or "native"), "algo": a.name,
            "seed": cfg.seed, "num_envs": env.num_envs, "utd": a.critic_updates_per_step / env.num_envs,
            "batch_size": a.batch_size, "critic_lr": a.critic_lr, "actor_lr": a.actor_lr,
            "critic_params": nets.count_params(critic), "actor_params": nets.count_params(actor_net),
            "flops_per_critic_update": self.flops_critic, "flops_per_policy_update": self.flops_policy,
            "flops_convention": "matmuls 2*m*n*k (backward exact per layer) + bias adds forward (pql_scaling/nets.py)",
            **nets.facts(cfg, actor_net, critic),
            "r_max": cfg.r_max, "obs_dim": env.obs_dim, "act_dim": env.act_dim, "mode": cfg.mode,
            "device": cfg.device, "defaults": tasks.display_path(config_lib.defaults_for([], cfg)),
        }
        self.counters = {"wall_time_s": 0.0}
        # start-up (imports, env, run directory, the trio's learner processes) is timed from `started` (the
        # CLI's entry) and reported apart as startup_s; the training clock (wall_time_s, max_time_s) starts
        # at the first actor step, so a budget is training time whatever the machine's load does to start-up
        self.process_start = time.monotonic() if started is None else started
        self.start = None  # set by started()
        self.first_step = None
        self.startup_s = None
        if resumed_state is not None:
            self.load_state_dict(resumed_state)
        self.time_offset = self.counters["wall_time_s"]
        self.paused = 0.0  # seconds spent evaluating since start: not training time
        self.evaluator = None
        if cfg.eval.every_steps:
            from pql_scaling.runtime.evaluate import Evaluator

            self.evaluator = Evaluator(cfg, actor_device, self.env_steps)
        self.last = {"t": self.process_start, "env_steps": self.env_steps, "critic": self.v_learner.updates,
                     "policy": self.p_learner.updates}
        self.last_ckpt = self.process_start
        self.stop_reason = None
        self.logged = False
        self.wandb = None
        self.display = None
        self.writer = BackgroundWriter()
        self.before_checkpoint = None  # a runtime's hook: bring the state of roles in other processes here
        self.extra_metrics = None  # a runtime's hook: () -> dict of its own per-log-point metrics

    @property
    def env_steps(self):
        return self.actor.steps * self.env.num_envs

    def wall_time(self, now=None):
        if self.start is None:  # training has not started yet
            return self.time_offset
        return self.time_offset + ((now or time.monotonic()) - self.start) - self.paused

    def started(self):
        """The runtime calls this once its roles are ready, just before the first actor step: the training
        clock starts here."""
        now = time.monotonic()
        self.startup_s = round(now - self.process_start, 3)
        self.start = self.last["t"] = self.last_ckpt = now
        self.first_step = self.actor.steps
        if not self.cfg.resume:
            self.run.update_facts(startup_s=self.startup_s)
        log.info("start-up took %.2f s (config, env, run directory%s)", self.startup_s,
                 ", learner processes" if self.cfg.mode == "trio" else "")

    def should_stop(self):
        if self.stop_reason is not None:
            return True
        if self.cfg.max_env_steps is not None and self.env_steps >= self.cfg.max_env_steps:
            self.stop_reason = "max_env_steps"
        elif self.cfg.max_time_s and self.actor.steps > self.first_step and self.wall_time() >= self.cfg.max_time_s:
            # (checked after an actor step: even a budget shorter than one step trains and logs that step)
            self.stop_reason = "max_time_s"
        return self.stop_reason is not None

    def log_point(self, now):
        """Sync with the device, check the losses, write one metrics row, maybe checkpoint."""
        mean, std, episodes, length = self.actor.pop_stats()
        v_stats, p_stats = self.v_learner.pop_stats(), self.p_learner.pop_stats()
        for key, value in list(v_stats.items()) + list(p_stats.items()):
            if not math.isfinite(value):
                raise Diverged(
                    "%s became %s at env step %d: training diverged. Lower algo.critic_lr / algo.actor_lr, "
                    "lower algo.reward_scale, or keep algo.grad_clip > 0; the last good checkpoint is %s; "
                    "continue from it with resume=%s" % (key, value, self.env_steps, self.run.checkpoint_path, self.run.path))
        dt = max(now - self.last["t"], 1e-9)
        cu, pu = self.v_learner.updates, self.p_learner.updates
        row = {
            "env_steps": self.env_steps, "actor_steps": self.actor.steps, "critic_updates": cu, "policy_updates": pu,
            "utd": cu / max(self.env_steps, 1), "flops": cu * self.flops_critic + pu * self.flops_policy,
            "wall_time_s": round(self.wall_time(now), 4), "return_mean": mean, "return_std": std, "episodes": episodes,
            "episode_length": length, "env_steps_per_s": (self.env_steps - self.last["env_steps"]) / dt,
            "critic_updates_per_s": (cu - self.last["critic"]) / dt, "policy_updates_per_s": (pu - self.last["policy"]) / dt,
        }
        if not self.logged and self.startup_s is not None:
            row["startup_s"] = self.startup_s  # the first row of each process says how much of wall_time_s was start-up
        self.logged = True
        row.update(v_stats)
        row.update(p_stats)
        if self.extra_metrics is not None:
            row.update(self.extra_metrics())
        if "checkpoint_time_s" in self.counters:
            row["checkpoint_time_s"] = round(self.counters["checkpoint_time_s"], 4)  # the actor's share: blocked
        self.last = {"t": now, "env_steps": self.env_steps, "critic": cu, "policy": pu}
        if self.evaluator is not None and self.evaluator.due(self.env_steps):
            ev = self.evaluator.run(self.p_learner.actor, self.norm, self.env_steps)
            self.paused += ev["eval_s"]  # evaluation is not training: out of wall_time_s and the rates
            self.last["t"] += ev["eval_s"]
            now += ev["eval_s"]
            self.counters["eval_time_s"] = self.counters.get("eval_time_s", 0.0) + ev.pop("eval_s")
            row.update(ev, eval_time_s=round(self.counters["eval_time_s"], 4))
        if self.cfg.target_return is not None and mean is not None and mean >= self.cfg.target_return:
            self.stop_reason = "target_return"
        self.run.append_metrics(row)
        if self.wandb is not None:
            self.wandb.log(row)
        if self.display is not None:
            self.display.update(row)
        if now - self.last_ckpt >= self.cfg.log.checkpoint_every_s:
            # a GPU replay (gigabytes) is copied off the device at once and written on a thread, not by the actor
            self.checkpoint(now, background=self.replay.device.type == "cuda")
        return row

    def checkpoint(self, now=None, background=False):
        """Save the state; `background`: copy it to host memory now and write the files on a thread (the next
        checkpoint, and the end of the run, wait for that write first). The time the caller is blocked goes to
        the metrics as checkpoint_time_s (cumulative)."""
        t0 = time.perf_counter()
        self.writer.wait()  # the last background write first: segment, checkpoint, prune stay in that order
        if self.before_checkpoint is not None:
            self.before_checkpoint()
        self.counters["wall_time_s"] = self.wall_time(now)
        store = self.replay_store
        prev_rows = store.saved if store is not None else 0
        segment = store.take(self.replay) if store is not None else None  # the rows new since the last checkpoint
        state, position = self.state_dict(), self.run.position()
        if background:
            state = to_host(state)

        def write():
            if store is not None:
                store.write(segment)  # before the checkpoint that names its rows
            self.run.save_checkpoint(state, position)
            if store is not None:
                store.prune(prev_rows)  # prev.pt is now the checkpoint at prev_rows

        if background:
            self.writer.submit(write)
        else:
            write()
        self.counters["checkpoint_time_s"] = self.counters.get("checkpoint_time_s", 0.0) + time.perf_counter() - t0
        self.last_ckpt = now or time.monotonic()

    def state_dict(self):
        state = {
            "v_learner": self.v_learner.state_dict(), "p_learner": self.p_learner.state_dict(),
            "norm": self.norm.state_dict(), "actor": self.actor.state_dict(), "counters": dict(self.counters),
            "rng": {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
            "replay_rows": self.replay.rows, "replay_saved": self.replay_store is not None,
        }
        if hasattr(self.env, "state_dict"):
            state["env"] = self.env.state_dict()
        return state

    def load_state_dict(self, s):
        self.v_learner.load_state_dict(s["v_learner"])
        self.p_learner.load_state_dict(s["p_learner"])
        self.norm.load_state_dict(s["norm"])
        # The actor's saved observation and episode counters are only true of the simulator state they were
        # saved with: restore both, or (a simulator that cannot save its state, e.g. Isaac Gym) neither.
        env_restored = "env" in s and hasattr(self.env, "load_state_dict")
        if env_restored:
            self.env.load_state_dict(s["env"])
        else:
            log.warning("backend %s cannot restore its simulator state: the resumed run starts new episodes (the "
                        "unfinished ones at the checkpoint are dropped from the statistics)",
                        getattr(self.env, "backend", self.cfg.backend or "native"))
        self.actor.load_state_dict(s["actor"], episodes=env_restored)
        self.counters = dict(s["counters"])
        torch.set_rng_state(s["rng"]["torch"])
        if s["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(s["rng"]["cuda"])
        if "replay" in s:  # format 1: the whole replay inside the checkpoint
            self.replay.load_state_dict(s["replay"])
        elif s.get("replay_saved") and self.replay_store is not None:
            self.replay_store.load(self.replay, s["replay_rows"])
        else:
            log.info("checkpoint holds no replay (save_replay=false): the replay refills before learning resumes")


class BackgroundWriter:
    """One write job at a time on a thread; wait() joins it and re-raises what it raised (DiskFull names the path)."""

    def __init__(self):
        self.thread, self.error = None, None

    def submit(self, job):
        self.wait()

        def run():
            try:
                job()
            except BaseException as e:  # noqa: BLE001 - handed to the main thread by wait()
                self.error = e

        self.thread = threading.Thread(target=run, name="checkpoint-writer", daemon=True)
        self.thread.start()

    def wait(self):
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error


def resolve(overrides):
    """(cfg, run directory path, checkpoint-or-None) from command-line overrides."""
    pairs = dict(config_lib.parse_overrides(overrides))
    resume = pairs.get("resume")
    if resume:
        import yaml

        path = os.path.join(resume, "config.yaml")
        if not os.path.exists(path):
            raise config_lib.ConfigError("resume=%s: no config.yaml there; pass the run directory printed by "
                                         "`pql-scale train`" % resume)
        with open(path) as f:
            base = yaml.safe_load(f)
        base["resume"] = None
        cfg = config_lib.load(overrides, base=base)
        return cfg, resume
    cfg = config_lib.load(overrides)
    from pql_scaling.rundir.rundir import default_run_dir

    return cfg, cfg.run_dir or default_run_dir(cfg)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def train(overrides=(), quiet=False, started=None):
    """Run training; return the run directory. Raises after recording failures in the run directory.

    `started` (time.monotonic()) is when start-up began: the CLI passes its own entry time, so startup_s
    covers the imports too; default: now. max_time_s and wall_time_s count training time, from the
    first actor step."""
    started = time.monotonic() if started is None else started
    cfg, run_path = resolve(list(overrides))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    resuming = bool(cfg.resume)
    if not resuming and os.path.exists(os.path.join(run_path, "metrics.jsonl")):
        raise config_lib.ConfigError("run_dir=%s already holds a run; pick another run_dir, or continue it with "
                                     "resume=%s" % (run_path, run_path))
    resources.check_devices(cfg)
    torch.manual_seed(cfg.seed)
    env = envs.make(cfg.task, cfg.num_envs, device=cfg.actor_device or cfg.device, seed=cfg.seed, backend=cfg.backend)
    try:
        resources.check_memory(cfg, env.obs_dim, env.act_dim, env.num_envs)
    except config_lib.ConfigError:
        if hasattr(env, "close"):
            env.close()
        raise
    run = RunDir(run_path)
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
            s.checkpoint()  # a run can always be resumed, even if it dies before its first periodic checkpoint
        run.set_status("running", pid=os.getpid())
        log.info("run %s: %s on %s, %d envs, utd %.5f, critic %d params, defaults %s", run.path, cfg.algo.name,
                 cfg.task, env.num_envs, s.facts["utd"], s.facts["critic_params"], s.facts["defaults"])
        if not quiet and not resuming:
            print("%s on %s: defaults from %s (overrides on top)" % (cfg.task, cfg.device, s.facts["defaults"]), flush=True)
    except Exception:
        run.close()
        if hasattr(env, "close"):
            env.close()
        raise
    s.wandb = WandbMirror(cfg, run.path, run_id, rewind_to=rewind_to, rows_written=lambda: run.metrics_rows)
    s.display = Display("off" if quiet else cfg.log.live, cfg.max_env_steps, cfg.task)
    old_handlers = {sig: signal.signal(sig, _raise_interrupt) for sig in GRACEFUL_SIGNALS}
    status, reason, exit_code = "failed", None, 1
    try:
        runtime = __import__("pql_scaling.runtime." + cfg.mode, fromlist=["run"])
        runtime.run(s)
        progressed = (s.env_steps, s.v_learner.updates, s.p_learner.updates) != (
            s.last["env_steps"], s.last["critic"], s.last["policy"])
        if progressed:  # trio learners may still have paid owed updates after the actor's last log point
            s.log_point(time.monotonic())
        s.checkpoint()
        status, reason, exit_code = "completed", s.stop_reason, 0
    except KeyboardInterrupt as e:
        log.warning("interrupted (%s): writing a final checkpoint", e or "Ctrl-C")
        reason = "interrupted (%s); continue with resume=%s" % (e or "Ctrl-C", run.path)
        s.checkpoint()
        status = "stopped"
    except (Diverged, DiskFull) as e:
        reason = str(e)
        log.error(reason)
        raise
    except Exception as e:
        reason = "%s: %s (traceback in %s)" % (type(e).__name__, e, os.path.join(run.path, "train.log"))
        log.error("training failed:\n%s", traceback.format_exc())
        raise
    finally:
        try:
            s.writer.wait()  # a background checkpoint still being written lands before the status says so
        except Exception as e:  # noqa: BLE001 - the failure is logged; the status below still gets written
            log.error("the last background checkpoint failed: %s", e)
        try:
            run.set_status(status, reason, env_steps=s.env_steps)
        except DiskFull as e:  # the disk is full: say so where it can still be said
            log.error("could not write status.json (%s): %s; %s", status, reason, e)
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        s.display.close()
        s.wandb.finish(exit_code)
        if hasattr(env, "close"):
            env.close()
        if s.evaluator is not None:
            s.evaluator.close()
        run.close()
    return run.path
