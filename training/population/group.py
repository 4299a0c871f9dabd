"""Train a group of one fold's members in one process, then judge each out of sample.

Each member is what a separate member is (its SB3 model, checkpoints, state file, callback with
validation, early stopping, alarms and entropy floor, TensorBoard scalars, result.json); what the
group shares is the work: one vmapped policy forward per rollout step, one PPO update for all
(training.population.update), one validation walk and one test walk for all. A member that stops
early is frozen and leaves the batch; a member that fails is reported and the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.config import Config
from core.envs.settings import EnvSettings, env_settings
from core.features.store import FeatureStore
from training.member.callbacks import WalkForwardCallback
from training.member.checkpoints import TrainingState
from training.member.models import member_configs
from training.member.recovery import job_state
from training.member.trainer import member_callback, member_model, member_vec_env
from training.population.limits import refuse_unbatched
from training.run.job import Hooks, Job


@dataclass
class Member:
    """One member inside a group: its job, settings, model, callback and generators."""

    job: Job
    config: Config
    settings: EnvSettings
    model: Any
    callback: WalkForwardCallback
    state: TrainingState
    torch_rng: torch.Generator
    numpy_rng: np.random.RandomState
    total: int = 0  # the step count its training ends at
    error: str | None = None

    @property
    def training(self) -> bool:
        return (
            self.error is None
            and not self.state.finished
            and not self.callback.stop
            and self.model.num_timesteps < self.total
        )


def build_members(
    jobs: Sequence[Job], store: FeatureStore, hooks: Hooks, on_validate: Callable[[int], dict]
) -> list[Member]:
    """Every job's model as the separate trainer would build it; each member's generators take
    the global ones' state right after its model is built (what its own process would have)."""
    members = []
    for index, job in enumerate(jobs):
        config, _ = member_configs(job, store)
        if config.ensemble.mode == "fedavg":
            raise ValueError("fedavg members train with ensemble.learner separate")
        refuse_unbatched(config)
        settings = env_settings(config)
        vec = member_vec_env(job, store, settings)
        files = job.files
        member_hooks = _member_hooks(job, hooks)
        state = job_state(files, member_hooks.warn)
        model = member_model(job, config, store, vec, state, member_hooks)
        torch_rng = torch.Generator()
        torch_rng.set_state(torch.get_rng_state())
        numpy_rng = np.random.RandomState()
        numpy_rng.set_state(np.random.get_state())

        def validate(current: Any, index: int = index) -> dict[str, float]:
            return on_validate(index)

        callback = member_callback(job, config, files, state, member_hooks, validate)
        callback.preemption = None  # the group commits every member first, then requeues
        members.append(Member(job, config, settings, model, callback, state, torch_rng, numpy_rng))
    return members


def _member_hooks(job: Job, hooks: Hooks) -> Hooks:
    """The group's hooks as one member's: its steps count for the group and for its own line."""
    warn, advance, part = hooks.warn, hooks.advance, hooks.part
    name = f"member {job.member}"
    if part is not None:
        part(name, 0)  # every member has its line from the start

    def member_warn(message: str) -> None:
        if warn is not None:
            warn(f"{name}: {message}")

    def member_advance(steps: int) -> None:
        if advance is not None:
            advance(steps)
        if part is not None:
            part(name, steps)

    return Hooks(advance=member_advance, warn=member_warn)
