"""A job: one ensemble member on one walk-forward fold, as paths and small numbers.

Anything that runs jobs (this process, a submitit worker, a SLURM array task) pickles a `Job`,
never arrays: the job attaches the feature store by path and finds its files by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from core.bar_range import BarRange
from core.folds import Fold
from training.run.files import JobFiles, RunFiles


@dataclass(frozen=True)
class Job:
    """One member × fold: what to train, where, and with which resources."""

    run_dir: str
    store_path: str
    fold: Fold
    member: int
    seed: int
    timesteps: int
    vec_env: str
    n_envs: int
    n_steps: int
    batch_size: int
    device: str
    torch_threads: int
    blas_threads: int = 1
    risk_profile: str | None = None  # ensemble.risk_profiles key: its env and reward settings

    @property
    def name(self) -> str:
        return f"fold {self.fold.index} member {self.member}"

    @property
    def files(self) -> JobFiles:
        return RunFiles(Path(self.run_dir)).job(self.fold.index, self.member)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        fold = data["fold"]
        parts = {key: BarRange(**fold[key]) for key in ("train", "validation", "test")}
        return cls(**{**data, "fold": Fold(**{**fold, **parts})})


def jobs_by_fold(jobs: list[Job]) -> dict[int, list[Job]]:
    """{fold index: its jobs in member order}, folds in order."""
    folds: dict[int, list[Job]] = {}
    for job in sorted(jobs, key=lambda j: (j.fold.index, j.member)):
        folds.setdefault(job.fold.index, []).append(job)
    return folds


class Preemption(Protocol):
    """A request to stop (SLURM's USR2 before the limit), honoured at a safe point: after PPO's
    update, once the checkpoint of that moment is committed."""

    @property
    def requested(self) -> bool: ...

    @property
    def requeues(self) -> bool:
        """False: a stop for good (a local job's launcher is gone), not counted as preempted."""
        ...

    def requeue(self) -> None:
        """Hand over to the launcher's requeue (or exit, when it does not requeue); does not
        return."""


@dataclass(frozen=True)
class Hooks:
    """How a job reports to whoever runs it (a progress bar, a log); all optional."""

    advance: Callable[[int], None] | None = None  # timesteps just done
    warn: Callable[[str], None] | None = None
    phase: Callable[[str], None] | None = None  # "training", "testing", ...
    preemption: Preemption | None = None
    validated: Callable[[dict[str, float]], None] | None = None  # each validation's metrics
    part: Callable[[str, int], None] | None = None  # steps just done by one named part (a
    # group's member), for its own line on the live board
    left: Callable[[], str | None] | None = None  # why this member's training is over before
    # its end (a sweep's pruned trial), asked between rollouts; None: it goes on


class LeaveTraining(Exception):
    """Raised by a hook: this member's training ends here, and not as a failure (its sweep trial
    was pruned); the learner drops it and the others go on."""


NO_HOOKS = Hooks()
