"""Turn the loose arguments of `make_env` / `make_vec_env` into a store, settings and a bar range.

Notebooks call `make_env(fee_bps=5, window=16)`: plain names of env and reward keys, checked
like config files are (an unknown name is an error with a suggestion; a bad value says what is
allowed). Data may be a FeatureStore, a store folder, a dataset folder (its store is built or
reused), or nothing (the generated sample dataset).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import Config, EnvConfig, RewardConfig, load_config, validate
from core.datasets import feature_store
from core.simulator import BarRange, Settings
from core.store import FeatureStore, read_meta

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
        close = difflib.get_close_matches(name, list(OVERRIDABLE), n=1, cutoff=0.6)
        hint = f" — did you mean {close[0]!r}?" if close else ""
        raise TypeError(
            f"unknown env setting {name!r}{hint}\n  valid settings: {', '.join(sorted(OVERRIDABLE))}"
        )
    raw = config.model_dump()
    for name, value in overrides.items():
        raw[OVERRIDABLE[name]][name] = value
    sources = {f"{OVERRIDABLE[name]}.{name}": f"{name}=" for name in overrides}
    return validate(raw, sources)


def settings_of(config: Config) -> Settings:
    return Settings(config.env, config.reward, tuple(config.features.timeframes))


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


def resolve_start(value: Any, timestamps: np.ndarray) -> int:
    """An episode start: a bar index, or a time (the first bar opening at or after it, UTC)."""
    if isinstance(value, int | np.integer):
        return int(value)
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    bar = int(np.searchsorted(timestamps, stamp.value))
    if bar == len(timestamps):
        last = pd.Timestamp(int(timestamps[-1]), tz="UTC")
        raise ValueError(f"episode start {value!r} is after the store's last bar ({last})")
    return bar
