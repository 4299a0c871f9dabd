"""Small datasets written to disk in the formats users have, for loader and store tests."""

from __future__ import annotations

from pathlib import Path

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
