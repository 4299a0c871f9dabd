"""A group's job: train every unfinished member together, test each, record each; members already
done (a resumed or retried group) are read back and skipped."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from core.evaluation.judge import annualisation_of
from core.features.store import FeatureStore
from training.member.models import member_configs
from training.population.group_members import Member
from training.population.judging import test_members
from training.population.limits import refuse_unbatched
from training.population.loop import Between, train_members
from training.run.job import Hooks, Job
from training.run.records import read_job_result

if TYPE_CHECKING:
    from training.fedavg.meeting import Meeting


def run_group(jobs: Sequence[Job], hooks: Hooks, meeting: Meeting | None = None) -> dict[str, Any]:
    """Train, test and record every unfinished member; return {member: result} of all.
    `meeting`: fedavg's (the group averages there every round)."""
    torch.set_num_threads(jobs[0].torch_threads)
    store = FeatureStore.attach(jobs[0].store_path)
    results: dict[int, Any] = {}
    pending = []
    for job in jobs:
        if job.files.result.exists():
            results[job.member] = read_job_result(job.files)
            if hooks.advance:
                hooks.advance(results[job.member]["timesteps"])
        else:
            pending.append(job)
    if pending:
        for job in pending:  # refused before launch too; a SLURM task checks its own members
            refuse_unbatched(member_configs(job, store)[0])
        annual = annualisation_of(store, member_configs(pending[0], store)[1])
        started = time.perf_counter()
        members = train_members(pending, store, annual, hooks, meeting=meeting)
        for member, result in test_members(members, store, annual, hooks).items():
            results[member] = result
        print(
            f"group of {len(pending)} trained and tested in {time.perf_counter() - started:.1f} s"
        )
        failed = {m.job.member: m.error for m in members if m.error is not None}
        if failed:
            raise RuntimeError(
                "member(s) failed inside the group (the others are saved): "
                + "; ".join(f"member {k}: {why}" for k, why in failed.items())
            )
    return {"members": results, "timesteps": sum(r["timesteps"] for r in results.values())}


def train_group(
    jobs: Sequence[Job],
    hooks: Hooks,
    member_hooks: Sequence[Hooks],
    between: Between | None = None,
) -> list[Member]:
    """A sweep's members of one fold and one shape: trained together with validation, never
    tested (a sweep does not read the test window); `member_hooks[i]` report for job i."""
    torch.set_num_threads(jobs[0].torch_threads)
    store = FeatureStore.attach(jobs[0].store_path)
    for job in jobs:
        refuse_unbatched(member_configs(job, store)[0])
    annual = annualisation_of(store, member_configs(jobs[0], store)[1])
    return train_members(jobs, store, annual, hooks, member_hooks, between)
