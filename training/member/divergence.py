"""A diverged PPO member said plainly: which weights went non-finite, after which step, in which
job, and what to change. Without this check the next rollout fails inside torch.distributions
with "Expected parameter loc ... found invalid values" and a dump of NaN tensors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from core.config import Config
from core.errors import UserError

SHOWN_WEIGHTS = 3  # names of non-finite parameters a message lists
TORCH_INVALID = "found invalid values"  # torch.distributions' argument validation


class DivergedError(UserError):
    """A member's training went non-finite; the same settings would diverge again (no retry)."""


def nonfinite_weights(policy: torch.nn.Module) -> list[str]:
    """Names of the policy's parameters holding NaN or inf."""
    with torch.no_grad():
        return [name for name, p in policy.named_parameters() if not torch.isfinite(p).all()]


def diverged_message(who: str, step: int, weights: list[str], config: Config) -> str:
    shown = ", ".join(weights[:SHOWN_WEIGHTS])
    more = f" and {len(weights) - SHOWN_WEIGHTS} more" if len(weights) > SHOWN_WEIGHTS else ""
    return (
        f"{who}: PPO diverged: the update after step {step:,} left non-finite (NaN/inf) weights "
        f"in {shown}{more}\n  fix: {_fix(config)}"
    )


def check_finite(model: Any, who: str, config: Config) -> None:
    """Raise DivergedError when the model's weights are no longer finite."""
    weights = nonfinite_weights(model.policy)
    if weights:
        raise DivergedError(diverged_message(who, model.num_timesteps, weights, config))


@contextlib.contextmanager
def said_when_nonfinite(model: Any, who: str, config: Config) -> Iterator[None]:
    """torch's invalid-values error during training as one message: diverged weights, or, with
    finite weights, non-finite inputs reaching the policy."""
    try:
        yield
    except ValueError as error:
        if TORCH_INVALID not in str(error):
            raise
        check_finite(model, who, config)
        raise DivergedError(
            f"{who}: the policy's action distribution went non-finite (NaN/inf) at step "
            f"{model.num_timesteps:,} with finite weights: its observations are not finite\n"
            "  fix: check the data (--check-data) and rebuild the feature store (delete its "
            f"folder under data.cache_dir); or {_fix(config)}"
        ) from None


def _fix(config: Config) -> str:
    ppo, reward = config.ppo, config.reward
    return (
        f"lower ppo.learning_rate (now {_setting(ppo.learning_rate)}) or ppo.max_grad_norm (now "
        f"{ppo.max_grad_norm:g}), or reward.reward_scale (now {reward.reward_scale:g}) or "
        f"reward.reward_clip (now {reward.reward_clip:g})"
    )


def _setting(value: float | str) -> str:
    """A number as the config shows it (1, not 1.0), a schedule such as lin_3e-4 as written."""
    return f"{value:g}" if isinstance(value, float | int) else str(value)
