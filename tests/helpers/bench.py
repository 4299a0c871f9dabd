"""Run a benchmark script as a user would and read its JSON result."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import PYTHON, REPO_ROOT


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
