"""The run folder's records, typed, each with one writer and one reader: a job's result.json and
a fold's fused.json; and the one reader of every JSON record of a run folder, which turns a
missing or damaged file into one clear message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypedDict

from core.atomic import write_json
from core.errors import UserError, shortened
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
    """A closed fedavg round (training.fedavg.record.Closed) and the fused model's validation."""

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


DEFINITION_FIX = (
    "it was written before any job started: restore it from a copy of the run folder, or start "
    "a new run with --config {run}/config.yaml"
)

REDO_FIX = "delete it, then --resume {run} redoes that part of the run"
FINISH_FIX = "finish the run with --resume {run}"


def write_job_result(files: JobFiles, result: JobResult) -> None:
    write_json(files.result, result)


def read_job_result(files: JobFiles) -> JobResult:
    return read_record(files.result, "the job's result", REDO_FIX, FINISH_FIX)


def check_job_results(files: list[JobFiles]) -> None:
    """Read every result.json there is, so a damaged one is said before a resumed run trains
    for hours and then fails on it in the report."""
    for job in files:
        if job.result.exists():
            read_job_result(job)


def write_fused_record(files: RunFiles, fold: int, record: FusedRecord) -> None:
    write_json(files.fused_record(fold), record)


def read_fused_record(files: RunFiles, fold: int) -> FusedRecord:
    return read_record(
        files.fused_record(fold), "the fold's fused-model record", REDO_FIX, FINISH_FIX
    )


def read_record(
    path: Path, what: str, fix: str = DEFINITION_FIX, missing_fix: str | None = None
) -> Any:
    """A JSON record of the run folder, or one message naming the file and `fix` when it is
    truncated or not JSON (`missing_fix` when it is missing; {run} in either is the run folder)."""
    run = _run_of(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        missing = (missing_fix or fix).format(run=run)
        raise UserError(f"{what} is missing: {path}\n  fix: {missing}") from None
    except (OSError, ValueError) as error:  # ValueError: truncated JSON, or not UTF-8 text
        why = shortened(str(error), 120)
        raise UserError(
            f"{what} cannot be read: {path} ({why})\n  fix: {fix.format(run=run)}"
        ) from None


def _run_of(path: Path) -> Path:
    """The run folder a record lies in (folds/fold_XX[/member_YY]/FILE, or the run's own)."""
    for parent in path.parents:
        if parent.name == "folds":
            return parent.parent
    return path.parent
