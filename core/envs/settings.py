"""What an env needs besides the store, small enough to pickle into every worker."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import Config, EnvConfig, RewardConfig


@dataclass(frozen=True)
class EnvSettings:
    """What an env needs besides the store: picklable and small."""

    env: EnvConfig
    reward: RewardConfig
    timeframes: tuple[str, ...]  # trade counters over these trailing windows


def env_settings(config: Config) -> EnvSettings:
    return EnvSettings(config.env, config.reward, tuple(config.features.timeframes))
