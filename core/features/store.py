"""A finished feature store, attached read-only: what every env process and job opens.

`data/cache/<hash>/` holds features.npy (float32 [asset, time, feature]), prices.npy (float64
[asset, time, open/high/low/close/volume]), timestamps.npy (int64 UTC ns bar open times, [time])
and meta.json. Attaching is `np.load(mmap_mode="r")`: the OS shares the pages between processes,
nothing is copied, and a `FeatureStore` pickles as its path. This module imports only numpy, so
a worker process attaches in milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UserError

STORE_FORMAT = 3  # 2: meta.json holds the resolved bar, calendar and timeframes; 3: bars per
# year and the look-backs in bars (spans and auto resolved), closures in the summary
ARRAYS = ("features", "prices", "timestamps")


@dataclass(frozen=True)
class FeatureStore:
    """Read-only views of a finished store; cheap to create in any process."""

    path: Path
    meta: dict[str, Any]
    features: np.ndarray
    prices: np.ndarray
    timestamps: np.ndarray

    @classmethod
    def attach(cls, path: Path | str) -> FeatureStore:
        path = Path(path)
        meta = read_meta(path)
        if meta is None:
            raise UserError(
                f"{path} is not a finished feature store (no valid meta.json)\n"
                "  fix: rebuild it with ./start_training.sh --check-data --build-features"
            )
        arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
        return cls(path, meta, **arrays)

    def __reduce__(self) -> tuple[Callable[[str], FeatureStore], tuple[str]]:
        return (FeatureStore.attach, (str(self.path),))

    @property
    def assets(self) -> list[str]:
        return list(self.meta["assets"])

    @property
    def feature_names(self) -> list[str]:
        return list(self.meta["feature_names"])

    @property
    def bar_ns(self) -> int:
        return int(self.meta["bar_ns"])


def read_meta(path: Path, digest: str | None = None) -> dict[str, Any] | None:
    """meta.json of a complete store (optionally of this hash), else None."""
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("format") != STORE_FORMAT or (digest and meta.get("hash") != digest):
        return None
    if not all((path / f"{name}.npy").is_file() for name in ARRAYS):
        return None
    return meta
