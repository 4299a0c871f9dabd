"""Human and machine views of the walk-forward folds (which dates each fold trains and tests on)."""

from __future__ import annotations

import numpy as np
from rich.table import Table

from core.bar_range import BarRange
from core.folds import Coverage, Fold
from core.units import format_duration


def folds_document(folds: list[Fold], timestamps: np.ndarray, bar_ns: int) -> list[dict]:
    return [fold.to_json(timestamps, bar_ns) for fold in folds]


def coverage_document(coverage: Coverage, timestamps: np.ndarray) -> dict:
    return {
        "tested_bars": coverage.tested,
        "available_bars": coverage.available,
        "fraction": coverage.fraction,
        "summary": coverage.describe(timestamps),
    }


def folds_table(
    folds: list[Fold], timestamps: np.ndarray, bar_ns: int, coverage: Coverage | None = None
) -> Table:
    table = Table(
        title=f"Walk-forward: {len(folds)} fold(s)",
        title_justify="left",
        caption=coverage.describe(timestamps) if coverage else None,
        caption_justify="left",
    )
    table.add_column("fold", justify="right")
    for name in ("train", "validation", "test"):
        table.add_column(name)
    table.add_column("gap", justify="right")  # cut from the end of train and of validation
    for fold in folds:
        table.add_row(
            str(fold.index),
            *(_part_cell(part, timestamps) for part in fold.parts().values()),
            f"{fold.embargo_bars:,} × {format_duration(bar_ns)} bars",
        )
    return table


def _part_cell(part: BarRange, timestamps: np.ndarray) -> str:
    """First → last bar's date and the bar count: enough to see the windows march forward."""
    first, last = (_date(timestamps[i]) for i in (part.start, part.stop - 1))
    return f"{first} → {last}\n{len(part):,} bars"


def _date(ns: np.int64) -> str:
    return str(np.datetime_as_string(np.datetime64(int(ns), "ns"), unit="D"))
