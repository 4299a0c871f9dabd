"""The search space of a sweep: config keys and their distributions, from `tuning.space`.

A trial's values become `--set` overrides layered over the run's config, so a searched key is
validated like any other (a value out of its allowed range is the study's error at start, with the
key's name, not a trial that crashes later).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.config import Config, TuningParam, load_config
from core.errors import UserError


def suggest(trial: Any, space: dict[str, TuningParam]) -> dict[str, Any]:
    """This trial's value of every searched key, drawn by the study's sampler."""
    values: dict[str, Any] = {}
    for key, param in space.items():
        if param.type == "categorical":
            values[key] = trial.suggest_categorical(key, param.choices)
        elif param.type == "int":
            values[key] = trial.suggest_int(key, int(param.low), int(param.high), log=param.log)
        else:
            values[key] = trial.suggest_float(key, param.low, param.high, log=param.log)
    return values


def overrides(values: dict[str, Any]) -> list[str]:
    return [f"{key}={json.dumps(value)}" for key, value in values.items()]


def trial_config(files: Sequence[Path], base: Sequence[str], values: dict[str, Any]) -> Config:
    """The run's config (its files and --set) with this trial's values over it."""
    return load_config(files, [*base, *overrides(values)])


def check_space(files: Sequence[Path], base: Sequence[str], space: dict[str, TuningParam]) -> None:
    """Every end of every range (every choice) must make a valid config."""
    if not space:
        raise UserError(
            "tuning.space is empty: there is nothing to tune\n"
            "  fix: add keys, e.g. --set 'tuning.space={ppo.ent_coef: {type: float, low: 1e-4, "
            "high: 0.05, log: true}}'"
        )
    for key, param in space.items():
        if key.startswith("features.regime"):
            raise UserError(
                f"tuning.space.{key}: the regime columns are fitted once per fold, before any "
                "trial starts, so a trial cannot change them\n  fix: set "
                f"{key} for the whole sweep (--set {key}=...) and drop it from tuning.space"
            )
        ends = param.choices if param.type == "categorical" else [param.low, param.high]
        for value in ends or []:
            value = int(value) if param.type == "int" else value
            try:
                trial_config(files, base, {key: value})
            except UserError as error:
                raise UserError(
                    f"tuning.space.{key}: the value {value!r} makes an invalid config:\n"
                    f"  {str(error).splitlines()[0]}\n"
                    f"  fix: narrow tuning.space.{key} to values the key accepts"
                ) from None
