"""`pql-scale`: train | analyze | recommend | keys."""
import logging
import sys
import time

STARTED = time.monotonic()  # the process's start, near enough (torch is not imported yet): startup_s counts from here

USAGE = """usage: pql-scale COMMAND [ARGS]

  train [key=value ...]        train (e.g. pql-scale train task=pendulum num_envs=256 algo=sac)
  keys                         list every config key with its default
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
max_time_s and wall_time_s count training time, from the first actor step; start-up (imports, env, the trio's
learner processes) is reported apart as startup_s in run.json and the first metrics row.
`pql-scale keys` lists every key."""


def _rel(path):
    import tasks

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
    from pql_scaling.runlog import DiskFull
    from pql_scaling.train import Diverged, train

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
        path = train(argv, started=STARTED)
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
    print("run directory: %s" % path)
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    # Isaac Gym refuses to load after torch: import it first when asked for (a no-op otherwise).
    from envs.isaacgym_preimport import maybe_preimport_isaacgym

    try:
        maybe_preimport_isaacgym(argv)
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
    if cmd in ("analyze", "recommend"):
        from analysis import cli as analysis_cli

        return getattr(analysis_cli, cmd + "_main")(rest)
    print("unknown command %r\n%s" % (cmd, USAGE), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
