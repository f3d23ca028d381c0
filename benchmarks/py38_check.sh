#!/usr/bin/env bash
# The training path on a real Python 3.8 (not in CI: the CUDA torch wheel for 3.8 and its NVIDIA libraries are
# ~3 GB; CI checks 3.8 statically with vermin, tests/test_py38_compat.py). Isaac Gym only exists for Python <= 3.8,
# so the trainer must import and run there: this imports every module of pql_scaling, pql_scaling.envs and
# pql_scaling.tasks on Python 3.8 with torch 2.4.1 (the last torch for 3.8) and trains native Pendulum in sync
# mode, trio mode and as a trio population of 2, then writes benchmarks/results/py38_check.json.
#   bash benchmarks/py38_check.sh [PYTHON3.8]   (default: pyenv's 3.8, else python3.8 on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
PY38=${1:-$(ls /root/.pyenv/versions/3.8*/bin/python 2>/dev/null | head -1 || true)}
PY38=${PY38:-$(command -v python3.8)}
VENV=${PY38_VENV:-/tmp/pql-py38}
[ -x "$VENV/bin/python" ] || "$PY38" -m venv "$VENV"
"$VENV/bin/pip" install -q "torch==2.4.1" numpy pyyaml omegaconf rich 2>&1 | grep -v "^WARNING: Location" || true
OUT=$(mktemp -d)
PYTHONPATH=$PWD "$VENV/bin/python" - "$OUT" <<'PY'
import importlib, json, os, pkgutil, subprocess, sys, time
out = sys.argv[1]
import torch
mods, bad = [], {}
for base in ("pql_scaling", "pql_scaling.envs", "pql_scaling.tasks"):
    for m in pkgutil.walk_packages(importlib.import_module(base).__path__, base + "."):
        try:
            importlib.import_module(m.name)
            mods.append(m.name)
        except Exception as e:  # an optional simulator that is not installed names itself and its install
            bad[m.name] = "%s: %s" % (type(e).__name__, str(e)[:160])
runs = {}
for name, args in {
    "sync": ["mode=sync"],
    "trio": ["mode=trio"],
    "trio_population_2": ["mode=trio", "population.size=2"],
}.items():
    d = os.path.join(out, name)
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "pql_scaling.cli", "train", "task=pendulum", "max_env_steps=3200",
                        "log.live=off", "run_dir=" + d] + args, capture_output=True, text=True)
    dirs = [d] if "population.size=2" not in args else [os.path.join(d, x) for x in ("m00-s0", "m01-s1")]
    status = [json.load(open(os.path.join(x, "status.json")))["status"] for x in dirs if os.path.exists(x)]
    runs[name] = {"rc": r.returncode, "status": status, "wall_s": round(time.time() - t0, 1)}
result = {"python": sys.version.split()[0], "torch": torch.__version__, "modules_imported": len(mods),
          "not_imported": bad, "runs": runs, "date": time.strftime("%Y-%m-%d"),
          "ok": all(v["rc"] == 0 and v["status"] and set(v["status"]) == {"completed"} for v in runs.values())}
print(json.dumps(result, indent=1))
json.dump(result, open("benchmarks/results/py38_check.json", "w"), indent=1)
sys.exit(0 if result["ok"] else 1)
PY
