"""A run killed with SIGKILL mid-training resumes from its checkpoints and ends complete."""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.datasets import write_csv
from tests.helpers.walk_forward import LEARNABLE, ar1_frames, bars_needed, learnable_config

pytestmark = pytest.mark.slow
ENTRY = Path(__file__).resolve().parents[1] / "training" / "train_walk_forward.py"
TIMESTEPS = 12_288  # 6 rollouts: killed after 2, resumed to 6
ROLLOUT = 2048  # hardware.target_rollout_steps in LEARNABLE: 32 envs x 64 steps


def cli(*args: str) -> list[str]:
    return [sys.executable, str(ENTRY), *args, "--no-progress"]


def test_sigkill_then_resume_finishes_every_fold(tmp_path: Path) -> None:
    config = learnable_config("walk_forward.max_folds=2")
    dataset = write_csv(tmp_path / "dataset", ar1_frames(bars_needed(config), 2, 0.3, seed=4))
    settings = [f"--set={item}" for item in [*LEARNABLE, f"data.cache_dir={tmp_path / 'cache'}"]]
    start = cli(
        "--data", str(dataset), *settings, "--folds", "2", "--timesteps", str(TIMESTEPS),
        "--output", str(tmp_path / "runs"), "--name", "killed",
    )  # fmt: skip
    process = subprocess.Popen(start, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        found = list((tmp_path / "runs").glob("*/folds/fold_00/member_00/checkpoints/state.json"))
        if found and json.loads(found[0].read_text())["timesteps"] >= 2 * ROLLOUT:
            state = found[0]
            break
        time.sleep(0.05)
    assert state is not None, process.communicate()
    # Its local job outlives the launcher (submitit's controller is made to): frozen here so it
    # is surely still there when --resume starts, which must end it before starting a writer.
    orphan = json.loads((state.parents[1] / "progress.json").read_text())["pid"]
    os.kill(orphan, signal.SIGSTOP)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    run_dir = state.parents[4]
    assert not (run_dir / "report.md").exists()
    killed_at = json.loads(state.read_text())["timesteps"]
    assert killed_at < TIMESTEPS
    # A result file planted in the launcher folder (as a foreign run folder could hold) under the
    # orphan's job id and another: never unpickled, gone before the resumed launch submits.
    marker = tmp_path / "planted-code-ran"
    planted = [run_dir / "launcher" / f"{job}_0_result.pkl" for job in (orphan, 1)]
    for path in planted:
        path.write_bytes(pickle.dumps(_Payload(str(marker))))

    done = subprocess.run(
        cli("--resume", str(run_dir)), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert "Resuming" in done.stdout and "Report:" in done.stdout
    assert f"ended pid {orphan}, left running by an earlier launch" in done.stderr
    assert not marker.exists() and not any(path.exists() for path in planted)
    assert not _alive(orphan)
    expected = math.ceil(TIMESTEPS / ROLLOUT) * ROLLOUT
    for fold in (0, 1):
        member = run_dir / "folds" / f"fold_{fold:02d}" / "member_00"
        result = json.loads((member / "result.json").read_text())
        assert result["timesteps"] == expected
        steps = [e["timesteps"] for e in result["evaluations"]]
        assert steps == sorted(set(steps)) and steps[-1] == expected
    fold0 = json.loads((run_dir / "folds/fold_00/member_00/result.json").read_text())
    assert any(e["timesteps"] <= killed_at for e in fold0["evaluations"])  # kept from before
    leftovers = [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    for path in run_dir.rglob("*.json"):
        json.loads(path.read_text())  # every file is whole
    assert (run_dir / "report.md").exists()

    again = subprocess.run(
        cli("--resume", str(run_dir)), capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0 and "2 of 2 job(s) already finished" in again.stdout


class _Payload:
    """Unpickling it runs a shell command: what a hostile result file would carry."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _alive(pid: int) -> bool:
    """Running, sleeping or stopped; a zombie (ended, not yet reaped by its parent) is not."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() != b""
    except OSError:
        return False


def test_resume_of_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    done = subprocess.run(cli("--resume", str(tmp_path)), capture_output=True, text=True)
    assert done.returncode == 2 and "not a Ploutos run folder" in done.stderr
    assert "Traceback" not in done.stderr
