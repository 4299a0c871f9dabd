"""The separate learner: one SB3 learn() per member, each its own launcher job (a fedavg fold:
one multi-task job, a task a member); a sweep's members train one after another."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from core.config import Config
from training.launcher.launch import LaunchSettings
from training.launcher.workload import Workload
from training.learners.fold_rounds import FoldRounds
from training.learners.learner import Between, Trained
from training.member.member_run import MemberRun
from training.run.job import Hooks, Job, LeaveTraining, jobs_by_fold


class SeparateLearner:
    name: Literal["separate"] = "separate"

    def refuse(self, config: Config) -> None:
        """SB3's own learn() runs every config the rest of the program accepts."""

    def workloads(
        self, jobs: list[Job], settings: LaunchSettings, group_size: int
    ) -> list[Workload]:
        if settings.rounds and settings.cluster != "debug":  # debug: a fold's members take turns
            folds = jobs_by_fold(jobs).values()
            return [FoldRounds(tuple((job,) for job in fold), grouped=False) for fold in folds]
        return [MemberRun(job) for job in jobs]

    def train_for_validation(
        self,
        jobs: Sequence[Job],
        hooks: Hooks,
        member_hooks: Sequence[Hooks],
        between: Between | None = None,
    ) -> list[Trained]:
        """One job after another; once one leaves (its trial pruned), the jobs its hooks say are
        over too are skipped, untrained."""
        from training.member.member_training import train_only

        if between is not None:
            raise ValueError("the separate learner has no group to schedule")
        trained = []
        for job, own in zip(jobs, member_hooks, strict=True):
            gone = own.left() if own.left is not None else None
            if gone is not None:
                trained.append(Trained(job, None, left=gone))
                continue
            try:
                trained.append(Trained(job, train_only(job, own)))
            except LeaveTraining as leaving:
                trained.append(Trained(job, None, left=str(leaving) or "left"))
            except Exception as error:  # this member's failure (its trial's values can make a
                # config that cannot train: a UserError too): recorded, the others go on
                trained.append(Trained(job, None, error=f"{type(error).__name__}: {error}"))
        return trained

    def trials_at_once(self, group_size: int, seeds: int) -> int:
        """One: a trial's members train one after another, so the sampler sees each result
        before it proposes the next trial."""
        return 1
