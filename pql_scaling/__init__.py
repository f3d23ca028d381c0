"""pql-scaling: Parallel Q-Learning on massively parallel simulators, and the analysis that turns its logs into
compute-optimal scaling laws. One import namespace, in wings whose dependencies point one way:

    pql_scaling.core         the update math (losses), networks, replay: pure torch, no I/O
    pql_scaling.runtime      a run: session, actor, learners, sync and trio (three processes), evaluation
    pql_scaling.rundir       the run directory, the contract with analysis: files, writer, W&B mirror, console
    pql_scaling.experiments  sweeps (spec -> runs -> a launcher) and studies (sweeps -> analysis -> a prediction)
    pql_scaling.config, .cli the training config and the `pql-scale` command
    pql_scaling.envs         the batched env contract and one adapter per simulator   (folder envs/)
    pql_scaling.tasks        native torch tasks and per-task YAML defaults             (folder tasks/)
    pql_scaling.analysis     logs -> curves -> fits -> plots and report; no torch      (folder analysis/)

envs/, tasks/ and analysis/ sit beside this folder in the repository and inside it once installed; either way
they import only as `pql_scaling.<name>`, so a user's own `analysis/` or `tasks/` folder never shadows them.
This file stays light (no torch): `pql_scaling.analysis` is imported without the training stack.
"""

import importlib.abc
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_BESIDE = ("envs", "tasks", "analysis")


class _Beside(importlib.abc.MetaPathFinder):
    """Finds pql_scaling.envs / .tasks / .analysis in the folders beside this package (a source checkout). In a
    source checkout (setup.py beside the package) it is consulted first, so the wings come from the same tree as
    the package: with an editable install of one checkout, a second one (a git worktree, a clean clone on
    PYTHONPATH) would otherwise import its own pql_scaling with the first one's envs, tasks and analysis.
    Installed, it is consulted after the normal finders, so the copy inside the package wins over any folder
    that happens to sit beside it in site-packages."""

    def find_spec(self, fullname, path=None, target=None):
        prefix, _, name = fullname.partition(".")
        if prefix != __name__ or name not in _BESIDE:
            return None
        folder = os.path.join(os.path.dirname(_HERE), name)
        init = os.path.join(folder, "__init__.py")
        if not os.path.exists(init):
            return None
        return importlib.util.spec_from_file_location(fullname, init, submodule_search_locations=[folder])


if not any(isinstance(f, _Beside) for f in sys.meta_path):
    if os.path.exists(os.path.join(os.path.dirname(_HERE), "setup.py")):
        sys.meta_path.insert(0, _Beside())
    else:
        sys.meta_path.append(_Beside())
