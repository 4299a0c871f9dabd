"""Indicators of one timeframe's bars, each value computed from that bar and earlier ones only.

TA-Lib (C, vectorised, causal: its recursions run forward from the first bar) does RSI, MACD,
ATR, Bollinger bands and rolling moments; returns are one numpy subtraction.
Scale-free forms (ratios to price, %B, z-scores) keep assets of any price comparable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import talib

from core.config import FeaturesConfig
from core.errors import UserError
from core.features.registry import INDICATORS


def indicator_columns(config: FeaturesConfig) -> list[str]:
    """Column names `timeframe_indicators` returns, in order (without the timeframe prefix)."""
    chosen = set(config.indicators)
    names = [f"ret_{h}" for h in config.return_horizons]
    for name, spec in INDICATORS.items():  # registry order, whatever order the config lists
        if name in chosen:
            names += spec.columns
    return names


def indicator_lookback(config: FeaturesConfig) -> int:
    """Bars of a timeframe before every indicator has a value (every registered one, chosen or
    not: the warm-up, and so the stored rows, do not move when the list changes)."""
    return max(max(config.return_horizons), *(i.lookback(config) for i in INDICATORS.values()))


def check_periods(config: FeaturesConfig) -> None:
    fast, slow, _ = config.macd_periods
    if fast >= slow:
        raise UserError(
            f"features.macd_periods = {config.macd_periods}: the fast period must be shorter than "
            "the slow one\n  fix: e.g. --set features.macd_periods=[12,26,9]"
        )


def timeframe_indicators(ohlcv: np.ndarray, config: FeaturesConfig) -> dict[str, np.ndarray]:
    """float64 [n, 5] bars -> {column: float64 [n]}; NaN until an indicator has enough bars.
    Columns come in `indicator_columns` order: the return horizons, then the registry's."""
    bars = Ohlcv(*(np.ascontiguousarray(ohlcv[:, i]) for i in range(1, 5)))
    columns: dict[str, np.ndarray] = {}
    for horizon in config.return_horizons:
        columns[f"ret_{horizon}"] = _lagged_difference(bars.log_close, horizon)
    chosen = set(config.indicators)
    for name, spec in INDICATORS.items():  # registry order, whatever order the config lists
        if name in chosen:
            values = COMPUTE[name](bars, config)
            columns.update(zip(spec.columns, values, strict=True))
    return columns


@dataclass(frozen=True)
class Ohlcv:
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @property
    def log_close(self) -> np.ndarray:
        return np.log(self.close)


def _rsi(bars: Ohlcv, config: FeaturesConfig) -> list[np.ndarray]:
    return [talib.RSI(bars.close, timeperiod=config.rsi_period)]


def _macd(bars: Ohlcv, config: FeaturesConfig) -> list[np.ndarray]:
    fast, slow, signal = config.macd_periods
    line, _, histogram = talib.MACD(
        bars.close, fastperiod=fast, slowperiod=slow, signalperiod=signal
    )
    return [line / bars.close, histogram / bars.close]


def _atr(bars: Ohlcv, config: FeaturesConfig) -> list[np.ndarray]:
    atr = talib.ATR(bars.high, bars.low, bars.close, timeperiod=config.atr_period)
    return [atr / bars.close]


def _bollinger(bars: Ohlcv, config: FeaturesConfig) -> list[np.ndarray]:
    width = config.bollinger_width
    upper, _, lower = talib.BBANDS(
        bars.close, timeperiod=config.bollinger_period, nbdevup=width, nbdevdn=width
    )
    return [_ratio(bars.close - lower, upper - lower, flat=0.5)]


def _realised_vol(bars: Ohlcv, config: FeaturesConfig) -> list[np.ndarray]:
    one_bar = _lagged_difference(bars.log_close, 1)
    return [talib.STDDEV(one_bar, timeperiod=config.volatility_window)]


def _volume_z(bars: Ohlcv, config: FeaturesConfig) -> list[np.ndarray]:
    log_volume = np.log1p(bars.volume)
    mean = talib.SMA(log_volume, timeperiod=config.volume_window)
    spread = talib.STDDEV(log_volume, timeperiod=config.volume_window)
    return [_ratio(log_volume - mean, spread, flat=0.0)]


# Each registered indicator's function is `_<name>` above: looked up once, so a registry entry
# without its function fails at import, not in a job.
COMPUTE: dict[str, Callable[[Ohlcv, FeaturesConfig], list[np.ndarray]]] = {
    name: globals()[f"_{name}"] for name in INDICATORS
}


def _lagged_difference(values: np.ndarray, lag: int) -> np.ndarray:
    out = np.full_like(values, np.nan)
    out[lag:] = values[lag:] - values[:-lag]
    return out


def _ratio(numerator: np.ndarray, denominator: np.ndarray, flat: float) -> np.ndarray:
    """numerator / denominator, `flat` where the denominator is zero, NaN kept where undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = numerator / denominator
    out[denominator == 0] = flat
    return out
