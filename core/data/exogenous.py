"""Exogenous series (macro data, other tickers) joined to the bar timeline as of each bar's close.

A value stamped T is known at T + `available_after`; bar t sees the latest value known by its
close, never a later one. Naive stamps are read in the series' own timezone (or the dataset's),
aware ones keep their offset, and both end in UTC: no naive/aware join can happen by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import DataConfig, ExogenousConfig
from core.data.load import read_table
from core.data.timestamps import find_timestamp_column, format_utc, parse_duration, parse_timestamps
from core.errors import UserError


@dataclass(frozen=True)
class ExogenousSeries:
    """Values [n, k] and the UTC time each row became known."""

    name: str
    columns: tuple[str, ...]
    known_at: np.ndarray
    values: np.ndarray


def load_exogenous(spec: ExogenousConfig, data: DataConfig, index: int) -> ExogenousSeries:
    key = f"data.exogenous[{index}]"
    path = Path(spec.path)
    if not path.is_file():
        raise UserError(f"{key}.path: file not found: {path}\n  fix: correct the path")
    frame = read_table(path)
    where = str(path)
    time_column = find_timestamp_column(
        list(frame.columns),
        spec.timestamp_column,
        where,
        f"{key}.timestamp_column",
        first_values=frame.iloc[:, 0] if len(frame.columns) else None,
    )
    timestamps = parse_timestamps(
        frame[time_column],
        spec.timestamp_format,
        spec.timezone or data.timezone,
        where,
        (f"{key}.timestamp_format", f"{key}.timezone"),
    )
    order = np.diff(timestamps)
    if (order <= 0).any():
        row = int(np.flatnonzero(order <= 0)[0]) + 1
        problem = "duplicated" if order[row - 1] == 0 else "not sorted"
        raise UserError(
            f"{where}, row {row + 1} ({format_utc(int(timestamps[row]))}): timestamps are "
            f"{problem}\n  fix: sort the file by time and keep one row per time"
        )
    columns = _value_columns(frame, spec, time_column, where, key)
    values = np.column_stack(
        [pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype="float64") for c in columns]
    )
    delay = parse_duration(spec.available_after, f"{key}.available_after", allow_zero=True)
    return ExogenousSeries(spec.name, tuple(map(str, columns)), timestamps + delay, values)


def _value_columns(
    frame: pd.DataFrame, spec: ExogenousConfig, time_column: str, where: str, key: str
) -> list[str]:
    if spec.columns is None:
        numeric = [
            c
            for c in frame.columns
            if c != time_column and pd.to_numeric(frame[c], errors="coerce").notna().any()
        ]
        if not numeric:
            raise UserError(f"{where}: no numeric column to use\n  fix: set {key}.columns")
        return numeric
    by_lower = {str(c).strip().lower(): c for c in frame.columns}
    missing = [c for c in spec.columns if c.strip().lower() not in by_lower]
    if missing:
        raise UserError(
            f"{where}: no column(s) {', '.join(missing)} ({key}.columns); the file has: "
            f"{', '.join(map(str, frame.columns))}\n  fix: correct {key}.columns"
        )
    return [by_lower[c.strip().lower()] for c in spec.columns]


def changes(series: ExogenousSeries) -> ExogenousSeries:
    """Each value minus the previous non-missing value of its column, known at the same time."""
    deltas = np.full_like(series.values, np.nan)
    for column in range(series.values.shape[1]):
        rows = np.flatnonzero(np.isfinite(series.values[:, column]))
        deltas[rows[1:], column] = np.diff(series.values[rows, column])
    return ExogenousSeries(series.name, series.columns, series.known_at, deltas)


def as_of(series: ExogenousSeries, decision_times: np.ndarray) -> np.ndarray:
    """[len(decision_times), k]: the latest non-missing value known at each time (NaN before)."""
    joined = np.full((len(decision_times), series.values.shape[1]), np.nan)
    for column in range(series.values.shape[1]):
        valid = np.isfinite(series.values[:, column])
        known, values = series.known_at[valid], series.values[valid, column]
        index = np.searchsorted(known, decision_times, side="right") - 1
        joined[index >= 0, column] = values[index[index >= 0]]
    return joined
