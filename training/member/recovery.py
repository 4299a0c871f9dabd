"""A job's progress found again when its commit point is lost: state.json missing or unreadable is
rebuilt from the checkpoints on disk, and a damaged last checkpoint gives way to the previous one.
Either is said in the job's log and its warnings; nothing on disk is deleted to get there but
the temp files a killed writer left (never a checkpoint, result or state)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.atomic import remove_temp_files
from core.errors import UserError
from training.member.checkpoint_data import UnreadableCheckpoint, checkpoint_data
from training.member.checkpoints import (
    CHECKPOINT_NAME,
    TrainingState,
    UnreadableState,
    checkpoint_steps,
)
from training.run.files import JobFiles

Warn = Callable[[str], None] | None


def job_state(files: JobFiles, warn: Warn = None) -> TrainingState:
    """state.json; without a readable one, the newest checkpoint that reads (none on disk: a job
    that never committed, it starts from step 0). The job is its folder's only writer now (the
    launcher ended any earlier process of it), so other processes' temp files there are a killed writer's."""
    for folder in (files.folder, files.checkpoints):
        remove_temp_files(folder)
    try:
        return TrainingState.load(files.state)
    except FileNotFoundError:
        lost = f"{files.state} is missing"
    except UnreadableState as exc:
        lost = str(exc)
    found = sorted(
        (p for p in files.checkpoints.glob("*.zip") if CHECKPOINT_NAME.fullmatch(p.name)),
        key=lambda p: checkpoint_steps(p.name),
        reverse=True,
    )
    readable, problems = [], []
    for path in found:
        try:
            readable.append((path.name, int(checkpoint_data(path)["num_timesteps"])))
        except UnreadableCheckpoint as exc:
            problems.append(_first_line(exc))
    # a job resumes from its "last" checkpoints only: a fedavg member's "best" holds its weights
    # before the round's average
    lasts = [(name, steps) for name, steps in readable if name.startswith("last")]
    bests = [name for name, _ in readable if name.startswith("best")]
    if not any(name.startswith("last") for name in (p.name for p in found)):
        # nothing was committed (a best saved just before a first commit is not a resume point)
        state = TrainingState()
        if files.state.exists():
            _say(warn, state, f"{lost} and no last checkpoint is left: the job starts from step 0")
        return state
    if not lasts:
        raise UserError(
            f"{lost}, and no checkpoint of the job to resume from can be read:\n  "
            + "\n  ".join(problems)
            + "\n  fix: nothing was deleted; to train this job from step 0, move "
            f"{files.checkpoints} away and --resume"
        )
    (last, steps), *older = lasts
    state = TrainingState(
        timesteps=steps,
        last_checkpoint=last,
        previous_checkpoint=older[0][0] if older else None,
        best_checkpoint=bests[0] if bests else None,
    )
    _say(
        warn,
        state,
        f"{lost}: resumed from its newest readable checkpoint {last} at {steps:,} steps "
        "(the validations before it are not in this job's history)",
    )
    return state


def resumed_model(
    load: Callable[[Path], Any], files: JobFiles, state: TrainingState, warn: Warn = None
) -> Any:
    """The model of state's last checkpoint, or of the previous one when the last is damaged
    (`state` then goes back to that point: later validations are dropped, they come again)."""
    assert state.last_checkpoint is not None
    damaged, previous = state.last_checkpoint, state.previous_checkpoint
    try:
        return load(files.checkpoints / damaged)
    except UnreadableCheckpoint as exc:
        problems = [_first_line(exc)]
    try:
        if previous is None:
            raise UnreadableCheckpoint(f"{files.state} names no previous checkpoint")
        model = load(files.checkpoints / previous)
    except UnreadableCheckpoint as exc:
        problems.append(_first_line(exc))
        raise UserError(
            "the job cannot resume: " + "; ".join(problems) + f"\n  fix: delete {files.state} "
            "and --resume: the job goes on from its newest checkpoint that reads (nothing was "
            f"deleted; with none left, move {files.checkpoints} away to train it from step 0)"
        ) from None
    _roll_back(state, previous, model.num_timesteps)
    _say(
        warn,
        state,
        f"{problems[0]}; resumed from the previous checkpoint {previous} at "
        f"{model.num_timesteps:,} steps ({damaged} is replaced at the next commit)",
    )
    return model


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0]


def _roll_back(state: TrainingState, checkpoint: str, steps: int) -> None:
    """`state` as it was when `checkpoint` was the last one committed."""
    state.timesteps, state.last_checkpoint, state.previous_checkpoint = steps, checkpoint, None
    state.evaluations = [e for e in state.evaluations if e["timesteps"] <= steps]
    state.finished = state.stopped_early = False
    best_at = checkpoint_steps(state.best_checkpoint) if state.best_checkpoint else -1
    state.since_best = sum(e["timesteps"] > best_at for e in state.evaluations)
    if state.rounds_done:  # fedavg commits once a round: the previous commit is one round back
        state.rounds_done -= 1
        del state.round_wait_s[state.rounds_done :], state.round_wall_s[state.rounds_done :]


def _say(warn: Warn, state: TrainingState | None, message: str) -> None:
    if state is not None:
        state.warnings.append(message)
    if warn is not None:
        warn(message)
