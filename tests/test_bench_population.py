"""The population benchmark runs both learners through the CLI on a tiny ensemble and reports
the speed-up with each arm's learning."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.bench import run_bench, short_windows


@pytest.mark.slow
def test_population_benchmark_reports_members_per_hour_and_learning_of_both_arms(
    tmp_path: Path,
) -> None:
    stdout, result = run_bench(
        "bench_population.py",
        tmp_path / "bench.json",
        *("--members", "2", "--timesteps", "2048", "--folds", "1", "--cases", "flat-quick"),
        "--repeats",
        "1",
        *short_windows("hardware.target_rollout_steps=2048"),  # one rollout each
    )
    assert "population / separate" in stdout
    case = result["cases"]["flat-quick"]
    separate, population = case["separate"], case["population"]
    assert separate["jobs"] == population["jobs"] == 2
    assert separate["timesteps"] == population["timesteps"]
    assert case["speedup"] == pytest.approx(separate["wall_s"] / population["wall_s"])
    assert case["orders"] == [["separate", "population"]]
    for arm in (separate, population):
        assert arm["walls_s"] == [arm["wall_s"]]
    for arm in (separate, population):
        assert arm["members_per_hour"] == pytest.approx(2 / arm["wall_s"] * 3600)
        assert arm["folds"] == 1 and 0 <= arm["dsr"] <= 1


def test_the_arms_alternate_which_runs_first() -> None:
    from bench.bench_population import ARMS, arm_orders

    assert arm_orders(3) == [ARMS, ARMS[::-1], ARMS]
