"""Ensemble members as the launcher's workloads: a `Job` that trains itself, so the launcher
runs members without knowing what they are."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from training.launcher.launch import LaunchSettings, Outcome, Tell, launch
from training.run.files import JobFiles
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
        """A fold's members meet every fedavg round: in process they take turns."""
        return self.job.fold.index

    def run(self, hooks: Hooks = NO_HOOKS) -> dict[str, Any]:
        from training.member.member_training import run_job

        return run_job(self.job, hooks)

    def steps(self, hooks: Hooks = NO_HOOKS) -> Generator[None, None, dict[str, Any]]:
        from training.member.member_training import job_steps

        return job_steps(self.job, hooks)


def launch_members(jobs: list[Job], settings: LaunchSettings, tell: Tell) -> Outcome:
    """Train these members through the launcher, a job each (tests and benches)."""
    return launch([MemberRun(job) for job in jobs], settings, tell)
