"""The population learner: a fold's members in groups, each group one process with one batched
forward per rollout step and one batched PPO update (training.population); a sweep's trials with
the same shape train as one group, each trial's values per member."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from core.config import Config
from training.launcher.launch import LaunchSettings
from training.launcher.workload import Workload
from training.learners.fold_rounds import FoldRounds
from training.learners.learner import Between, Trained
from training.population.group_run import fold_groups
from training.population.limits import refuse_unbatched
from training.run.job import Hooks, Job


class PopulationLearner:
    name: Literal["population"] = "population"

    def refuse(self, config: Config) -> None:
        refuse_unbatched(config)

    def workloads(
        self, jobs: list[Job], settings: LaunchSettings, group_size: int
    ) -> list[Workload]:
        # Locally the groups fill the slots evenly; a SLURM array task (or this process) holds
        # one group of up to group_size, so there the fewest groups are made.
        slots = len(settings.slots) if settings.cluster == "local" else 1
        if not settings.rounds:
            return list(fold_groups(jobs, slots, group_size))
        # fedavg: a fold's groups are the tasks of one job, as few as the group size allows (the
        # more members a group holds, the more of the average is taken in memory); in process
        # the fold is one group.
        largest = group_size if settings.cluster != "debug" else len(jobs)
        folds: dict[int, list[tuple[Job, ...]]] = {}
        for group in fold_groups(jobs, 1, largest):
            folds.setdefault(group.jobs[0].fold.index, []).append(group.jobs)
        return [FoldRounds(tuple(units), grouped=True) for units in folds.values()]

    def train_for_validation(
        self,
        jobs: Sequence[Job],
        hooks: Hooks,
        member_hooks: Sequence[Hooks],
        between: Between | None = None,
    ) -> list[Trained]:
        """Each fold's jobs as one group, fold after fold (the caller sized the group)."""
        from training.population.group_training import train_group

        folds: dict[int, list[int]] = {}
        for index, job in enumerate(jobs):
            folds.setdefault(job.fold.index, []).append(index)
        done: dict[int, Trained] = {}
        for indices in folds.values():
            group = [jobs[i] for i in indices]
            members = train_group(group, hooks, [member_hooks[i] for i in indices], between)
            for index, member in zip(indices, members, strict=True):
                done[index] = Trained(member.job, member.state, member.error, member.left)
        return [done[index] for index in range(len(jobs))]

    def trials_at_once(self, group_size: int, seeds: int) -> int:
        """As many trials as the plan's group holds members of (each trial is `seeds` of them)."""
        return max(1, group_size // max(seeds, 1))
