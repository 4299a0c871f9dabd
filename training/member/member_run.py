"""Ensemble members as the launcher's workloads: a `Job` that trains itself, and fedavg's
listener, so the launcher runs members without knowing what they are."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.launcher.launch import LaunchSettings, Outcome, Tell, launch
from training.run.files import JobFiles, RunFiles
from training.run.job import NO_HOOKS, Hooks, Job


@dataclass(frozen=True)
class MemberRun:
    """One member on one fold (training.launcher.workload's Workload and Stepwise)."""

    job: Job

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def files(self) -> JobFiles:
        return self.job.files

    @property
    def timesteps(self) -> int:
        return self.job.timesteps

    @property
    def blas_threads(self) -> int:
        return self.job.blas_threads

    @property
    def torch_threads(self) -> int:
        return self.job.torch_threads

    @property
    def group(self) -> int:
        """A fold's members meet at fedavg's barriers: in process they take turns."""
        return self.job.fold.index

    def run(self, hooks: Hooks = NO_HOOKS) -> dict[str, Any]:
        from training.member.member_training import run_job

        return run_job(self.job, hooks)

    def steps(self, hooks: Hooks = NO_HOOKS) -> Generator[None, None, dict[str, Any]]:
        from training.member.member_training import job_steps

        return job_steps(self.job, hooks)


class FoldBarriers:
    """fedavg: a member the launcher gives up on leaves its fold's barriers (the others stop
    waiting for it); one launched again is waited for again."""

    def queued(self, workload: MemberRun) -> None:
        from training.fedavg.barrier import clear_left

        job = workload.job
        clear_left(RunFiles(Path(job.run_dir)).fedavg(job.fold.index), job.member)

    def gave_up(self, workload: MemberRun, error: str) -> None:
        from training.fedavg.barrier import mark_left

        job = workload.job
        mark_left(RunFiles(Path(job.run_dir)).fedavg(job.fold.index), job.member, error)


def launch_members(jobs: list[Job], settings: LaunchSettings, tell: Tell) -> Outcome:
    """Train these members through the launcher (fedavg rounds: with the barriers' listener)."""
    listener = FoldBarriers() if settings.rounds else None
    return launch([MemberRun(job) for job in jobs], settings, tell, listener)
