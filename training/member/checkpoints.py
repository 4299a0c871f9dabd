"""A job's checkpoints: the SB3 zips and the state file that commits them, and which of them
was tested. One home, so training, the ensemble walk and fusing read state the same way."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.atomic import replacing, write_json
from core.errors import UserError
from training.member.checkpoint_data import NOT_SAVED
from training.run.files import JobFiles
from training.run.job import Job

CHECKPOINT_NAME = re.compile(r"(last|best)-(\d+)\.zip")  # JobFiles.checkpoint's names


@dataclass
class TrainingState:
    """What a resumed job needs besides weights; committed after the files it names."""

    timesteps: int = 0
    last_checkpoint: str | None = None
    best_checkpoint: str | None = None
    # the last checkpoint before last_checkpoint: kept, so a damaged last one falls back to it
    previous_checkpoint: str | None = None
    best_score: float | None = None
    since_best: int = 0
    stopped_early: bool = False
    finished: bool = False
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    preempted_at: list[int] = field(default_factory=list)  # timesteps of each requeue
    # ensemble.mode fedavg: rounds committed, and per round the seconds spent waiting for the
    # fold's other members and in all
    rounds_done: int = 0
    round_wait_s: list[float] = field(default_factory=list)
    round_wall_s: list[float] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> TrainingState:
        """state.json as committed; its checkpoints must be files of its own folder."""
        try:
            state = cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:  # not JSON, or not a state's fields
            raise UnreadableState(f"{path} cannot be read: {exc}") from None
        for name in ("last_checkpoint", "best_checkpoint", "previous_checkpoint"):
            _check_checkpoint_name(path, name, getattr(state, name))
        return state

    def commit_last(self, name: str) -> None:
        """`name` is the last checkpoint now; the one it replaces becomes the previous."""
        if name != self.last_checkpoint:
            self.previous_checkpoint = self.last_checkpoint
        self.last_checkpoint = name


class UnreadableState(UserError):
    """A state.json that is not JSON or not a state: the job recovers from its checkpoints."""


def _check_checkpoint_name(path: Path, key: str, name: object) -> None:
    """A state file names a checkpoint beside it, never a path (it could point anywhere)."""
    if name is None:
        return
    folder = path.parent.resolve()
    if (
        not isinstance(name, str)
        or not CHECKPOINT_NAME.fullmatch(name)
        or (folder / name).resolve().parent != folder
    ):
        raise UserError(
            f"{path}: {key} = {name!r} is not a checkpoint file of this job (a state file "
            f"names a file in {path.parent}, such as last-000000004096.zip)\n"
            f"  fix: the file was edited or comes from elsewhere; delete {path} and --resume: "
            "the job recovers from the checkpoints in its own folder"
        )


def checkpoint_steps(name: str) -> int:
    """The step count in a checkpoint's file name."""
    match = CHECKPOINT_NAME.fullmatch(name)
    return int(match.group(2)) if match else -1


def save_checkpoint(files: JobFiles, model: Any, kind: str) -> str:
    """Write the model whole (temp file + rename); return the name a state file will hold."""
    path = files.checkpoint(kind, model.num_timesteps)
    with replacing(path) as handle:
        model.save(handle, exclude=list(NOT_SAVED))
    return path.name


def commit_state(files: JobFiles, state: TrainingState) -> None:
    """Write the state, then drop checkpoints it no longer names."""
    write_json(files.state, asdict(state))
    keep = {state.last_checkpoint, state.previous_checkpoint, state.best_checkpoint}
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
    job: Job,
    select: str,
    device: str = "cpu",
    state: TrainingState | None = None,
    store: Any = None,
) -> Any:
    """That checkpoint as a model of the member's algorithm and network; `store` (default: the
    run's) supplies the observation layout (a replay on other bars of the same shape)."""
    from core.features.store import FeatureStore
    from training.member.models import load_model, member_configs

    path = tested_checkpoint(job.files, select, state)
    store = store or FeatureStore.attach(job.store_path)
    return load_model(member_configs(job, store)[0], path, store, device)
