"""Small datasets written to disk in the formats users have, for loader and store tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.config import Config
from core.data.synthetic import generate
from core.features.windows import resolve_windows
from core.units import YEAR_NS

HOUR_NS = 3_600 * 1_000_000_000


def bars(
    n_bars: int = 400, n_assets: int = 2, signal: float = 0.0, seed: int = 1
) -> dict[str, pd.DataFrame]:
    return generate(n_assets, n_bars, HOUR_NS, signal, seed)


def write_csv(folder: Path, frames: dict[str, pd.DataFrame], **to_csv: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_csv(folder / f"{name}.csv", index=False, **to_csv)
    return folder


def hourly(config: Config) -> Config:
    """`config` with its look-backs in bars as a 24/7 hourly store resolves them (the sample's)."""
    return resolve_windows(config, HOUR_NS, YEAR_NS / HOUR_NS)[0]


def yahoo_daily(
    days: pd.DatetimeIndex,
    split_row: int | None = None,
    split: float = 4.0,
    dividend: float = 0.0,
    seed: int = 3,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stock's daily bars as a Yahoo-style export writes them (Date, Open, High, Low, Close,
    Adj Close, Volume) and the adjusted bars they stand for. The raw prices before `split_row`
    are `split` times higher and trade `split` times fewer shares; each quarter-end pays
    `dividend` (a fraction of the price), so raw prices before it are that much higher too."""
    adjusted = bars(len(days), n_assets=1, seed=seed)["SYN01"].drop(columns="timestamp")
    rows = np.arange(len(days))
    splits = np.where(rows < split_row, split, 1.0) if split_row is not None else np.ones(len(days))
    ex_dates = np.flatnonzero(days.is_quarter_end)
    paid_after = len(ex_dates) - np.searchsorted(ex_dates, rows, side="right")
    multiplier = splits * (1 + dividend) ** paid_after
    raw = adjusted[["open", "high", "low", "close"]].mul(multiplier, axis=0)
    export = pd.DataFrame(
        {
            "Date": days.strftime("%Y-%m-%d"),
            "Open": raw["open"],
            "High": raw["high"],
            "Low": raw["low"],
            "Close": raw["close"],
            "Adj Close": adjusted["close"],
            "Volume": (adjusted["volume"] / splits).round(),
        }
    )
    return export, adjusted
