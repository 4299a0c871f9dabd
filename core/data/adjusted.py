"""Adjusted prices from an export's adjusted-close column (Yahoo's `Adj Close` and its kin).

A stock's raw closes jump at every split and drop at every dividend; the adjusted close carries
those corporate actions back through history so returns are the holder's returns. When a file
has one, each row's open, high, low and close are scaled by adjusted close / close, and its
volume by the inverse, so the traded value (price x volume) of every bar is unchanged and a
split leaves neither a price gap nor a volume step.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from core.data.timestamps import configured_column
from core.data.validation import CLOSE, OPEN, VOLUME, RowLocator, first_row, more_rows
from core.errors import UserError

KEY = "data.adjusted_close"
# Column names (letter case, spaces, dots, dashes and underscores aside) auto reads.
ADJUSTED_NAMES = ("adjclose", "adjustedclose", "closeadj", "closeadjusted", "adjcls")


def _squeezed(name: str) -> str:
    return re.sub(r"[\s._-]+", "", name.strip().lower())


def adjusted_column(columns: Sequence[str], setting: str, where: str) -> str | None:
    """The column to adjust with: `setting` auto finds one by name (None when there is none),
    none turns adjustment off, any other value must name a column of the file."""
    if setting.lower() == "none":
        return None
    if setting.lower() != "auto":
        fix = (
            f"set {KEY} to the adjusted-close column, auto to find one by name, or none to use "
            "the raw prices"
        )
        return configured_column(columns, setting, where, KEY, fix)
    found = [str(name) for name in columns if _squeezed(str(name)) in ADJUSTED_NAMES]
    if len(found) > 1:
        raise UserError(
            f"{where}: more than one adjusted-close column: {', '.join(map(repr, found))}\n"
            f"  fix: set {KEY} to the one to use (or none for the raw prices)"
        )
    return found[0] if found else None


def adjust(
    ohlcv: np.ndarray,
    adjusted: np.ndarray,
    column: str,
    timestamps: np.ndarray,
    where: RowLocator,
) -> np.ndarray:
    """Bars in adjusted prices: open, high, low, close x adjusted / close, volume / that factor.
    `ohlcv` is validated already; every adjusted close must be a positive number."""
    bad = ~np.isfinite(adjusted) | ~(adjusted > 0)
    if bad.any():
        row, count = first_row(bad)
        what = "missing" if np.isnan(adjusted[row]) else f"{adjusted[row]:g}, not a positive price"
        raise UserError(
            f"{where(row, timestamps)}: {column} is {what}{more_rows(count)}, so this bar "
            "cannot be put in adjusted prices\n"
            "  fix: re-export the file with every adjusted close filled in, remove that row, or "
            f"set {KEY}=none to use the raw prices"
        )
    factor = adjusted / ohlcv[:, CLOSE]
    result = ohlcv.copy()
    result[:, OPEN : CLOSE + 1] *= factor[:, None]
    result[:, VOLUME] /= factor
    return result
