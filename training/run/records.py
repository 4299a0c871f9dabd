"""The run folder's records, typed, each with one writer and one reader: a job's result.json and
a fold's fused.json. The reader turns a damaged file into one clear message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypedDict

from core.atomic import write_json
from core.errors import UserError
from training.run.files import JobFiles, RunFiles


class RoundsTaken(TypedDict):
    """fedavg: how a member's rounds went."""

    done: int
    wait_s: float  # at the barriers
    wall_s: float
    late: list[int]  # rounds it reached after they closed


class JobResult(TypedDict):
    """result.json: one member × fold, written once its test window is walked."""

    fold: int
    member: int
    seed: int
    risk_profile: str | None
    timesteps: int
    stopped_early: bool
    best_timesteps: int | None
    evaluations: list[dict[str, Any]]  # every validation: timesteps, score, metrics
    warnings: list[str]
    preempted_at: list[int]
    rounds: RoundsTaken | None
    periods_per_year: float
    test: dict[str, dict[str, float]]  # strategy -> metrics on the test window


class FusedRound(TypedDict):
    """A closed fedavg round (training.fedavg.barrier.Closed) and the fused model's validation."""

    round: int
    participants: list[int]
    weights: list[float]
    scores: list[float | None]
    missing: list[int]
    timesteps: int
    validation: dict[str, Any]


class FusedRecord(TypedDict):
    """fused.json: every round of a fold and the one kept as its fused model."""

    best_round: int
    rounds: list[FusedRound]


def write_job_result(files: JobFiles, result: JobResult) -> None:
    write_json(files.result, result)


def read_job_result(files: JobFiles) -> JobResult:
    return _read(files.result, "the job's result")


def write_fused_record(files: RunFiles, fold: int, record: FusedRecord) -> None:
    write_json(files.fused_record(fold), record)


def read_fused_record(files: RunFiles, fold: int) -> FusedRecord:
    return _read(files.fused_record(fold), "the fold's fused-model record")


def _read(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(
            f"{what} is missing: {path}\n  fix: finish the run with --resume {_run_of(path)}"
        ) from None
    except (OSError, ValueError) as error:
        raise UserError(
            f"{what} cannot be read: {path} ({error})\n"
            f"  fix: delete it and run --resume {_run_of(path)} to redo that part of the run"
        ) from None


def _run_of(path: Path) -> Path:
    """The run folder a record lies in (folds/fold_XX[/member_YY]/FILE)."""
    for parent in path.parents:
        if parent.name == "folds":
            return parent.parent
    return path.parent
