"""A finished fold's agents, loaded for a replay: each member's tested checkpoint, the ensemble
of them, and (fedavg) the fused model; and their walks over any bars of a store shaped like
the run's.

Each one walks with the code that made the run's test tracks, because the batched (vmapped)
forward and SB3's `predict` round the same network differently in the last bits: members of a
population group with one stacked forward (training.population.judging), members trained
alone with `predict` (training.member.member_training), the ensemble and the fused model as
training.post does. So a replay of the run's own test bars gives its numbers exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import read_json
from core.bar_range import BarRange
from core.config import Config
from core.envs.settings import env_settings
from core.errors import UserError
from core.evaluation.judge import evaluate_window, with_baselines
from core.evaluation.rollout import Track
from core.evaluation.walks import walk_members
from core.features.store import FeatureStore
from training.member.checkpoints import load_tested
from training.member.models import agent_policy, load_model, member_configs, recurrent
from training.post.ensemble import ensemble_policy
from training.run.files import RunFiles
from training.run.folder import run_config
from training.run.job import Job, jobs_by_fold
from training.run.records import read_job_result


@dataclass(frozen=True)
class FoldAgents:
    """One fold's finished members (job, model, config, result) and, in fedavg, its fused model."""

    index: int
    jobs: list[Job]
    models: list[Any]
    configs: list[Config]  # each member's (a risk profile may change its settings)
    results: list[dict[str, Any]]  # each member's result.json
    population: list[bool]  # trained in a population group: walked with the stacked forward
    all_members: list[int]  # the fold's members, finished or not
    config: Config  # the run's, resolved for the replay's store
    fused: Any | None = None

    @property
    def kind(self) -> str:
        if self.fused is not None:
            return "fused model"
        return "member" if len(self.models) == 1 else f"ensemble ({self.config.ensemble.aggregate})"


def finished_folds(run_dir: Path, jobs: list[Job]) -> dict[int, list[Job]]:
    """{fold: its finished members}, folds with none left out; a run with none is refused."""
    by_fold = {
        index: [job for job in members if job.files.result.exists()]
        for index, members in jobs_by_fold(jobs).items()
    }
    done = {index: members for index, members in by_fold.items() if members}
    files = RunFiles(run_dir)
    done = {i: m for i, m in done.items() if files.ensemble_tracks(i).exists()}
    if not done:
        raise UserError(
            f"{run_dir} has no finished fold (no member with a result and its fold's ensemble "
            "tracks)\n  fix: finish the run first: ./start_training.sh --resume "
            f"{run_dir}"
        )
    return done


def load_fold_agents(
    run_dir: Path, index: int, jobs: list[Job], everyone: list[Job], store: FeatureStore
) -> FoldAgents:
    """The fold's tested checkpoints on `store` (FOLDER's, shaped like the run's)."""
    import torch

    # One decision a bar through small networks: one thread is fastest (more only contend);
    # the commands also export the limit before numpy loads (training.commands.replay).
    torch.set_num_threads(1)
    run = run_config(run_dir)
    members = [member_configs(job, store)[0] for job in jobs]
    models = [load_tested(job, run.training.select, store=store) for job in jobs]
    fused = None
    files = RunFiles(run_dir)
    if run.ensemble.mode == "fedavg":
        if not files.fused_model(index).exists():
            raise UserError(
                f"fold {index} of {run_dir} has no fused model ({files.fused_model(index)})\n"
                f"  fix: finish the run first: ./start_training.sh --resume {run_dir}"
            )
        fused = load_model(members[0], files.fused_model(index), store, "cpu")
    grouped = _population_members(files, index)
    return FoldAgents(
        index=index,
        jobs=jobs,
        models=models,
        configs=members,
        results=[read_job_result(job.files) for job in jobs],
        population=[job.member in grouped for job in jobs],
        all_members=sorted(job.member for job in everyone if job.fold.index == index),
        config=member_configs(jobs[0], store)[1],
        fused=fused,
    )


def _population_members(files: RunFiles, index: int) -> set[int]:
    """Members of the fold that a population group trained (its group.json lists them)."""
    found: set[int] = set()
    for summary in files.fold(index).glob("group_*/group.json"):
        members = (read_json(summary) or {}).get("members")
        if isinstance(members, dict):
            found |= {int(m) for m in members}
    return found


@dataclass(frozen=True)
class FoldWalks:
    """A fold's agents walked over one window: tracks per member, the ensemble's and the fused
    model's, each with its baselines."""

    members: dict[int, dict[str, Track]]
    ensemble: dict[str, Track]
    fused: dict[str, Track] | None


def walk_fold(agents: FoldAgents, store: FeatureStore, bars: BarRange) -> FoldWalks:
    members = _walk_members(agents, store, bars)
    if len(agents.models) == 1:  # the ensemble of one member is that member (training.post)
        ensemble = members[agents.jobs[0].member]
    else:
        policy = ensemble_policy(agents.models, agents.config.ensemble.aggregate)
        ensemble = _judged(agents, store, bars, policy)
    fused = (
        None if agents.fused is None else _judged(agents, store, bars, agent_policy(agents.fused))
    )
    return FoldWalks(members, ensemble, fused)


def _judged(
    agents: FoldAgents, store: FeatureStore, bars: BarRange, policy: Any
) -> dict[str, Track]:
    config = agents.config
    return evaluate_window(store, env_settings(config), bars, policy, config, agents.jobs[0].seed)


def _walk_members(
    agents: FoldAgents, store: FeatureStore, bars: BarRange
) -> dict[int, dict[str, Track]]:
    """Each member alone: population members in one stacked walk per risk profile (as their
    group judged them), the others with `predict`, each with its own config and seed."""
    walked: dict[int, dict[str, Track]] = {}
    stacked: dict[str | None, list[int]] = {}
    for k, job in enumerate(agents.jobs):
        if agents.population[k] and not recurrent(agents.models[k]):
            stacked.setdefault(job.risk_profile, []).append(k)
            continue
        config = agents.configs[k]
        policy = agent_policy(agents.models[k])
        walked[job.member] = evaluate_window(
            store, env_settings(config), bars, policy, config, job.seed
        )
    from core.policies.stacked import StackedPolicies

    for group in stacked.values():
        config = agents.configs[group[0]]
        settings = env_settings(config)
        policies = StackedPolicies([agents.models[k].policy for k in group])
        tracks = walk_members(store, settings, bars, policies, range(len(group)))
        seeds = [agents.jobs[k].seed for k in group]
        judged = with_baselines(store, settings, bars, tracks, config, seeds)
        for k, tracks_k in zip(group, judged, strict=True):
            walked[agents.jobs[k].member] = tracks_k
    return {job.member: walked[job.member] for job in agents.jobs}


def run_rows(run_dir: Path, index: int) -> dict[str, np.ndarray]:
    """The run's own test walk of fold `index`: its rows and (runs since decisions are
    recorded) decision times, read alone from the ensemble tracks file."""
    with np.load(RunFiles(run_dir).ensemble_tracks(index)) as tracks:
        return {key: tracks[key] for key in ("timestamp", "decision_timestamp") if key in tracks}
