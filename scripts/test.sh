#!/usr/bin/env bash
# Install what the tests need (scripts/bootstrap_env.sh test), then lint and run the whole suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k planner
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PLOUTOS_VENV:-$ROOT/.venv}"
"$ROOT/scripts/bootstrap_env.sh" test
# The SLURM integration tests bring up a real single-node cluster: its Debian packages first.
"$ROOT/scripts/slurm_cluster.sh" install
# The sweep's PostgreSQL test runs a real server: its Debian package, if missing.
"$ROOT/scripts/postgres_server.sh" install
cd "$ROOT"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
exec "$VENV/bin/python" -m pytest "$@"
