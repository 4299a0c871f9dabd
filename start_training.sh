#!/usr/bin/env bash
# Ploutos entry point: thread limits, then the project environment (created on first use),
# then the Python command line with every argument passed through unchanged.
# Run `./start_training.sh --help` for the flags.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${PLOUTOS_VENV:-$ROOT/.venv}"
ENTRY="$ROOT/training/train_walk_forward.py"

# One thread per BLAS/OpenMP pool until the plan is made; the Python entry point then sets the
# planned values before numpy loads (override them with --set hardware.blas_threads=N).
for name in OMP_NUM_THREADS OPENBLAS_NUM_THREADS MKL_NUM_THREADS BLIS_NUM_THREADS \
            VECLIB_MAXIMUM_THREADS NUMEXPR_NUM_THREADS NUMBA_NUM_THREADS; do
  export "$name=1"
done

# The command as typed, for the run folder's command.txt and its report (not the Python call).
PLOUTOS_COMMAND="$(printf '%q ' "$0" "$@")"
export PLOUTOS_COMMAND

# --help needs only the standard library: answer it without building the environment.
for arg in "$@"; do
  if [[ "$arg" == "-h" || "$arg" == "--help" ]]; then
    if [[ -x "$VENV/bin/python" ]]; then PY="$VENV/bin/python"; else PY="${PLOUTOS_PYTHON:-python3}"; fi
    exec "$PY" "$ENTRY" "$@"
  fi
done

if [[ "${PLOUTOS_SKIP_BOOTSTRAP:-0}" == "1" ]]; then
  exec "${PLOUTOS_PYTHON:-python3}" "$ENTRY" "$@"
fi
"$ROOT/scripts/bootstrap_env.sh"
exec "$VENV/bin/python" "$ENTRY" "$@"
