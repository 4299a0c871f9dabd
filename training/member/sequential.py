"""Run a run's jobs one after another in this process, under one progress bar for the whole run."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from training.member.member_training import run_job
from training.run.job import Hooks, Job


def run_jobs(jobs: list[Job], show_progress: bool) -> list[dict[str, Any]]:
    """Every job in turn, under one progress bar for the whole run (folds × members × steps)."""
    results = []
    finished = 0
    with _run_progress(jobs, show_progress) as (progress, task, console):
        for number, job in enumerate(jobs, 1):
            label = f"job {number}/{len(jobs)} ({job.name})"

            def phase(what: str, label: str = label) -> None:
                if progress is not None:
                    progress.update(task, description=f"{label}: {what}")

            def advance(steps: int) -> None:
                if progress is not None:
                    progress.advance(task, steps)

            def warn(message: str, label: str = label) -> None:
                console.print(f"[yellow]warning[/] {label}: {message}", highlight=False)

            results.append(run_job(job, Hooks(advance=advance, warn=warn, phase=phase)))
            finished += job.timesteps
            if progress is not None:  # early stops and rollout rounding: snap to the job's end
                progress.update(task, completed=finished)
    return results


@contextlib.contextmanager
def _run_progress(jobs: list[Job], enabled: bool) -> Iterator[tuple[Progress | None, Any, Console]]:
    console = Console(file=sys.stderr)
    if not enabled:
        yield None, None, console
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    total = sum(job.timesteps for job in jobs)
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("starting", total=total)
        yield progress, task, progress.console
