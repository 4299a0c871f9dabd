"""The feature matrix of one asset: indicators on every timeframe, time encodings, exogenous
series, then causal normalisation.

Causality is the contract (`features[t]` uses bars <= t only): higher timeframes enter through
`resample.last_closed`, exogenous values through an as-of join on the bar's close, and the
normalisation statistics through a trailing (rolling or expanding) window that ends at t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.config import FeaturesConfig
from core.data.calendar import Inferred
from core.data.timestamps import format_utc, parse_duration
from core.errors import UserError
from core.features.indicators import (
    check_periods,
    indicator_columns,
    indicator_lookback,
    timeframe_indicators,
)
from core.features.registry import TIME_COLUMNS
from core.features.resample import Bars, last_closed, resample
from core.units import DAY_NS, HOUR_NS, MINUTE_NS, WEEK_NS, format_duration

# features.timeframes: auto picks from these: the first two that are whole multiples of the base
# bar holding at least AUTO_MIN_RATIO base bars (fewer makes a higher bar that says little new).
# Buckets are fixed to the epoch in UTC (core.features.resample), so on sessions data a 1d bar is
# the UTC day and a 7d bar runs Thursday to Wednesday: causal, though not the exchange's own day
# or week.
AUTO_LADDER = (15 * MINUTE_NS, HOUR_NS, 4 * HOUR_NS, DAY_NS, WEEK_NS)
AUTO_MIN_RATIO = 4
AUTO_HIGHER = 2


@dataclass(frozen=True)
class Timeframe:
    label: str
    bar_ns: int


def auto_timeframes(base_bar_ns: int) -> list[str]:
    """features.timeframes: auto: the base bar, then up to two higher multiples of it, e.g.
    5min -> [5min, 1h, 4h], 1h -> [1h, 4h, 1d], 4h -> [4h, 1d, 7d], 1d -> [1d, 7d]."""
    higher = [
        ns for ns in AUTO_LADDER if ns % base_bar_ns == 0 and ns // base_bar_ns >= AUTO_MIN_RATIO
    ]
    return [format_duration(ns) for ns in (base_bar_ns, *higher[:AUTO_HIGHER])]


def timeframe_labels(config: FeaturesConfig, base_bar_ns: int) -> list[str]:
    """The configured timeframes, or the automatic choice for this base bar."""
    if config.timeframes == "auto":
        return auto_timeframes(base_bar_ns)
    return list(config.timeframes)


def inferred_timeframes(config: FeaturesConfig, base_bar_ns: int) -> Inferred | None:
    """What features.timeframes: auto chose, for the data summary (None when it was set)."""
    if config.timeframes != "auto":
        return None
    ladder = "/".join(format_duration(ns) for ns in AUTO_LADDER)
    return Inferred(
        "features.timeframes",
        f"[{', '.join(auto_timeframes(base_bar_ns))}]",
        f"the {format_duration(base_bar_ns)} bar, then up to {AUTO_HIGHER} of {ladder} that hold "
        f"at least {AUTO_MIN_RATIO} of its bars",
        "features.timeframes=[...] (multiples of the bar)",
    )


def timeframes(config: FeaturesConfig, base_bar_ns: int) -> list[Timeframe]:
    """Configured timeframes, checked against the base bar they are resampled from."""
    if config.timeframes == "auto":
        return [
            Timeframe(label, parse_duration(label, "features.timeframes"))
            for label in auto_timeframes(base_bar_ns)
        ]
    result = []
    for index, label in enumerate(config.timeframes):
        bar_ns = parse_duration(label, f"features.timeframes[{index}]")
        if bar_ns % base_bar_ns != 0:
            raise UserError(
                f"features.timeframes[{index}] = {label!r} is not a whole multiple of the base bar "
                f"({format_duration(base_bar_ns)}, data.bar); higher timeframes are built from base "
                "bars\n"
                "  fix: set features.timeframes=auto (here "
                f"[{', '.join(auto_timeframes(base_bar_ns))}]) or list multiples of data.bar"
            )
        result.append(Timeframe(label, bar_ns))
    if base_bar_ns not in {tf.bar_ns for tf in result}:
        raise UserError(
            f"features.timeframes = {config.timeframes} lacks the base bar "
            f"({format_duration(base_bar_ns)}, data.bar)\n"
            "  fix: list the base bar first, e.g. [1h, 4h, 1d], or set features.timeframes=auto"
        )
    return result


def feature_names(
    config: FeaturesConfig, base_bar_ns: int, exogenous: tuple[str, ...] = ()
) -> list[str]:
    names = [
        f"{tf.label}_{column}"
        for tf in timeframes(config, base_bar_ns)
        for column in indicator_columns(config)
    ]
    names += list(TIME_COLUMNS) if "time" in config.indicators else []
    return names + list(exogenous)


def lookback_bars(config: FeaturesConfig, base_bar_ns: int) -> int:
    """Base bars of history behind one feature row: the warm-up, and the minimum embargo."""
    indicator = indicator_lookback(config)
    longest = max(
        math.ceil(tf.bar_ns / base_bar_ns) * (indicator + 1)
        for tf in timeframes(config, base_bar_ns)
    )
    return longest + config.normalisation_window


def raw_features(
    base: Bars, config: FeaturesConfig, exogenous: np.ndarray | None = None
) -> np.ndarray:
    """Un-normalised features [time, feature] in `feature_names` order (NaN during warm-up).

    Written column by column into one array: stacking per-timeframe blocks would hold the whole
    matrix twice, the largest term of a build's memory on a long asset."""
    check_periods(config)
    decision_times = base.close_times
    frames = timeframes(config, base.bar_ns)
    extra = [_time_encoding(decision_times)] if "time" in config.indicators else []
    if exogenous is not None and exogenous.shape[1]:
        extra.append(exogenous)
    width = len(frames) * len(indicator_columns(config)) + sum(block.shape[1] for block in extra)
    raw = np.empty((len(decision_times), width))
    column = 0
    for tf in frames:
        bars = resample(base, tf.bar_ns)
        index = None if tf.bar_ns == base.bar_ns else last_closed(bars, decision_times)
        for values in timeframe_indicators(bars.ohlcv, config).values():
            if index is None:
                raw[:, column] = values
            else:
                np.take(values, np.maximum(index, 0), out=raw[:, column])
                raw[index < 0, column] = np.nan
            column += 1
    for block in extra:
        raw[:, column : column + block.shape[1]] = block
        column += block.shape[1]
    return raw


def _time_encoding(decision_times: np.ndarray) -> np.ndarray:
    """Hour of day and day of week of the decision time, as points on circles."""
    day_angle = 2 * np.pi * (decision_times % DAY_NS) / DAY_NS
    # The epoch was a Thursday; shifting by 3 days puts Monday 00:00 at angle 0.
    week_angle = 2 * np.pi * ((decision_times + 3 * DAY_NS) % WEEK_NS) / WEEK_NS
    return np.column_stack(
        [np.sin(day_angle), np.cos(day_angle), np.sin(week_angle), np.cos(week_angle)]
    )


def normalise(raw: np.ndarray, config: FeaturesConfig, skip: slice | None = None) -> np.ndarray:
    """Trailing z-scores (window ends at t, inclusive), clipped; columns in `skip` pass through.

    One column at a time, so the float64 temporaries (mean, spread, z) are one column each
    rather than the whole matrix: same values, a fraction of the peak memory."""
    window = config.normalisation_window
    passed = range(raw.shape[1])[skip] if skip is not None else range(0)
    features = np.empty(raw.shape, np.float32)
    for column in range(raw.shape[1]):
        values = raw[:, column]
        if column in passed:
            features[:, column] = values
            continue
        series = pd.Series(values)
        if config.normalisation == "rolling":
            trailing = series.rolling(window, min_periods=window)
        else:
            trailing = series.expanding(min_periods=window)
        mean = trailing.mean().to_numpy()
        spread = trailing.std(ddof=0).to_numpy()
        # A constant window (a halted asset) carries no information: 0, not inf.
        flat = spread <= 1e-12 * np.maximum(np.abs(mean), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled = values - mean
            scaled /= spread
        scaled[flat] = 0.0
        features[:, column] = np.clip(scaled, -config.clip, config.clip, out=scaled)
    return features


def asset_features(
    base: Bars, config: FeaturesConfig, exogenous: np.ndarray | None = None
) -> tuple[np.ndarray, int]:
    """Normalised float32 features [time, feature] and the first row where all are defined."""
    raw = raw_features(base, config, exogenous)
    skip = None
    if "time" in config.indicators:
        start = len(timeframes(config, base.bar_ns)) * len(indicator_columns(config))
        skip = slice(start, start + len(TIME_COLUMNS))
    features = normalise(raw, config, skip)
    defined = np.isfinite(features).all(axis=1)
    first = int(np.argmax(defined)) if defined.any() else len(features)
    return features, first


def check_defined(
    features: np.ndarray, start: int, names: list[str], timestamps: np.ndarray, asset: str
) -> None:
    """After the warm-up every value must be finite; a gap here means the input had a hole."""
    bad = ~np.isfinite(features[start:])
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise UserError(
            f"asset {asset}: feature {names[column]} is undefined at "
            f"{format_utc(int(timestamps[start + row]))} although its warm-up is over — an "
            "exogenous series with a gap, or a constant price for the whole window\n"
            "  fix: check the data around that time (./start_training.sh --check-data)"
        )
