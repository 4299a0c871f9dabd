"""Checks on one asset's bars, each failing with the file, the row, the timestamp and the fix.

Checks run in file order, before anything is sorted or written, so the row a message names is
the row the user sees in their editor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.data.timestamps import format_utc
from core.errors import UserError
from core.units import format_duration

OPEN, HIGH, LOW, CLOSE, VOLUME = range(5)


@dataclass(frozen=True)
class RowLocator:
    """Turns a 0-based data row into the place a person looks: CSV line or Parquet row."""

    path: str
    csv: bool

    def __call__(self, row: int, timestamps: np.ndarray | None = None) -> str:
        place = f"line {row + 2}" if self.csv else f"row {row + 1}"
        when = f" ({format_utc(int(timestamps[row]))})" if timestamps is not None else ""
        return f"{self.path}, {place}{when}"


def validate_bars(
    timestamps: np.ndarray, ohlcv: np.ndarray, bar_ns: int | None, where: RowLocator
) -> None:
    """Raise a UserError for the first problem found; `ohlcv` is float64 [rows, 5]. With
    `bar_ns` None (data.bar auto) the spacing is checked later, by `check_spacing`."""
    _check_order(timestamps, where)
    _check_values(timestamps, ohlcv, where)
    if bar_ns is not None:
        check_spacing(timestamps, bar_ns, where)


def first_row(mask: np.ndarray) -> tuple[int, int]:
    """The first row `mask` flags and how many it flags, for a message that names one."""
    rows = np.flatnonzero(mask)
    return int(rows[0]), len(rows)


def more_rows(count: int) -> str:
    """The tail of a message about the first of `count` rows."""
    return f" ({count - 1:,} more row(s) like it)" if count > 1 else ""


def _check_order(timestamps: np.ndarray, where: RowLocator) -> None:
    steps = np.diff(timestamps)
    if (steps < 0).any():
        row, count = first_row(steps < 0)
        raise UserError(
            f"{where(row + 1, timestamps)}: timestamps are not sorted — this bar comes before the "
            f"previous one ({format_utc(int(timestamps[row]))}){more_rows(count)}\n"
            "  fix: sort the file by time"
        )
    if (steps == 0).any():
        row, count = first_row(steps == 0)
        raise UserError(
            f"{where(row + 1, timestamps)}: duplicated timestamp, the same as the previous "
            f"row{more_rows(count)}\n  fix: remove the duplicated rows"
        )


def _check_values(timestamps: np.ndarray, ohlcv: np.ndarray, where: RowLocator) -> None:
    names = ("open", "high", "low", "close", "volume")
    finite = np.isfinite(ohlcv)
    if not finite.all():
        row, count = first_row(~finite.all(axis=1))
        column = names[int(np.flatnonzero(~finite[row])[0])]
        raise UserError(
            f"{where(row, timestamps)}: {column} is {ohlcv[row, names.index(column)]} "
            f"(missing or infinite){more_rows(count)}\n"
            "  fix: fill or remove that row (missing bars are handled by data.missing_bars)"
        )
    prices = ohlcv[:, :VOLUME]
    if (prices <= 0).any():
        row, count = first_row((prices <= 0).any(axis=1))
        column = names[int(np.flatnonzero(prices[row] <= 0)[0])]
        raise UserError(
            f"{where(row, timestamps)}: {column} = {ohlcv[row, names.index(column)]:g} is not a "
            f"positive price{more_rows(count)}\n  fix: correct or remove that row"
        )
    body_top = np.maximum(ohlcv[:, OPEN], ohlcv[:, CLOSE])
    body_bottom = np.minimum(ohlcv[:, OPEN], ohlcv[:, CLOSE])
    if (ohlcv[:, HIGH] < body_top).any():
        row, count = first_row(ohlcv[:, HIGH] < body_top)
        raise UserError(
            f"{where(row, timestamps)}: high {ohlcv[row, HIGH]:g} is below max(open, close) "
            f"{body_top[row]:g}{more_rows(count)}\n"
            "  fix: correct that row (columns may be swapped: check the header order)"
        )
    if (ohlcv[:, LOW] > body_bottom).any():
        row, count = first_row(ohlcv[:, LOW] > body_bottom)
        raise UserError(
            f"{where(row, timestamps)}: low {ohlcv[row, LOW]:g} is above min(open, close) "
            f"{body_bottom[row]:g}{more_rows(count)}\n"
            "  fix: correct that row (columns may be swapped: check the header order)"
        )
    if (ohlcv[:, VOLUME] < 0).any():
        row, count = first_row(ohlcv[:, VOLUME] < 0)
        raise UserError(
            f"{where(row, timestamps)}: volume {ohlcv[row, VOLUME]:g} is negative{more_rows(count)}\n"
            "  fix: correct or remove that row"
        )


def check_spacing(
    timestamps: np.ndarray, bar_ns: int, where: RowLocator, inferred: bool = False
) -> None:
    """Every step is a whole number of bars; `inferred`: the bar was data.bar auto's guess."""
    steps = np.diff(timestamps)
    off_grid = steps % bar_ns != 0
    if not off_grid.any():
        return
    row, count = first_row(off_grid)
    typical = int(np.median(steps)) if len(steps) else bar_ns
    hint = (
        f"most bars are {format_duration(typical)} apart: set data.bar={format_duration(typical)}"
        if typical % bar_ns != 0 or typical < bar_ns
        else "remove or resample the bars that break the spacing"
    )
    source = "data.bar"
    if inferred:
        source = "inferred for data.bar: auto as the most common spacing"
        finest = int(np.gcd.reduce(steps[steps > 0]))
        hint = (
            "remove or resample the bars that break the spacing, or set "
            f"data.bar={format_duration(finest)} (it divides every step)"
        )
    raise UserError(
        f"{where(row + 1, timestamps)}: mixed bar spacing — this bar is "
        f"{format_duration(int(steps[row]))} after the previous one, not a multiple of the "
        f"{format_duration(bar_ns)} bar ({source}){more_rows(count)}\n  fix: {hint}"
    )
