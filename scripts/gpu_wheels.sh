#!/usr/bin/env bash
# Download, on a machine with the package index, the wheels the one-shot GPU check needs on a bare GPU image
# (Python 3.12, manylinux x86_64, its own CUDA torch and a scientific stack, no network) into .whl/ (git-ignored;
# the device tool carries it with the checkout: 64 MiB in all). benchmarks/gpu_check.sh installs them first.
#
#   bash scripts/gpu_wheels.sh [PYTHON_VERSION]      # default 3.12
#
# What the training path, the tests and the check import that such an image lacks: omegaconf (pure Python; 2.4
# vendors its antlr runtime), pytest-timeout, threadpoolctl. Not mujoco / mujoco-warp /
# warp-lang: warp's library alone is ~285 MB, over the limit (the check skips MuJoCo Warp when it cannot import).
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=${1:-3.12}
DEST=.whl
LIMIT_MB=${GPU_WHEELS_LIMIT_MB:-48}  # leave room in the 64 MiB for the checkout itself
mkdir -p "$DEST"
# --no-deps: the image has their dependencies (PyYAML, pytest); omegaconf 2.4 vendors its antlr runtime
python3 -m pip download -q --no-deps --dest "$DEST" --only-binary=:all: --python-version "$PYV" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any --implementation py \
    "omegaconf>=2.4" "pytest-timeout" "threadpoolctl>=3"
# pyyaml is on the image; never carry a second copy of what the image has
rm -f "$DEST"/PyYAML-*.whl "$DEST"/pyyaml-*.whl "$DEST"/pytest-[0-9]*.whl "$DEST"/pluggy-*.whl "$DEST"/iniconfig-*.whl \
      "$DEST"/packaging-*.whl
TOTAL_KB=$(du -sk "$DEST" | cut -f1)
ls -l "$DEST"
echo "gpu_wheels: $(ls "$DEST"/*.whl | wc -l) wheels, $((TOTAL_KB / 1024)) MiB in $DEST"
if [ "$TOTAL_KB" -gt $((LIMIT_MB * 1024)) ]; then
    echo "gpu_wheels: over the ${LIMIT_MB} MiB limit; drop something" >&2
    exit 1
fi
