"""A job's checkpoints: the SB3 zips and the state file that commits them, and which of them
was tested. One home, so training, the ensemble walk and fusing read state the same way."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.atomic import replacing, write_json
from training.run.files import JobFiles
from training.run.job import Job


@dataclass
class TrainingState:
    """What a resumed job needs besides weights; committed after the files it names."""

    timesteps: int = 0
    last_checkpoint: str | None = None
    best_checkpoint: str | None = None
    best_score: float | None = None
    since_best: int = 0
    stopped_early: bool = False
    finished: bool = False
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    preempted_at: list[int] = field(default_factory=list)  # timesteps of each requeue
    # ensemble.mode fedavg: rounds committed, and per round the seconds spent at its barrier and
    # in all; rounds that closed without this member
    rounds_done: int = 0
    round_wait_s: list[float] = field(default_factory=list)
    round_wall_s: list[float] = field(default_factory=list)
    late_rounds: list[int] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> TrainingState:
        return cls(**json.loads(path.read_text()))


def save_checkpoint(files: JobFiles, model: Any, kind: str) -> str:
    """Write the model whole (temp file + rename); return the name a state file will hold."""
    path = files.checkpoint(kind, model.num_timesteps)
    with replacing(path) as handle:
        model.save(handle)
    return path.name


def commit_state(files: JobFiles, state: TrainingState) -> None:
    """Write the state, then drop checkpoints it no longer names."""
    write_json(files.state, asdict(state))
    keep = {state.last_checkpoint, state.best_checkpoint}
    for old in files.checkpoints.glob("*.zip"):
        if old.name not in keep:
            old.unlink(missing_ok=True)


def tested_checkpoint(files: JobFiles, select: str, state: TrainingState | None = None) -> Path:
    """The checkpoint a member is tested with: its best on validation (training.select: best,
    when it has one), else its last; `state` as committed unless the trainer's own is given."""
    state = state or TrainingState.load(files.state)
    best = state.best_checkpoint if select == "best" else None
    return files.checkpoints / str(best or state.last_checkpoint)


def load_tested(
    job: Job, select: str, device: str = "cpu", state: TrainingState | None = None
) -> Any:
    """That checkpoint as a model of the run's algorithm."""
    from training.member.models import load_model
    from training.run.folder import run_config

    path = tested_checkpoint(job.files, select, state)
    return load_model(run_config(job.run_dir), path, device)
