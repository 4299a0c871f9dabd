"""The launcher benchmark runs its three arms on a tiny ensemble and reports the ratios."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.bench import run_bench, short_windows


@pytest.mark.slow
def test_launcher_benchmark_reports_every_arm_and_the_projection(tmp_path: Path) -> None:
    stdout, result = run_bench(
        "bench_launcher.py",
        tmp_path / "bench.json",
        *("--members", "2", "--timesteps", "2048"),
        # one 2,048-step rollout a member (the preset's is 8,192): the arms' plumbing, not speed
        *short_windows("hardware.target_rollout_steps=2048"),
    )
    assert "ratios vs sequential" in stdout and "projection for" in stdout
    for arm in ("sequential", "planned", "all_at_once"):
        values = result[arm]
        assert values["wall_s"] > 0 and 0 < values["cpu_utilisation"] <= 1.5
        assert values["members_per_hour"] == pytest.approx(2 / values["wall_s"] * 3600)
    assert result["all_at_once"]["at_once"] == 2 and result["sequential"]["at_once"] == 1
    ratio = result["planned"]["members_per_hour"] / result["all_at_once"]["members_per_hour"]
    assert result["planned_vs_all_at_once"] == pytest.approx(ratio)
    assert result["projection"]["members_concurrent"] == 20  # the 256-core plan fits them all
