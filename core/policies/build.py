"""The SB3 algorithm, policy class and policy_kwargs a config trains: one place, so training,
resuming, fusing and judging build the same network."""

from __future__ import annotations

from typing import Any

from core.config import Config
from core.policies.layout import ObservationLayout

RECURRENT = "lstm"


def is_recurrent(config: Config) -> bool:
    return config.policy.extractor == RECURRENT


def algorithm_class(config: Config) -> Any:
    """PPO, or sb3-contrib's RecurrentPPO for `lstm` (imported only then)."""
    if is_recurrent(config):
        from sb3_contrib import RecurrentPPO

        return RecurrentPPO
    from stable_baselines3 import PPO

    return PPO


def policy_arguments(config: Config, layout: ObservationLayout) -> tuple[Any, dict[str, Any]]:
    """(policy name or class, policy_kwargs) for SB3: `flat` is SB3's own MultiInputPolicy (the
    control); the others put an extractor in front of the ppo.net_arch heads, shared by actor and
    critic when policy.share_extractor (one forward and backward instead of two)."""
    settings = config.policy
    kwargs: dict[str, Any] = {"net_arch": list(config.ppo.net_arch)}
    if settings.extractor == "flat":
        return "MultiInputPolicy", kwargs
    kwargs["share_features_extractor"] = settings.share_extractor
    if settings.extractor == "multi_timeframe_cnn":
        from core.policies.multi_timeframe_cnn import MultiTimeframeCNN

        kwargs["features_extractor_class"] = MultiTimeframeCNN
        kwargs["features_extractor_kwargs"] = layout.as_kwargs() | {
            "channels": settings.channels,
            "kernel": settings.kernel,
            "embedding": settings.embedding,
        }
        return "MultiInputPolicy", kwargs
    from core.policies.shared_asset import SharedAssetExtractor

    kwargs["features_extractor_class"] = SharedAssetExtractor
    kwargs["features_extractor_kwargs"] = layout.as_kwargs() | {
        "channels": settings.channels,
        "patch": settings.patch,
        "embedding": settings.embedding,
    }
    if settings.extractor == RECURRENT:  # the shared-asset encoder feeds the LSTM
        from core.policies.recurrent import EpisodeStartLstmPolicy

        kwargs["lstm_hidden_size"] = settings.lstm_hidden
        kwargs["n_lstm_layers"] = settings.lstm_layers
        return EpisodeStartLstmPolicy, kwargs
    return "MultiInputPolicy", kwargs
