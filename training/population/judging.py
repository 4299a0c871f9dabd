"""A group's members judged on their fold's test window: every member's tested checkpoint walks
the window together, the baselines that do not depend on an agent walk once for the group, and
each member's result.json and tracks are written as the separate trainer writes them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.evaluation.judge import with_baselines
from core.evaluation.metrics import Annualisation
from core.evaluation.walks import walk_members
from core.features.store import FeatureStore
from core.policies.stacked import StackedPolicies
from training.member.checkpoints import load_tested
from training.member.member_training import job_result
from training.population.group_members import Member
from training.run.job import Hooks
from training.run.records import JobResult, write_job_result
from training.run.tracks import save_tracks


def tested_model(member: Member) -> Any:
    """training.select best: the best validation checkpoint (when there is one), else the last."""
    state, job = member.state, member.job
    if member.config.training.select == "best" and state.best_checkpoint:
        return load_tested(job, "best", job.device, state)
    return member.model


def test_members(
    members: Sequence[Member], store: FeatureStore, annual: Annualisation, hooks: Hooks
) -> dict[int, JobResult]:
    """{member number: result} of every member that did not fail."""
    if hooks.phase:
        hooks.phase("testing")
    alive = [member for member in members if member.error is None and member.left is None]
    profiles: dict[str | None, list[Member]] = {}
    for member in alive:
        profiles.setdefault(member.job.risk_profile, []).append(member)
    results: dict[int, JobResult] = {}
    for group in profiles.values():
        stacked = StackedPolicies([tested_model(member).policy for member in group])
        first = group[0]
        bars = first.job.fold.test_walk
        agents = walk_members(store, first.settings, bars, stacked, range(len(group)))
        seeds = [member.job.seed for member in group]
        judged = with_baselines(store, first.settings, bars, agents, first.config, seeds)
        for member, tracks in zip(group, judged, strict=True):
            result = job_result(member.job, annual, member.state, tracks)
            save_tracks(member.job.files.tracks, tracks)
            write_job_result(member.job.files, result)
            results[member.job.member] = result
    return results
