#!/usr/bin/env bash
# The first-GPU check (issue 14): the `gpu`-marked tests, then every GPU benchmark, in under 10 minutes.
# Writes into benchmarks/results/: gpu_check_<device>.log (everything printed), gpu_check_tests_<device>.xml
# (pytest's report) and each benchmark's JSON, all named after the device. Each stage has its own time limit
# so a hang in one still leaves the others' results; the exit code is non-zero if any stage failed.
#
#   bash benchmarks/gpu_check.sh            # from anywhere; uses the python on PATH
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}
RES=benchmarks/results
mkdir -p "$RES"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: torch sees no CUDA device (torch.cuda.is_available() is False); nothing to check" >&2
    exit 2
fi
DEV=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '_'))")
LOG="$RES/gpu_check_$DEV.log"
: > "$LOG"
fail=0
stage() {  # stage NAME SECONDS CMD...: run with a time limit, tee into the log, remember failures
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
    local t0=$SECONDS
    timeout --signal=INT --kill-after=15 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $((SECONDS - t0))s" | tee -a "$LOG"
    [ "$rc" -eq 0 ] || fail=1
}
{ nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpus', torch.cuda.device_count())"
} 2>&1 | tee -a "$LOG"
# ~2-3 min: CUDA IPC stress, replay rows under wrapping writes, placement, compiled/graphed vs eager, mjwarp vs mujoco
stage tests 180 "$PY" -m pytest -q -m gpu tests/test_gpu.py --junitxml="$RES/gpu_check_tests_$DEV.xml"
# ~2 min: PQL's network and Pendulum's, every mode (eager, compiled, graphed, bf16 ...), FLOP/s vs torch.mm
stage learner_speed 140 "$PY" benchmarks/learner_speed.py --device cuda --tf32 --seconds 1 --rounds 2 \
    --out "$RES/learner_speed_$DEV.json"
# ~1.5 min: the trio's actor on mjwarp Ant x4096 against the simulator alone (target >= 90%)
stage trio_actor 100 "$PY" benchmarks/trio_actor_speed.py --seconds 60 --skip-s 25 \
    --out "$RES/trio_actor_speed_Ant_mjwarp_$DEV.json"
# ~2 min: critic updates/s over batch x width (eager and the graphed modes; compiles once per shape)
stage learner_sweep 130 "$PY" benchmarks/learner_speed.py --device cuda --tf32 --configs --sweep --seconds 0.5 \
    --roles critic --modes eager graphed graphed_bf16 --batches 1024 8192 32768 65536 --widths 256 1024 2048 \
    --out "$RES/learner_sweep_$DEV.json"
echo "gpu_check: done, results in $RES (exit $fail)" | tee -a "$LOG"
exit $fail
