"""Every indicator a config can name, in one place: its columns per timeframe, the look-back it
needs, and the function that computes it. Standard library only, so the config's validation and
the planner's column count read it before numpy loads.

To add an indicator: one entry here and its function `_<name>` in core.features.indicators.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Indicator:
    name: str
    columns: tuple[str, ...]  # per timeframe, in this order, after the return horizons
    lookback: Callable[[Any], int]  # FeaturesConfig -> bars of a timeframe before it has a value


INDICATORS: dict[str, Indicator] = {
    spec.name: spec
    for spec in (
        Indicator("rsi", ("rsi",), lambda c: c.rsi_period + 1),
        Indicator("macd", ("macd", "macd_hist"), lambda c: c.macd_periods[1] + c.macd_periods[2]),
        Indicator("atr", ("atr",), lambda c: c.atr_period + 1),
        Indicator("bollinger", ("bb_pctb",), lambda c: c.bollinger_period),
        Indicator("realised_vol", ("rvol",), lambda c: c.volatility_window + 1),
        Indicator("volume_z", ("volume_z",), lambda c: c.volume_window),
    )
}
TIME = "time"  # hour of day and day of week (sin, cos) of the decision time, once per row
TIME_COLUMNS = ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos")
NAMES = (*INDICATORS, TIME)  # what features.indicators may list
