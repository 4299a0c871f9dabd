"""A group of one fold's members as one launcher workload: how a run's folds are cut into
groups, and which groups a resumed run must run again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.atomic import read_json, write_json
from core.hardware.groups import group_sizes, groups_per_fold
from training.run.files import JobFiles, RunFiles
from training.run.job import NO_HOOKS, Hooks, Job, jobs_by_fold


@dataclass(frozen=True)
class GroupRun:
    """Members of one fold trained together (training.launcher.workload's Workload)."""

    jobs: tuple[Job, ...]

    @property
    def name(self) -> str:
        members = [job.member for job in self.jobs]
        fold = self.jobs[0].fold.index
        if len(members) == 1:
            return f"fold {fold} member {members[0]}"
        return f"fold {fold} members {members[0]}-{members[-1]}"

    @property
    def files(self) -> JobFiles:
        first = self.jobs[0]
        return RunFiles(Path(first.run_dir)).group(first.fold.index, first.member)

    @property
    def timesteps(self) -> int:
        return sum(job.timesteps for job in self.jobs)

    @property
    def blas_threads(self) -> int:
        return self.jobs[0].blas_threads

    @property
    def torch_threads(self) -> int:
        return self.jobs[0].torch_threads

    def run(self, hooks: Hooks = NO_HOOKS) -> dict[str, Any]:
        from training.population.group_training import run_group

        result = run_group(self.jobs, hooks)
        write_json(self.files.result, result)
        return result


def reopen_groups(run_dir: Path) -> list[str]:
    """Drop the summary (group.json) of a group that a resumed run must run again: one that is
    unreadable, or that names a member whose result.json is gone. The launcher takes a group
    with a summary for done, and the group's own run skips the members that have results."""
    files = RunFiles(run_dir)
    lines = []
    for summary in sorted(files.folds.glob("fold_*/group_*/group.json")):
        fold = int(summary.parent.parent.name.split("_")[1])
        members = (read_json(summary) or {}).get("members")
        if not isinstance(members, dict):
            why = "cannot be read"
        else:
            lost = [m for m in sorted(map(int, members)) if not files.job(fold, m).result.exists()]
            if not lost:
                continue
            why = f"names member(s) {', '.join(map(str, lost))} without a result.json"
        summary.unlink()
        lines.append(f"{summary} {why}: that group runs again for its unfinished members")
    return lines


def fold_groups(jobs: list[Job], slots: int, largest: int) -> list[GroupRun]:
    """Each fold's members cut into groups of at most `largest`, as many as fill `slots` evenly
    over the run (core.hardware.groups), in fold order."""
    folds = jobs_by_fold(jobs)
    members = max(len(fold) for fold in folds.values())
    count = groups_per_fold(members, len(folds), slots, largest)
    groups = []
    for fold_jobs in folds.values():
        start = 0
        for size in group_sizes(len(fold_jobs), min(count, len(fold_jobs))):
            groups.append(GroupRun(tuple(fold_jobs[start : start + size])))
            start += size
    return groups
