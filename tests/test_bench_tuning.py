"""The sweep benchmark runs its arms through the CLI on a tiny study and reports the ratios."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.bench import run_bench


@pytest.mark.slow
def test_tuning_benchmark_reports_workers_and_pruning(tmp_path: Path) -> None:
    arms = ["1 worker, population learner", "2 workers, no pruning", "2 workers, wilcoxon",
            "1 worker, separate learner"]  # fmt: skip
    stdout, result = run_bench(
        "bench_tuning.py",
        tmp_path / "bench.json",
        # one 2,048-step rollout and one pruning report per member (the preset's rollout is 8,192)
        *("--n-trials", "2", "--timesteps", "2048", "--folds", "1", "--eval-every", "2048"),
        *("--set", "hardware.target_rollout_steps=2048"),
        "--arms",
        *arms,
    )
    assert "trials per hour" in stdout and "of the PPO steps saved" in stdout
    for arm in arms:
        values = result["arms"][arm]
        assert values["trials"] == 2 and values["ppo_steps"] > 0 and values["wall_s"] > 0
    one, two = result["arms"][arms[0]], result["arms"][arms[1]]
    assert result["two_workers_vs_one"] == pytest.approx(
        two["trials_per_hour"] / one["trials_per_hour"]
    )
    separate, population = result["arms"][arms[3]], result["arms"][arms[0]]
    assert result["population_vs_separate"] == pytest.approx(
        population["trials_per_hour"] / separate["trials_per_hour"]
    )
    assert "population / separate learner" in stdout
    pruned = result["arms"][arms[2]]
    assert result["wilcoxon_compute_saved"] == pytest.approx(
        1 - pruned["ppo_steps"] / two["ppo_steps"]
    )
