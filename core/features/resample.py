"""Higher timeframes from base bars, and the rule that a higher bar is seen only once it has closed.

Buckets are fixed to the epoch (a 4h bar opens at 00:00, 04:00, ... UTC; a 1d bar at midnight
UTC), so cutting the data anywhere never moves a boundary: the causality test depends on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Bars:
    """Bars of one timeframe: open times (UTC ns) and float64 [n, 5] open/high/low/close/volume."""

    timestamps: np.ndarray
    ohlcv: np.ndarray
    bar_ns: int

    @property
    def close_times(self) -> np.ndarray:
        return self.timestamps + self.bar_ns


def resample(base: Bars, bar_ns: int) -> Bars:
    """Aggregate base bars into `bar_ns` buckets (first open, max high, min low, last close, sum)."""
    if bar_ns == base.bar_ns:
        return base
    bucket = base.timestamps // bar_ns
    starts = np.flatnonzero(np.concatenate([[True], bucket[1:] != bucket[:-1]]))
    ends = np.concatenate([starts[1:], [len(bucket)]]) - 1
    ohlcv = np.column_stack(
        [
            base.ohlcv[starts, 0],
            np.maximum.reduceat(base.ohlcv[:, 1], starts),
            np.minimum.reduceat(base.ohlcv[:, 2], starts),
            base.ohlcv[ends, 3],
            np.add.reduceat(base.ohlcv[:, 4], starts),
        ]
    )
    return Bars(bucket[starts] * bar_ns, ohlcv, bar_ns)


def last_closed(higher: Bars, decision_times: np.ndarray) -> np.ndarray:
    """For each decision time, the index of the latest higher bar closed by then (-1: none yet)."""
    return np.searchsorted(higher.close_times, decision_times, side="right") - 1
