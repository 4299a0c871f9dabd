#!/usr/bin/env bash
# Create or refresh the project environment (default .venv) so the entry points can run.
# Usage: scripts/bootstrap_env.sh [EXTRAS]   e.g. "test" for the test tools.
# Fast path: without an NVIDIA GPU, a CPU build of torch goes in first; the project's
# `torch>=2.1` is then already satisfied, so pip never fetches several GB of CUDA wheels.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PLOUTOS_VENV:-$ROOT/.venv}"
EXTRAS="${1:-}"
PYTHON="${PLOUTOS_PYTHON:-python3}"
STAMP="$VENV/.ploutos-installed${EXTRAS:+-$EXTRAS}"
TORCH_VERSION="${PLOUTOS_TORCH_VERSION:-2.13.0}"

say() { printf '[ploutos setup] %s\n' "$*" >&2; }

up_to_date() {
  [[ -x "$VENV/bin/python" && -f "$STAMP" && ! "$ROOT/pyproject.toml" -nt "$STAMP" ]]
}

has_nvidia_gpu() {
  if [[ -e /proc/driver/nvidia/version ]]; then return 0; fi
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1
}

install_torch() {
  if "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    return 0
  fi
  if has_nvidia_gpu; then
    say "NVIDIA GPU found: installing torch with CUDA from the package index"
    "$VENV/bin/pip" install "torch>=2.1"
  elif "$VENV/bin/pip" install --quiet "torch==${TORCH_VERSION}+cpu"; then
    say "installed the CPU build torch ${TORCH_VERSION}+cpu"
  elif [[ -n "${PLOUTOS_TORCH_INDEX_URL:-}" ]]; then
    say "installing a CPU build of torch from PLOUTOS_TORCH_INDEX_URL"
    "$VENV/bin/pip" install --index-url "$PLOUTOS_TORCH_INDEX_URL" torch
  else
    say "warning: pip sees no CPU build torch==${TORCH_VERSION}+cpu; installing the default"
    say "build (it brings CUDA libraries, several GB). To avoid that, set PLOUTOS_TORCH_INDEX_URL"
    say "to an index of CPU wheels, or PLOUTOS_TORCH_VERSION to a CPU build pip can find."
    "$VENV/bin/pip" install "torch>=2.1"
  fi
}

if up_to_date; then
  exit 0
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating the environment in $VENV"
  "$PYTHON" -m venv "$VENV"
fi
install_torch
say "installing Ploutos and its dependencies${EXTRAS:+ (extras: $EXTRAS)}"
"$VENV/bin/pip" install --quiet --editable "$ROOT${EXTRAS:+[$EXTRAS]}"
touch "$STAMP"
say "environment ready: $VENV"
