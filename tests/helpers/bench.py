"""Run a benchmark script as a user would and read its JSON result."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import PYTHON, REPO_ROOT

# Plumbing runs of the quick preset: one-month validation and test windows (730 bars, not the
# preset's 4,383) keep every walk short; what the tests check does not depend on their length.
SHORT_WINDOWS = ("walk_forward.validation_months=1", "walk_forward.test_months=1")


def short_windows(*settings: str) -> tuple[str, ...]:
    """`--set` arguments for SHORT_WINDOWS and `settings`."""
    return tuple(arg for item in (*SHORT_WINDOWS, *settings) for arg in ("--set", item))


def run_bench(script: str, out: Path, *args: str) -> tuple[str, dict[str, Any]]:
    """(stdout, parsed --json output) of `bench/<script>`; fails the test on a non-zero exit."""
    done = subprocess.run(
        [PYTHON, str(REPO_ROOT / "bench" / script), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, json.loads(out.read_text())
