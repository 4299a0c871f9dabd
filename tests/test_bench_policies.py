"""The policy and autotune benchmarks run end to end on a tiny shape and report their ratios."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.bench import run_bench

SMALL = ["--assets", "2", "--years", "0.6", "--set", "hardware.target_rollout_steps=1024"]


@pytest.mark.slow
def test_policy_benchmark_reports_bound_ratios_and_time_to_target(tmp_path: Path) -> None:
    # One throughput round (--repeats 1): the ratios are checked for consistency, not judged.
    # lstm's arm is the same loop over another extractor (its training: tests/test_policies.py)
    args = [*SMALL, "--timesteps", "1024", "--warmup", "1024", "--extractors", "flat",
            "shared_asset", "--target-extractors", "flat", "shared_asset", "--seeds", "1",
            "--budget-steps", "4096", "--eval-every", "2048", "--targets", "0.5", "1",
            "--repeats", "1"]  # fmt: skip
    stdout, result = run_bench("bench_policies.py", tmp_path / "bench.json", *args)
    assert "learner bound" in stdout and "x flat" in stdout and "SB3's" in stdout
    rows = result["throughput"]
    for extractor in ("flat", "shared_asset"):
        row = rows[extractor]
        assert row["real"]["steps_per_s"] > 0 and row["bound"]["steps_per_s"] > 0
        ratio = row["real"]["steps_per_s"] / row["bound"]["steps_per_s"]
        assert row["real_over_bound"] == pytest.approx(ratio)
    assert rows["shared_asset"]["real"]["parameters"] < rows["flat"]["real"]["parameters"]
    assert rows["flat"]["buffer_speedup"] > 0
    target = result["time_to_target"]
    for extractor in ("flat", "shared_asset"):
        (run,) = target[extractor]["runs"]
        assert run["steps"] >= 4096 and set(run["reached"]) == {"0.5", "1"}
        assert run["test_sharpe"] == run["test_sharpe"]  # a number, not NaN
    assert "time to validation Sharpe" in stdout


@pytest.mark.slow
def test_autotune_benchmark_scores_the_planners_choices_against_the_grid(tmp_path: Path) -> None:
    args = ["--assets", "2", "--years", "0.6", "--env-counts", "16", "32", "--final-rounds", "1",
            "--final-rollouts", "1", "--set", "hardware.target_rollout_steps=1024"]  # fmt: skip
    stdout, result = run_bench("bench_autotune.py", tmp_path / "bench.json", *args)
    assert "best of the grid" in stdout and "final:" in stdout
    speeds = [cell["steps_per_s"] for cell in result["grid"]]
    assert len(speeds) == len(result["grid"]) >= 6 and min(speeds) > 0
    for name in ("rules", "autotune"):
        assert 0 < result[name]["share_of_best"] <= 1.0
    assert len(result["probe"]) >= 3
