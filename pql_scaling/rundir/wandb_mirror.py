"""W&B mirroring of the metrics rows: never stops training, rewinds with a resume."""

import json
import os
import threading
import time

from pql_scaling import config as config_lib
from pql_scaling.rundir.disk import log

# a population's members start their W&B runs from one background thread each: one wandb.init at a time, as
# W&B's process-wide setup (its service, the first run) is not meant to be entered concurrently
_INIT_LOCK = threading.Lock()


class WandbMirror:
    """Mirrors metrics to W&B. Any W&B failure is logged once and never stops training.

    wandb.init runs in a background thread: an unreachable server makes it wait up to `init_timeout_s`
    (W&B's own retries), and that wait must cost neither training speed nor the run's clock. Rows logged
    before it is up are buffered and sent once it is; if it fails or times out, W&B is off for the run.
    A resume that superseded log points rewinds the W&B run to the last kept step (W&B's `resume_from`,
    which archives the history after it) so W&B shows the same single timeline as metrics.jsonl."""

    def __init__(
        self, cfg, run_dir, run_id, rewind_to=None, rows_written=None, extra_config=None, reinit=True
    ):
        """extra_config: more run config (a population member's population id); reinit: wandb.init's (a
        population's members are concurrent W&B runs in one process: "create_new")."""
        self.run, self.off, self.pending, self.error = None, True, [], None
        self.last_step = None
        self.where = None  # the W&B run's address once finished (the end-of-run summary names it)
        w = cfg.wandb
        if w.mode == "disabled":
            return
        self.off = False
        self.t0, self.init_timeout_s = time.monotonic(), w.init_timeout_s
        self.rows_written = rows_written or (lambda: 0)
        self.done = threading.Event()
        kwargs = dict(
            project=w.project,
            entity=w.entity,
            group=w.group,
            tags=list(w.tags),
            name=w.name,
            mode=w.mode,
            dir=run_dir,
            config=dict(config_lib.to_dict(cfg), **(extra_config or {})),
            reinit=reinit,
        )
        if rewind_to is not None:
            kwargs["resume_from"] = "%s?_step=%d" % (run_id, rewind_to + 1)  # keeps the row at rewind_to
        else:
            kwargs.update(id=run_id, resume="allow")
        self.thread = threading.Thread(target=self._init, args=(kwargs,), name="wandb-init", daemon=True)
        self.thread.start()

    def _init(self, kwargs):
        try:
            import wandb

            kwargs["settings"] = wandb.Settings(init_timeout=self.init_timeout_s)
            try:
                with _INIT_LOCK:
                    self._run = wandb.init(**kwargs)
            except Exception as e:  # noqa: BLE001
                if "resume_from" not in kwargs:
                    raise
                log.warning(
                    "W&B rewind (resume_from=%s) failed (%s: %s); resuming the W&B run without a rewind: "
                    "W&B drops the steps it already has",
                    kwargs["resume_from"],
                    type(e).__name__,
                    e,
                )
                run_id = kwargs.pop("resume_from").split("?")[0]
                # fresh settings: the failed init left resume_from on them, which excludes resume
                kwargs["settings"] = wandb.Settings(init_timeout=self.init_timeout_s)
                with _INIT_LOCK:
                    self._run = wandb.init(id=run_id, resume="allow", **kwargs)
            # run.json's facts (critic_params, utd, flops per update, ...) too: analysis of a W&B project
            # reads model size and configured UTD from the run config, as from run.json locally
            facts_path = os.path.join(kwargs["dir"], "run.json")
            if os.path.exists(facts_path):
                with open(facts_path) as f:
                    facts = json.load(f)
                given = kwargs["config"]  # run.json's "algo" is the name; the config's, the whole section
                self._run.config.update(
                    {k: v for k, v in facts.items() if k not in given}, allow_val_change=True
                )
        except Exception as e:  # noqa: BLE001 - W&B must never stop training
            self.error = e
            log.warning(
                "W&B init failed after %.1f s (%s: %s; %d log points written meanwhile); W&B is off for this "
                "run, training continues and metrics stay in metrics.jsonl",
                time.monotonic() - self.t0,
                type(e).__name__,
                str(e).strip()[:300],
                self.rows_written(),
            )
        self.done.set()

    def _fail(self, what, e):
        log.warning(
            "W&B %s failed (%s: %s); W&B is off for this run, training continues and metrics stay in "
            "metrics.jsonl",
            what,
            type(e).__name__,
            e,
        )
        self.run, self.off, self.pending = None, True, []

    def _up(self, wait=0.0):
        """Is the W&B run up? Never blocks longer than `wait`; gives up after init_timeout_s."""
        if self.run is not None or self.off:
            return self.run is not None
        if not self.done.wait(wait):
            if time.monotonic() - self.t0 > self.init_timeout_s + 30:  # wandb's own timeout did not fire
                self._fail("init", TimeoutError("no answer in %.0f s" % (self.init_timeout_s + 30)))
            return False
        if self.error is not None:
            self.off, self.pending = True, []
            return False
        self.run = self._run
        rows, self.pending = self.pending, []
        for row in rows:
            self._send(row)
        return self.run is not None

    def _send(self, row):
        try:
            self.run.log({k: v for k, v in row.items() if v is not None}, step=int(row["env_steps"]))
            self.last_step = int(row["env_steps"])
        except Exception as e:  # noqa: BLE001
            self._fail("log", e)

    def log(self, row):
        if self.off:
            return
        if self._up():
            self._send(row)
        elif not self.off:
            self.pending.append(row)

    def finish(self, exit_code=0):
        """Send what is buffered (a short run may end before W&B is up: wait for its init, which gives up on its
        own after init_timeout_s, plus importing wandb and starting its service) and close the W&B run."""
        if self.off and self.run is None:
            return
        self._up(wait=max(0.0, self.init_timeout_s + 30 - (time.monotonic() - self.t0)))
        if self.run is None:
            if not self.off:
                self._fail("init", TimeoutError("not up when the run ended"))
            return
        self.where = where(self.run)
        try:
            self.run.finish(exit_code=exit_code)
        except Exception as e:  # noqa: BLE001
            self._fail("finish", e)


def where(run):
    """The W&B run's URL (online), or its offline folder and the command that uploads it."""
    try:
        if getattr(run, "url", None):
            return run.url
        d = run.settings.sync_dir
        return "offline, in %s (upload: wandb sync %s)" % (d, d)
    except Exception:  # noqa: BLE001 - a summary line is not worth a failure
        return None
