"""Indicators of one timeframe's bars, each value computed from that bar and earlier ones only.

TA-Lib (C, vectorised, causal: its recursions run forward from the first bar) does RSI, MACD,
ATR, Bollinger bands and rolling moments; returns are one numpy subtraction.
Scale-free forms (ratios to price, %B, z-scores) keep assets of any price comparable.
"""

from __future__ import annotations

import numpy as np
import talib

from core.config import FeaturesConfig
from core.errors import UserError


def indicator_columns(config: FeaturesConfig) -> list[str]:
    """Column names `timeframe_indicators` returns, in order (without the timeframe prefix)."""
    names = [f"ret_{h}" for h in config.return_horizons]
    chosen = set(config.indicators)
    names += ["rsi"] if "rsi" in chosen else []
    names += ["macd", "macd_hist"] if "macd" in chosen else []
    names += ["atr"] if "atr" in chosen else []
    names += ["bb_pctb"] if "bollinger" in chosen else []
    names += ["rvol"] if "realised_vol" in chosen else []
    names += ["volume_z"] if "volume_z" in chosen else []
    return names


def indicator_lookback(config: FeaturesConfig) -> int:
    """Bars of a timeframe before every indicator has a value."""
    _, slow, signal = config.macd_periods
    return max(
        max(config.return_horizons),
        config.rsi_period + 1,
        slow + signal,
        config.atr_period + 1,
        config.bollinger_period,
        config.volatility_window + 1,
        config.volume_window,
    )


def check_periods(config: FeaturesConfig) -> None:
    fast, slow, _ = config.macd_periods
    if fast >= slow:
        raise UserError(
            f"features.macd_periods = {config.macd_periods}: the fast period must be shorter than "
            "the slow one\n  fix: e.g. --set features.macd_periods=[12,26,9]"
        )


def timeframe_indicators(ohlcv: np.ndarray, config: FeaturesConfig) -> dict[str, np.ndarray]:
    """float64 [n, 5] bars -> {column: float64 [n]}; NaN until an indicator has enough bars."""
    high, low, close, volume = (np.ascontiguousarray(ohlcv[:, i]) for i in range(1, 5))
    log_close = np.log(close)
    columns: dict[str, np.ndarray] = {}
    for horizon in config.return_horizons:
        columns[f"ret_{horizon}"] = _lagged_difference(log_close, horizon)
    chosen = set(config.indicators)
    if "rsi" in chosen:
        columns["rsi"] = talib.RSI(close, timeperiod=config.rsi_period)
    if "macd" in chosen:
        fast, slow, signal = config.macd_periods
        line, _, histogram = talib.MACD(
            close, fastperiod=fast, slowperiod=slow, signalperiod=signal
        )
        columns["macd"] = line / close
        columns["macd_hist"] = histogram / close
    if "atr" in chosen:
        columns["atr"] = talib.ATR(high, low, close, timeperiod=config.atr_period) / close
    if "bollinger" in chosen:
        width = config.bollinger_width
        upper, _, lower = talib.BBANDS(
            close, timeperiod=config.bollinger_period, nbdevup=width, nbdevdn=width
        )
        columns["bb_pctb"] = _ratio(close - lower, upper - lower, flat=0.5)
    if "realised_vol" in chosen:
        one_bar = _lagged_difference(log_close, 1)
        columns["rvol"] = talib.STDDEV(one_bar, timeperiod=config.volatility_window)
    if "volume_z" in chosen:
        log_volume = np.log1p(volume)
        mean = talib.SMA(log_volume, timeperiod=config.volume_window)
        spread = talib.STDDEV(log_volume, timeperiod=config.volume_window)
        columns["volume_z"] = _ratio(log_volume - mean, spread, flat=0.0)
    return columns


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
