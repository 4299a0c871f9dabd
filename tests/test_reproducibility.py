"""The same command, config and seed twice on one machine: byte-identical out-of-sample returns
and the same metrics, with either learner and either env, through the local launcher."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ENTRY, PYTHON, REPO_ROOT
from tests.helpers.datasets import write_csv
from tests.helpers.walk_forward import LEARNABLE, ar1_frames, bars_needed, learnable_config


@pytest.mark.slow
@pytest.mark.parametrize(
    ("settings", "members"),
    [
        (["ensemble.learner=population", "hardware.vec_env=batch"], 2),  # one group of two
        (["ensemble.learner=separate", "hardware.vec_env=subproc"], 1),  # SB3's SubprocVecEnv
    ],
    ids=["population-batch", "separate-subproc"],
)
def test_the_same_command_twice_gives_byte_identical_results(
    tmp_path: Path, settings: list[str], members: int
) -> None:
    config = learnable_config("walk_forward.max_folds=1")
    dataset = write_csv(tmp_path / "dataset", ar1_frames(bars_needed(config), 2, 0.3, seed=5))
    runs = []
    for attempt in range(2):
        output = tmp_path / f"runs{attempt}"
        command = [PYTHON, str(ENTRY), "--data", str(dataset), "--timesteps", "2048",
                   "--ensemble", str(members), "--output", str(output), "--no-progress",
                   "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "launcher.cluster=local"]  # fmt: skip
        for item in [*LEARNABLE, "walk_forward.max_folds=1", *settings]:
            command += ["--set", item]
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        (run_dir,) = output.iterdir()
        runs.append(run_dir)
    first, second = runs
    assert (first / "oos_returns.csv").read_bytes() == (second / "oos_returns.csv").read_bytes()
    metrics = [json.loads((run / "metrics.json").read_text()) for run in runs]
    assert metrics[0].pop("run") != metrics[1].pop("run")  # the run folders' names (UTC times)
    assert metrics[0] == metrics[1]
    learner = settings[0].split("=")[1]
    assert json.loads((first / "plan.json").read_text())["plan"]["learner"] == learner
    report = (first / "report.md").read_text()
    assert (
        "Reproducibility: ensemble.base_seed 0" in report
        and f"ensemble.learner {learner}" in report
    )
