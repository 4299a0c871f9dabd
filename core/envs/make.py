"""The notebook entry points: `make_env` and `make_trading_vec_env` from loose arguments.

`make_trading_vec_env(n_envs, kind=...)` is named apart from SB3's `make_vec_env(env_id, ...)`,
whose arguments differ, so that importing both never shadows one with the other. The env of a
finished run (its config and feature store) is `training.member.run_env.make_run_env(run=RUN_DIR)`:
the run folder's layout belongs to training/, which core does not import.

Notebooks call `make_env(fee_bps=5, window=16)`: plain names of env and reward keys, checked
like config files are (an unknown name is an error with a suggestion; a bad value says what is
allowed). Data may be a FeatureStore, a store folder, a dataset folder (its store is built or
reused), or nothing (the generated sample dataset). Code that already holds a store, settings and
a bar range (the trainer) calls `core.envs.vec_env.vec_env` and resolves nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stable_baselines3.common.vec_env import VecEnv

from core.bar_range import BarRange
from core.config import Config, EnvConfig, RewardConfig, load_config, validate
from core.envs.settings import EnvSettings, env_settings
from core.envs.trading_env import TradingEnv
from core.envs.vec_env import VecKind, vec_env
from core.features.build import feature_store
from core.features.resolved import with_inferred
from core.features.store import FeatureStore, read_meta
from core.suggest import did_you_mean

SECTIONS: dict[str, type[EnvConfig] | type[RewardConfig]] = {
    "env": EnvConfig,
    "reward": RewardConfig,
}
OVERRIDABLE = {name: section for section, model in SECTIONS.items() for name in model.model_fields}


def resolve_config(config: Config | None, overrides: dict[str, Any]) -> Config:
    """The config with plain-name overrides applied to its env and reward sections."""
    config = config if config is not None else load_config()
    if not overrides:
        return config
    unknown = [name for name in overrides if name not in OVERRIDABLE]
    if unknown:
        name = unknown[0]
        raise TypeError(
            f"unknown env setting {name!r}{did_you_mean(name, OVERRIDABLE)}\n  valid settings: {', '.join(sorted(OVERRIDABLE))}"
        )
    raw = config.model_dump()
    for name, value in overrides.items():
        raw[OVERRIDABLE[name]][name] = value
    sources = {f"{OVERRIDABLE[name]}.{name}": f"{name}=" for name in overrides}
    return validate(raw, sources)


def resolve_store(config: Config, data: FeatureStore | str | Path | None) -> FeatureStore:
    if isinstance(data, FeatureStore):
        return data
    if data is not None:
        path = Path(data).expanduser()
        if read_meta(path) is not None:
            return FeatureStore.attach(path)
        config = config.model_copy(
            update={"data": config.data.model_copy(update={"path": str(path)})}
        )
    return feature_store(config)[0]


def resolve_range(fold: Any, store: FeatureStore, window: int) -> BarRange:
    """None = every bar that has a full window; else (start, stop), a slice or a `.start/.stop`."""
    if fold is None:
        return BarRange(window - 1, len(store.timestamps))
    if isinstance(fold, BarRange):
        return fold
    if isinstance(fold, tuple) and len(fold) == 2:
        start, stop = fold
    elif hasattr(fold, "start") and hasattr(fold, "stop"):
        start, stop = fold.start, fold.stop
    else:
        raise TypeError(
            f"fold must be None, (start, stop) bar indices, a slice or an object with "
            f".start/.stop; got {type(fold).__name__}"
        )
    n_time = len(store.timestamps)
    return BarRange(0 if start is None else int(start), n_time if stop is None else int(stop))


def make_env(
    config: Config | None = None,
    data: FeatureStore | str | Path | None = None,
    fold: Any = None,
    seed: int | None = 0,
    **overrides: Any,
) -> TradingEnv:
    """One TradingEnv. `fold`: None (every bar), (start, stop), a slice or a `.start/.stop`."""
    return TradingEnv(*_env_parts(config, data, fold, overrides), seed)


def make_trading_vec_env(
    n_envs: int,
    kind: VecKind = "batch",
    config: Config | None = None,
    data: FeatureStore | str | Path | None = None,
    fold: Any = None,
    seed: int | None = 0,
    **overrides: Any,
) -> VecEnv:
    """K envs; env k is seeded `seed + k` at its first reset, whatever the kind."""
    store, settings, bars = _env_parts(config, data, fold, overrides)
    return vec_env(n_envs, kind, store, settings, bars, seed)


def _env_parts(
    config: Config | None, data: FeatureStore | str | Path | None, fold: Any, overrides: dict
) -> tuple[FeatureStore, EnvSettings, BarRange]:
    config = resolve_config(config, overrides)
    store = resolve_store(config, data)
    settings = env_settings(
        with_inferred(config, store.meta)
    )  # `auto` keys as the store built them
    return store, settings, resolve_range(fold, store, config.env.window)
