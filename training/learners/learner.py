"""What a learner is to the rest of the program: what it refuses for a config, the launcher
workloads it makes of a run's member jobs (an ensemble), and how it trains a sweep's members on
the validation windows only. Ensembles, sweeps and fedavg reach a learner only through this."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.config import Config, LearnerName
from training.launcher.launch import LaunchSettings
from training.launcher.workload import Workload
from training.member.checkpoints import TrainingState
from training.run.job import Hooks, Job

Between = Callable[[Sequence[Any], Any, Any], None]
"""A group's work between two iterations (a PBT schedule): members, stacked policies, Adam."""


@dataclass(frozen=True)
class Trained:
    """What a sweep member's training came to: its state (validations), or why it ended early."""

    job: Job
    state: TrainingState | None
    error: str | None = None  # it failed (the others went on)
    left: str | None = None  # it left before its end (its trial was pruned), not a failure


class Learner(Protocol):
    @property
    def name(self) -> LearnerName: ...

    def refuse(self, config: Config) -> None:
        """A UserError with the fix for what this learner cannot run; nothing otherwise."""
        ...

    def workloads(
        self, jobs: list[Job], settings: LaunchSettings, group_size: int
    ) -> list[Workload]:
        """The run's member jobs as launcher workloads."""
        ...

    def train_for_validation(
        self,
        jobs: Sequence[Job],
        hooks: Hooks,
        member_hooks: Sequence[Hooks],
        between: Between | None = None,
    ) -> list[Trained]:
        """Train `jobs` in this process with validation and no test (a sweep's members): one
        `Trained` per job, in order. `hooks` are the process's, `member_hooks[i]` job i's."""
        ...

    def trials_at_once(self, group_size: int, seeds: int) -> int:
        """How many sweep trials one worker trains together (`group_size`: the plan's)."""
        ...
