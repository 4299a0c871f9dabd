"""The env benchmark runs end to end on a tiny shape and reports every arm with its ratios."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.bench import run_bench


@pytest.mark.slow
def test_env_benchmark_reports_every_arm(tmp_path: Path) -> None:
    args = ["--assets", "2", "--years", "0.35", "--sizes", "1", "4", "--seconds", "0.1"]
    stdout, result = run_bench("bench_envs.py", tmp_path / "bench.json", *args, "--rounds", "1")
    assert "of copy bound" in stdout
    arms = [row["arm"] for row in result["rows"]]
    assert arms == [
        "naive pandas env",
        "TradingEnv",
        "BatchTradingEnv K=1",
        "BatchTradingEnv K=4",
        "SubprocVecEnv 2 workers",
    ]
    assert result["rows"][0]["vs_naive"] == 1.0
    assert all(row["env_steps_per_s"] > 0 for row in result["rows"])
    assert result["copy_bound_env_steps_per_s"] > 0
    assert result["shape"]["assets"] == 2
