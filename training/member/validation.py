"""A model judged on a validation window: the score checkpoints are ranked by, for training, the
fedavg rounds and the fused model alike."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.bar_range import BarRange
from core.config import Config
from core.envs.settings import EnvSettings
from core.evaluation.judge import AGENT, score, track_metrics
from core.evaluation.metrics import Annualisation, return_moments
from core.evaluation.rollout import Track, rollout
from core.features.store import FeatureStore
from training.member.models import agent_policy


def validation_metrics(
    model: Any,
    store: FeatureStore,
    settings: EnvSettings,
    bars: BarRange,
    annual: Annualisation,
    config: Config,
) -> dict[str, float]:
    """A model's deterministic walk over a validation window: the score checkpoints are ranked
    by, and the per-bar Sharpe the Deflated Sharpe Ratio counts as a trial."""
    track = rollout(store, settings, bars, {AGENT: agent_policy(model)})[AGENT]
    return track_validation(track, annual, config)


def track_validation(track: Track, annual: Annualisation, config: Config) -> dict[str, float]:
    """The validation metrics of a walk already made (a group walks its members together)."""
    values = track_metrics(track, annual)
    picked = {key: values[key] for key in ("sharpe", "total_return", "max_drawdown", "trades")}
    sharpe_per_bar = values["sharpe"] / np.sqrt(annual.periods_per_year)
    skew, kurtosis = return_moments(track.returns) if len(track.returns) else (0.0, 3.0)
    return picked | {
        "score": score(track, annual, config.training.validation_metric),
        "sharpe_per_bar": float(sharpe_per_bar),
        "bars": len(track.returns),
        "skew": skew,
        "kurtosis": kurtosis,
    }
