"""`pql-scale`: train | sweep | analyze | recommend | keys."""

import logging
import os
import sys
import time

STARTED = (
    time.monotonic()
)  # the process's start, near enough (torch is not imported yet): startup_s counts from here

USAGE = """usage: pql-scale COMMAND [ARGS]

  train [key=value ...]        train (e.g. pql-scale train task=pendulum num_envs=256 algo=sac)
  keys                         list every config key with its default
  runs [DIR]                   a table of the run directories under DIR (default runs/)
  sweep SPEC [--launcher local|ray|slurm] [--dry-run] [--retry N] [key=value ...]
                               run a grid of training runs (resumable); key=value overrides the spec
  sweep status SPEC            a table of the sweep's runs and their states
  study SPEC [key=value ...]   grid -> rules -> fitted -> laws -> prediction -> validation -> grade (resumable)
  analyze --config FILE ...    fit scaling laws to run directories / W&B / qscaled data
  recommend --fits FILE --budget F [--task T]
                               compute-optimal UTD, batch size and learning rate for a budget
"""


DEFAULTS_HELP = """
per-task defaults (schema < the task's YAML < your key=value overrides; run.json's "defaults" names the file):
  native tasks, device=cpu (the default)   tasks/<task>.yaml       tuned for a 2-core CPU (tens of envs, small nets)
  native tasks, device=cuda                tasks/gpu/<task>.yaml   PQL's scale (4096 envs, batch 8192)
  MJCF tasks, backend=mujoco (CPU)         tasks/<Task>.yaml
  backend=mjwarp / backend=isaacgym        tasks/mjwarp/<Task>.yaml, tasks/isaacgym/<Task>.yaml
  backend=isaaclab (Isaac-* ids)           tasks/isaaclab/<id>.yaml
  backend=gymnasium (any registered id)    tasks/gymnasium/<id>.yaml, else tasks/gymnasium/_generic.yaml
max_time_s and wall_time_s count training time, from the first actor step; start-up (imports, env, the trio's
learner processes) is reported apart as startup_s in run.json and the first metrics row.
`pql-scale keys` lists every key."""


def _rel(path):
    from pql_scaling import tasks

    return tasks.display_path(path)


def _keys():
    from omegaconf import OmegaConf

    from pql_scaling import config

    cfg = OmegaConf.structured(config.Config)
    for key in config.all_keys():
        print("%-40s %r" % (key, OmegaConf.select(cfg, key)))
    return 0


def _train(argv):
    from pql_scaling import config
    from pql_scaling.rundir.disk import DiskFull
    from pql_scaling.runtime.train import Diverged, train

    if any(a in ("-h", "--help") for a in argv):
        print(USAGE + DEFAULTS_HELP)
        rest = [a for a in argv if a not in ("-h", "--help")]
        try:
            path = config.defaults_for(config.parse_overrides(rest))
            print("\nwith %s this run reads: %s" % (" ".join(rest) or "no overrides", path and _rel(path)))
        except config.ConfigError:
            pass
        return 0
    if "--help-keys" in argv:
        return _keys()
    try:
        train(argv, started=STARTED)
    except config.ConfigError as e:
        print("config error: %s" % e, file=sys.stderr)
        return 2
    except Diverged as e:
        print("training diverged: %s" % e, file=sys.stderr)
        return 1
    except DiskFull as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    except (ValueError, ImportError, FileNotFoundError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    return 0  # the end-of-run summary named the run directory


def _runs(argv):
    from pql_scaling.rundir import summary

    if len(argv) > 1 or any(a.startswith("-") for a in argv):
        print("usage: pql-scale runs [DIR]   (default runs/)", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    root = argv[0] if argv else "runs"
    if not os.path.isdir(root):
        print(
            "runs: %s is not a directory; pass the folder your runs are in (run_dir=... or a sweep's out)"
            % root,
            file=sys.stderr,
        )
        return 2
    rows = summary.runs_table(root)
    if not rows:
        print("no run directories under %s" % root)
        return 0
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        t = Table(title="%d runs under %s" % (len(rows), root))
        for col in summary.RUNS_COLUMNS:
            t.add_column(
                col, justify="right" if col in ("env steps", "best return", "train time") else "left"
            )
        for r in rows:
            t.add_row(*r)
        Console().print(t)
    else:
        print(summary.plain_table(summary.RUNS_COLUMNS, rows))
    return 0


def _sweep(argv):
    import argparse

    from pql_scaling import config
    from pql_scaling.experiments import sweep

    p = argparse.ArgumentParser(
        prog="pql-scale sweep", description="run every run of a sweep spec (idempotent)"
    )
    p.add_argument("spec", help="sweep spec YAML (or `status SPEC`)")
    p.add_argument(
        "rest", nargs="*", help="spec overrides key=value (e.g. seeds=3 launcher.local.runs_per_device=2)"
    )
    p.add_argument("--launcher", choices=sweep.LAUNCHERS, help="override launcher.kind")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their commands; run nothing")
    p.add_argument(
        "--retry", type=int, help="resumes of a failed run in this launch (default: the spec's retry)"
    )
    p.add_argument("--live", choices=("auto", "rich", "plain", "off"), default="auto")
    a = p.parse_intermixed_args(argv)
    show_status = a.spec == "status"
    if show_status:
        if not a.rest:
            p.error("sweep status needs a SPEC")
        a.spec, a.rest = a.rest[0], a.rest[1:]
    try:
        spec = sweep.load_spec(a.spec, a.rest)
        if show_status:
            rows = sweep.status(spec)
        else:
            rows = sweep.launch(spec, a.launcher, a.retry, a.dry_run, live=a.live)
    except config.ConfigError as e:
        print("sweep error: %s" % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "sweep interrupted: the runs stopped with checkpoints; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    if a.dry_run:
        for r in rows:
            print("%-9s %s\n    pql-scale train %s" % (r["state"], r["name"], " ".join(r["overrides"])))
    if show_status or a.dry_run or not sys.stdout.isatty():
        if sys.stdout.isatty():
            from rich.console import Console

            Console().print(sweep.status_table(rows, spec.name))
        else:
            for r in rows:
                print(
                    "%-9s %-40s env_steps %-10s return %-8s wall_s %s"
                    % (
                        r["state"],
                        r["name"],
                        r["env_steps"],
                        "-" if r["return_mean"] is None else "%.1f" % r["return_mean"],
                        "-" if r["wall_time_s"] is None else "%.0f" % r["wall_time_s"],
                    )
                )
        print("totals: " + "  ".join("%s %d" % kv for kv in sweep.totals(rows).items()))
    print("manifest: %s" % os.path.join(spec.out, "manifest.json"))
    bad = [r for r in rows if r["state"] in ("failed", "stopped")]
    return 1 if bad and not (show_status or a.dry_run) else 0


def _study(argv):
    from pql_scaling import config
    from pql_scaling.experiments import study

    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: pql-scale study SPEC [key=value ...]   (see studies/*.yaml and pql_scaling/experiments/study/)"
        )
        return 0 if argv else 2
    try:
        spec = study.load_spec(argv[0], argv[1:])
        g = study.run(spec)
    except config.ConfigError as e:
        print("study error: %s" % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("study interrupted: rerun the same command to continue", file=sys.stderr)
        return 130
    except ValueError as e:  # analysis input errors name their cause and fix
        print("study error: %s" % e, file=sys.stderr)
        return 2
    s = g["summary"]
    print(
        "study %s graded: top thresholds %s, median |error| %s, %d/%d inside the interval"
        % (
            spec.name,
            s["top_thresholds"],
            "n/a" if s["median_abs_rel_error"] is None else "%.1f%%" % (100 * s["median_abs_rel_error"]),
            s["inside_interval"],
            s["n_measured"],
        )
    )
    print("report: %s" % os.path.join(spec.out, "report.md"))
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    # Isaac Gym refuses to load after torch: import it first when asked for (a no-op otherwise).
    from pql_scaling.envs.isaacgym_preimport import maybe_preimport_isaacgym

    # Isaac Lab with Isaac Sim (physics=physx, or kit=true): its app launcher first, before torch (a no-op otherwise).
    from pql_scaling.envs.isaaclab_app import maybe_launch_isaaclab_app

    try:
        maybe_preimport_isaacgym(argv)
        maybe_launch_isaaclab_app(argv)
    except ImportError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "train":
        return _train(rest)
    if cmd == "keys":
        return _keys()
    if cmd == "runs":
        return _runs(rest)
    if cmd == "sweep":
        return _sweep(rest)
    if cmd == "study":
        return _study(rest)
    if cmd in ("analyze", "recommend"):
        from pql_scaling.analysis import cli as analysis_cli

        return getattr(analysis_cli, cmd + "_main")(rest)
    print("unknown command %r\n%s" % (cmd, USAGE), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
