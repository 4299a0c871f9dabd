"""The feature-store benchmark runs end to end and reports both arms, so it cannot rot unnoticed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, REPO_ROOT

BENCH = REPO_ROOT / "bench" / "bench_feature_store.py"


@pytest.mark.slow
def test_benchmark_reports_naive_and_store_for_two_workers(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [PYTHON, str(BENCH), "--sizes", "2", "--skip-large", "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "speed-up" in done.stdout
    result = json.loads(out.read_text())
    assert result["same_data"] is True
    assert result["large"] is None
    assert result["default"]["build_s"] > 0
    (row,) = result["rows"]
    assert row["n"] == 2
    for arm in ("naive", "store"):
        assert row[arm]["n"] == 2
        assert row[arm]["wall_s"] > 0
        assert row[arm]["startup_mean_s"] > 0
        assert row[arm]["uss_mean_mib"] > 0
    assert row["speedup"] > 0
    assert row["uss_ratio"] > 0
