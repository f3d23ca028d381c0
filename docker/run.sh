#!/usr/bin/env bash
# Run a command in one of the project's GPU images.
#
#   docker/run.sh modern   pql-scale train task=HalfCheetah backend=mjwarp
#   docker/run.sh isaacgym pql-scale train task=Ant backend=isaacgym
#   docker/run.sh isaaclab pql-scale train task=Isaac-Velocity-Flat-AnymalD backend=isaaclab
#
# Runs land in $RUNS_DIR (default ./runs) on the host, mounted at /workspace/runs. WANDB_API_KEY (and
# WANDB_ENTITY / WANDB_PROJECT / WANDB_MODE) are passed through from the calling environment when set, never
# written into an image. GPUs: all visible; restrict with CUDA_VISIBLE_DEVICES (Isaac Gym uses the first
# visible one reliably only), which is passed through as well. --ipc=host lets the trio's processes share
# CUDA memory (IPC).
set -euo pipefail

usage() { echo "usage: $0 {modern|isaacgym|isaaclab} [command ...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
case "$1" in
  modern) image="${PQL_IMAGE:-pql-scaling:latest}" ;;
  isaacgym) image="${PQL_IMAGE:-pql-scaling:isaacgym}" ;;
  isaaclab) image="${PQL_IMAGE:-pql-scaling:isaaclab}" ;;
  *) usage ;;
esac
shift

runs_dir="${RUNS_DIR:-$PWD/runs}"
mkdir -p "$runs_dir"

env_args=()
for var in WANDB_API_KEY WANDB_ENTITY WANDB_PROJECT WANDB_MODE CUDA_VISIBLE_DEVICES; do
  if [ -n "${!var:-}" ]; then env_args+=(-e "$var"); fi  # -e NAME copies the value, keeping it off the command line
done

tty_args=()
if [ -t 0 ] && [ -t 1 ]; then tty_args=(-it); fi

exec docker run --rm ${tty_args[@]+"${tty_args[@]}"} \
  --gpus all \
  --ipc=host \
  -v "$runs_dir":/workspace/runs \
  ${env_args[@]+"${env_args[@]}"} \
  "$image" "$@"
