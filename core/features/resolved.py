"""A config with its `auto` data and feature settings replaced by what a store's build inferred.

`data.bar`, `data.calendar` and `features.timeframes` may be `auto`: the store's build reads the
data and records the values it used under `meta["resolved"]`, with the calendar's bars per year.
Look-backs and horizons given as spans or `auto` (core.features.windows) are resolved from those
here, for every section (features, env, evaluation). Code that needs the values (trade counters,
annualisation, a run's saved config) asks here, so a store and the settings used with it cannot
disagree. Light: pydantic config only, no numpy or pandas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.config import Config
from core.features.windows import window_settings

INFERABLE = (("data", "bar"), ("data", "calendar"), ("features", "timeframes"))


def inferred_settings(config: Config, meta: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{section: {key: value}} for every key that is `auto` in `config` and that the store
    resolved; empty when nothing was auto (or the store predates resolved values)."""
    resolved = meta.get("resolved") or {}
    settings: dict[str, dict[str, Any]] = {}
    for section, key in INFERABLE:
        if getattr(getattr(config, section), key) == "auto" and key in resolved:
            settings.setdefault(section, {})[key] = resolved[key]
    if "bars_per_year" in resolved:
        for section, values in window_settings(
            config, int(meta["bar_ns"]), float(resolved["bars_per_year"])
        ).items():
            settings.setdefault(section, {}).update(values)
    return settings


def with_inferred(config: Config, meta: Mapping[str, Any]) -> Config:
    """`config` with its `auto` keys set to the values the store was built with."""
    settings = inferred_settings(config, meta)
    if not settings:
        return config
    return config.model_copy(
        update={
            section: getattr(config, section).model_copy(update=values)
            for section, values in settings.items()
        }
    )
