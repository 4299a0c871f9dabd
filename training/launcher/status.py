"""The launcher's records: its settings, each workload's status, one launch as it goes."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.launcher.profile import ClusterProfile
from training.launcher.task import HEARTBEATS_PER_DEADLINE, Placement

QUEUE_POLL_S = 5.0  # squeue asks slurmctld: not more often than this


@dataclass(frozen=True)
class LaunchSettings:
    cluster: str  # local | slurm | debug
    folder: Path  # submitit's pickles and logs
    slots: tuple[Placement, ...]  # local: one per job allowed at once
    max_retries: int
    timeout_min: int
    signal_delay_s: int
    dead_after_s: float
    profile: ClusterProfile | None = None
    array_parallelism: int = 1
    rounds: bool = False  # a group's workloads meet at barriers: in process they take turns

    @property
    def queue_poll_s(self) -> float:
        return min(QUEUE_POLL_S, self.dead_after_s / HEARTBEATS_PER_DEADLINE)


@dataclass
class JobStatus:
    """One workload as the display shows it."""

    workload: Any
    state: str = "queued"  # queued | running | done | failed
    attempts: int = 0
    steps: int = 0
    phase: str = ""
    cluster_id: str = ""
    error: str = ""
    result: dict[str, Any] | None = None
    preemptions: int = 0
    parts: dict[str, int] = field(default_factory=dict)  # a group's members: steps of each

    @property
    def job(self) -> Any:
        """The record the workload runs (a member's Job), or the workload itself."""
        return getattr(self.workload, "job", self.workload)

    @property
    def name(self) -> str:
        return str(self.workload.name)


@dataclass(frozen=True)
class Outcome:
    statuses: list[JobStatus]

    @property
    def results(self) -> list[dict[str, Any]]:
        return [s.result for s in self.statuses if s.result is not None]

    @property
    def failures(self) -> dict[str, str]:
        return {s.name: s.error for s in self.statuses if s.state == "failed"}


Tell = Callable[[list[JobStatus], str | None], None]  # (statuses, event line or None)


@dataclass
class Running:
    """One launch as it goes: what waits, what runs, who is told."""

    settings: LaunchSettings
    statuses: list[JobStatus]
    tell: Tell
    waiting: deque[JobStatus] = field(default_factory=deque)
    running: list[Attempt] = field(default_factory=list)


@dataclass
class Attempt:
    """One submission of a job, as the launch loop watches it."""

    status: JobStatus
    handle: Any  # a submitit Job
    slot: int | None
    submitted: float
    running_since: float | None = None
    missing_since: float | None = None
