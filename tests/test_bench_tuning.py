"""The sweep benchmark runs its arms through the CLI on a tiny study and reports the ratios."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.bench_tuning import _ratios
from tests.helpers.bench import run_bench


@pytest.mark.slow
def test_tuning_benchmark_runs_both_learners_through_the_command_line(tmp_path: Path) -> None:
    arms = ["1 worker, separate learner", "1 worker, population learner"]
    stdout, result = run_bench(
        "bench_tuning.py",
        tmp_path / "bench.json",
        # one 2,048-step rollout and one pruning report per member (the preset's rollout is 8,192)
        *("--n-trials", "2", "--timesteps", "2048", "--folds", "1", "--eval-every", "2048"),
        *("--set", "hardware.target_rollout_steps=2048"),
        "--arms",
        *arms,
    )
    assert "trials per hour" in stdout and "population / separate learner" in stdout
    for arm in arms:
        values = result["arms"][arm]
        assert values["trials"] == 2 and values["ppo_steps"] > 0 and values["wall_s"] > 0
    separate, population = (result["arms"][arm] for arm in arms)
    assert result["population_vs_separate"] == pytest.approx(
        population["trials_per_hour"] / separate["trials_per_hour"]
    )
    assert population["best_value"] == pytest.approx(separate["best_value"], rel=1e-4)


def test_the_ratios_are_against_each_baseline_of_the_same_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def arm(per_hour: float, steps: int, best: float = 1.0) -> dict:
        return {"trials_per_hour": per_hour, "ppo_steps": steps, "best_value": best,
                "trials": 8, "pruned": 2}  # fmt: skip

    results = {
        "arms": {
            "1 worker, separate learner": arm(100, 1000, 0.5),
            "1 worker, population learner": arm(300, 1000),
            "2 workers, no pruning": arm(450, 1000),
            "2 workers, wilcoxon": arm(450, 900),
            "2 workers, median": arm(450, 600),
        }
    }
    _ratios(results)
    assert results["two_workers_vs_one"] == pytest.approx(1.5)
    assert results["population_vs_separate"] == pytest.approx(3.0)
    assert results["wilcoxon_compute_saved"] == pytest.approx(0.1)
    assert results["median_compute_saved"] == pytest.approx(0.4)
    printed = capsys.readouterr().out
    assert "population / separate learner, trials per hour: 3.00x" in printed
    assert "median: 40 % of the PPO steps saved at 8 trials (2 pruned)" in printed
