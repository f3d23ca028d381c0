#!/usr/bin/env bash
# The one-shot GPU check (issue 19); the stages and the files it writes are described in benchmarks/gpu_check.py.
#
#   bash benchmarks/gpu_check.sh              # GPU machine: results in $OUT (default benchmarks/results/gpu_<device>)
#   bash benchmarks/gpu_check.sh --dry-run    # any CPU: every stage's plumbing at toy sizes, < 2 minutes
#
# On a bare, air-gapped GPU image, the wheels that scripts/gpu_wheels.sh put in .whl/ (git-ignored; carried with
# the checkout) are installed first into a private folder, without touching the image's own packages.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3 || command -v python)}
if [ -d .whl ] && compgen -G ".whl/*.whl" >/dev/null; then
    SITE=${TMPDIR:-/tmp}/pql_gpu_site
    "$PY" -m pip install -q --no-index --no-deps --target "$SITE" .whl/*.whl \
        || echo "gpu_check: installing .whl/ failed; going on with what the image has" >&2
    export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHON="$PY"
exec "$PY" benchmarks/gpu_check.py "$@"
