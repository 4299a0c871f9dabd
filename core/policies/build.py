"""The SB3 algorithm, policy class and policy_kwargs a config trains: one place, so training,
resuming, fusing and judging build the same network."""

from __future__ import annotations

import importlib
from typing import Any

from core.config import Config
from core.policies.layout import ObservationLayout
from core.policies.registry import EXTRACTORS


def is_recurrent(config: Config) -> bool:
    return EXTRACTORS[config.policy.extractor].recurrent


def algorithm_class(config: Config) -> Any:
    """training.algorithm's class: PPO (sb3-contrib's RecurrentPPO for a recurrent extractor),
    SAC, or sb3-contrib's TQC (each imported only when chosen)."""
    algorithm = config.training.algorithm
    if algorithm == "sac":
        from stable_baselines3 import SAC

        return SAC
    if algorithm == "tqc":
        from sb3_contrib import TQC

        return TQC
    if is_recurrent(config):
        from sb3_contrib import RecurrentPPO

        return RecurrentPPO
    from stable_baselines3 import PPO

    return PPO


def policy_arguments(config: Config, layout: ObservationLayout) -> tuple[Any, dict[str, Any]]:
    """(policy name or class, policy_kwargs) for SB3, as the registry describes the extractor:
    `flat` is SB3's own MultiInputPolicy (the control); the others put an extractor in front of
    the ppo.net_arch heads, shared by actor and critic when policy.share_extractor (one forward
    and backward instead of two). SAC and TQC take the same: their actor and critics get the
    ppo.net_arch heads; TQC's critics also its quantiles."""
    options = config.policy
    spec = EXTRACTORS[options.extractor]
    kwargs: dict[str, Any] = {"net_arch": list(config.ppo.net_arch)}
    if spec.extractor is None:
        return "MultiInputPolicy", kwargs | _critic_arguments(config)
    kwargs["share_features_extractor"] = options.share_extractor
    kwargs["features_extractor_class"] = _load(spec.extractor)
    kwargs["features_extractor_kwargs"] = layout.as_kwargs() | {
        key: getattr(options, key) for key in spec.keys
    }
    if spec.recurrent:
        kwargs["lstm_hidden_size"] = options.lstm_hidden
        kwargs["n_lstm_layers"] = options.lstm_layers
    policy = _load(spec.policy) if spec.policy else "MultiInputPolicy"
    return policy, kwargs | _critic_arguments(config)


def _critic_arguments(config: Config) -> dict[str, Any]:
    if config.training.algorithm != "tqc":
        return {}
    return {"n_quantiles": config.tqc.n_quantiles, "n_critics": config.tqc.n_critics}


def _load(path: str) -> Any:
    """'module:Class' from the registry, imported when a model is built (torch loads then)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
