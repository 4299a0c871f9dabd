"""The feature-store benchmark runs end to end and reports both arms, so it cannot rot unnoticed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.bench import run_bench


@pytest.mark.slow
def test_benchmark_reports_naive_and_store_for_two_workers(tmp_path: Path) -> None:
    stdout, result = run_bench(
        "bench_feature_store.py", tmp_path / "bench.json", "--sizes", "2", "--skip-large"
    )
    assert "speed-up" in stdout
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
