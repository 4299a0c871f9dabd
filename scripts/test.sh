#!/usr/bin/env bash
# Install what the tests need (scripts/bootstrap_env.sh test), then lint and run the whole suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k planner (or -n 0 for one process).
# The suite runs in pytest-xdist workers (2, or 4 from 8 CPUs; PLOUTOS_TEST_WORKERS to change),
# each pinned to its own share of the CPUs by tests/conftest.py: on 2 CPUs the suite took 644 s
# against 1,135 s in one process (one process leaves a core idle while a lone job trains).
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
CPUS="$(nproc)"
WORKERS="${PLOUTOS_TEST_WORKERS:-$((CPUS >= 8 ? 4 : (CPUS >= 2 ? 2 : 0)))}"
# loadfile: a file's tests stay in one worker, so a module's fixture (a trained run) is built once.
exec "$VENV/bin/python" -m pytest -n "$WORKERS" --dist loadfile "$@"
