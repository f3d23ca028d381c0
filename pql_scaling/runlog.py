"""The run directory (the contract with analysis), W&B mirroring and the live display.

    config.yaml    fully resolved config
    run.json       derived facts: configured UTD, parameter and FLOP counts, versions
    metrics.jsonl  one JSON object per log point (appended; the local source of truth)
    status.json    running / completed / stopped / failed, with the reason
    train.log      human-readable log, tracebacks included
    checkpoints/   last.pt, written atomically (a crash mid-write leaves the previous one)
"""
import json
import logging
import os
import platform
import socket
import sys
import time

import torch

from pql_scaling import config as config_lib

log = logging.getLogger("pql_scaling")


def default_run_dir(cfg):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", "%s-%s-s%d-%s" % (cfg.task, cfg.algo.name, cfg.seed, stamp))


def write_json_atomic(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunDir:
    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.ckpt_dir = os.path.join(self.path, "checkpoints")
        os.makedirs(self.ckpt_dir, exist_ok=True)
        self.metrics_path = os.path.join(self.path, "metrics.jsonl")
        self._setup_file_log()

    def _setup_file_log(self):
        handler = logging.FileHandler(os.path.join(self.path, "train.log"))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(processName)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        self._handler = handler

    def write_config(self, cfg, facts):
        with open(os.path.join(self.path, "config.yaml"), "w") as f:
            f.write(config_lib.to_yaml(cfg))
        facts = dict(facts, python=platform.python_version(), torch=torch.__version__, host=socket.gethostname())
        write_json_atomic(os.path.join(self.path, "run.json"), facts)

    def set_status(self, status, reason=None, **extra):
        write_json_atomic(os.path.join(self.path, "status.json"),
                          dict(status=status, reason=reason, time=time.strftime("%Y-%m-%dT%H:%M:%S"), **extra))

    def append_metrics(self, row):
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")

    @property
    def checkpoint_path(self):
        return os.path.join(self.ckpt_dir, "last.pt")

    def save_checkpoint(self, state):
        tmp = self.checkpoint_path + ".tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_path)

    def load_checkpoint(self, map_location):
        if not os.path.exists(self.checkpoint_path):
            raise FileNotFoundError("no checkpoint at %s: the run ended before its first checkpoint, so it cannot "
                                    "be resumed; start a new run instead" % self.checkpoint_path)
        return torch.load(self.checkpoint_path, map_location=map_location, weights_only=False)

    def close(self):
        log.removeHandler(self._handler)
        self._handler.close()


class WandbMirror:
    """Mirrors metrics to W&B. Any W&B failure is logged once and never stops training."""

    def __init__(self, cfg, run_dir, run_id):
        self.run = None
        w = cfg.wandb
        if w.mode == "disabled":
            return
        try:
            import wandb

            self.run = wandb.init(project=w.project, entity=w.entity, group=w.group, tags=list(w.tags), name=w.name,
                                  mode=w.mode, dir=run_dir, id=run_id, resume="allow",
                                  config=config_lib.to_dict(cfg), reinit=True)
            # run.json's facts (critic_params, utd, flops per update, ...) too: analysis of a W&B project
            # reads model size and configured UTD from the run config, as from run.json locally
            facts_path = os.path.join(run_dir, "run.json")
            if os.path.exists(facts_path):
                with open(facts_path) as f:
                    facts = json.load(f)
                given = config_lib.to_dict(cfg)  # run.json's "algo" is the name; the config's, the whole section
                self.run.config.update({k: v for k, v in facts.items() if k not in given}, allow_val_change=True)
        except Exception as e:  # noqa: BLE001 - W&B must never stop training
            self._fail("init", e)

    def _fail(self, what, e):
        log.warning("W&B %s failed (%s: %s); training continues, metrics stay in metrics.jsonl", what, type(e).__name__, e)
        self.run = None

    def log(self, row):
        if self.run is None:
            return
        try:
            self.run.log({k: v for k, v in row.items() if v is not None}, step=int(row["env_steps"]))
        except Exception as e:  # noqa: BLE001
            self._fail("log", e)

    def finish(self, exit_code=0):
        if self.run is None:
            return
        try:
            self.run.finish(exit_code=exit_code)
        except Exception as e:  # noqa: BLE001
            self._fail("finish", e)


class Display:
    """A rich progress bar on a terminal; plain log lines otherwise (or when asked)."""

    def __init__(self, mode, total_steps, title):
        """total_steps None (no step cap) shows an indeterminate bar."""
        if mode == "auto":
            mode = "rich" if sys.stdout.isatty() else "plain"
        self.mode = mode
        self.progress = None
        if mode == "rich":
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                     TextColumn("{task.completed:>12,.0f} env steps"),
                                     TextColumn("return {task.fields[ret]}"), TextColumn("{task.fields[speed]}"),
                                     TimeElapsedColumn(), TimeRemainingColumn())
            self.progress.start()
            self.bar = self.progress.add_task(title, total=total_steps, ret="-", speed="")

    def update(self, row):
        ret = "-" if row["return_mean"] is None else "%.1f" % row["return_mean"]
        speed = "%.0f steps/s  %.0f upd/s  utd %.4f" % (row["env_steps_per_s"], row["critic_updates_per_s"], row["utd"])
        if self.progress is not None:
            self.progress.update(self.bar, completed=row["env_steps"], ret=ret, speed=speed)
        elif self.mode == "plain":
            print("steps %d  return %s  %s  t=%.1fs" % (row["env_steps"], ret, speed, row["wall_time_s"]), flush=True)

    def close(self):
        if self.progress is not None:
            self.progress.stop()
