"""What the population learner cannot run exactly, in one place: refused by name with the fix,
before any job (training.learners) and again in the group's own process, never silently
ignored (docs/population.md). A light module: the launching process reads it."""

from __future__ import annotations

from core.config import Config
from core.errors import UserError
from core.policies.registry import EXTRACTORS


def refuse_unbatched(config: Config) -> None:
    """What the population learner cannot run exactly, refused by name (never ignored)."""
    fix = "set ensemble.learner=separate (one SB3 learn() per member)"
    if config.training.algorithm != "ppo":
        raise UserError(
            f"training.algorithm={config.training.algorithm} cannot train with the population "
            "learner: it batches PPO's rollouts and update, not an off-policy replay\n"
            f"  fix: {fix}, or ensemble.learner=auto (which picks separate)"
        )
    if config.ppo.use_sde:
        raise UserError(
            "ppo.use_sde=true cannot train with the population learner: its batched rollout "
            "samples diagonal Gaussian noise per step, not state-dependent exploration\n"
            f"  fix: {fix}, or ppo.use_sde=false"
        )
    if config.training.callbacks:
        raise UserError(
            f"training.callbacks ({', '.join(config.training.callbacks)}) cannot run with the "
            "population learner: it drives its members' rollouts itself and calls no per-step "
            f"callback hook\n  fix: {fix}, or remove training.callbacks"
        )
    if config.ensemble.mode == "fedavg" and config.ensemble.sync_optimizer == "reset":
        raise UserError(
            "ensemble.sync_optimizer=reset cannot train with the population learner: its stacked "
            "Adam keeps every member's moments across rounds\n"
            f"  fix: {fix}, or ensemble.sync_optimizer=keep"
        )
    if EXTRACTORS[config.policy.extractor].recurrent:
        raise UserError(
            f"policy.extractor={config.policy.extractor} cannot train with the population "
            f"learner: RecurrentPPO's update is not batched\n  fix: {fix}"
        )
