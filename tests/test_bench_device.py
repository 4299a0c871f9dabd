"""The device benchmark runs on a CPU-only machine: the CPU column measured, the GPU column
"not available", and its members-per-hour arithmetic and crossing rule hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.bench import run_bench
from training.population.device_timing import GroupTiming, crossing


@pytest.mark.slow
def test_device_benchmark_runs_without_cuda(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch

    stdout, result = run_bench(
        "bench_device.py",
        tmp_path / "bench.json",
        *("--cases", "quick", "--sizes", "1", "2", "--n-envs", "4", "--n-steps", "64"),
        *("--batch", "64", "--years", "0.5", "--assets", "2"),
    )
    rows = result["cases"]["quick"]["rows"]
    assert [row["size"] for row in rows] == [1, 2]
    for row in rows:
        expected = 3600 * row["size"] * 4 * 64 / (row["cpu_s"] * 60_000)
        assert row["cpu_members_per_hour"] == pytest.approx(expected)
    if not torch.cuda.is_available():
        assert "not available" in stdout and "not measured (no CUDA device)" in stdout


def test_the_crossing_is_where_cuda_wins_from_then_on() -> None:
    def timings(device: str, seconds: list[float]) -> list[GroupTiming]:
        return [GroupTiming(device, g, s, 8192) for g, s in zip((1, 8, 32), seconds, strict=True)]

    cpu = timings("cpu", [1.0, 2.0, 6.0])
    assert crossing(cpu, timings("cuda", [2.0, 1.5, 3.0])) == 8
    assert crossing(cpu, timings("cuda", [0.5, 2.5, 3.0])) == 32  # a loss in between resets it
    assert crossing(cpu, timings("cuda", [2.0, 3.0, 7.0])) is None
    assert GroupTiming("cpu", 1, 2.0, 8192).members_per_hour(8192) == pytest.approx(1800)
