"""The checksum benchmark times every algorithm on one file and reports them against the store's."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.features.store import CHECKSUM
from tests.helpers.bench import run_bench
from tests.helpers.stores import built_store


def test_checksum_benchmark_reports_each_algorithm_against_the_stores(tmp_path: Path) -> None:
    store = built_store(tmp_path)
    stdout, result = run_bench(
        "bench_checksums.py", tmp_path / "bench.json", "--mb", "8", "--repeats", "1",
        "--store", str(store.path),
    )  # fmt: skip
    assert result["store"]["ms"] > 0 and f"verifying {store.path}" in stdout
    assert result["baseline"] == CHECKSUM and f"1.00x {CHECKSUM}" in stdout
    speeds = result["gb_per_s"]
    assert set(speeds) >= {"sha256", "blake2b"} and min(speeds.values()) > 0
    assert f"{speeds['blake2b'] / speeds[CHECKSUM]:4.2f}x" in stdout
    assert pytest.approx(speeds[CHECKSUM]) == speeds["sha256"]
