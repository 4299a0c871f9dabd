"""The members of one group: each is what a separate member is (built by the same
`build_member`: its SB3 model, checkpoints, state file, callback with validation, early stopping,
alarms and entropy floor, TensorBoard scalars), plus the generators its own process would have.
What the group shares is the work (training.population.loop)."""

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
from training.member.member_build import build_member
from training.member.models import member_configs
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
    hooks: Hooks
    total: int = 0  # the step count its training ends at
    error: str | None = None
    left: str | None = None  # why it left the group before its end (a pruned sweep trial)

    @property
    def training(self) -> bool:
        return (
            self.error is None
            and self.left is None
            and not self.state.finished
            and not self.callback.stop
            and self.model.num_timesteps < self.total
        )


def build_members(
    jobs: Sequence[Job],
    store: FeatureStore,
    hooks: Sequence[Hooks],
    on_validate: Callable[[int], dict],
) -> list[Member]:
    """Every job's member as the separate learner builds it (`hooks[i]` is job i's); each
    member's generators take the global ones' state right after its model is built (what its own
    process would have). What a group cannot run was refused before (training.learners)."""
    members = []
    for index, job in enumerate(jobs):
        config, _ = member_configs(job, store)
        settings = env_settings(config)
        member_hooks = _member_hooks(job, hooks[index])

        def validate(current: Any, index: int = index) -> dict[str, float]:
            return on_validate(index)

        built = build_member(job, config, settings, store, member_hooks, validate)
        torch_rng = torch.Generator()
        torch_rng.set_state(torch.get_rng_state())
        numpy_rng = np.random.RandomState()
        numpy_rng.set_state(np.random.get_state())
        built.callback.preemption = None  # the group commits every member first, then requeues
        members.append(
            Member(job, config, settings, built.model, built.callback, built.state, torch_rng,
                   numpy_rng, member_hooks)
        )  # fmt: skip
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

    return Hooks(
        advance=member_advance, warn=member_warn, validated=hooks.validated, left=hooks.left
    )
