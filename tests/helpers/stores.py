"""Feature stores for env tests: built from small synthetic data, or written by hand.

A handwritten store has prices chosen by the test, so fills, costs and rewards can be computed
by hand; `FeatureStore.attach` accepts it like any built store. A test that rewrites a store's
arrays calls `restamp`, so meta.json describes (and checksums) what is there now.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from core.config import Config, load_config
from core.features.build import open_store
from core.features.store import STORE_FORMAT, FeatureStore, describe_arrays
from tests.helpers.datasets import HOUR_NS, bars, write_csv

# Short lookbacks so a few hundred bars give a usable store quickly.
SMALL_FEATURES = [
    "features.timeframes=[1h, 4h]",
    "features.return_horizons=[1, 4]",
    "features.normalisation_window=48",
]


def small_config(*overrides: str) -> Config:
    return load_config(overrides=[*SMALL_FEATURES, *overrides])


def built_store(folder: Path, n_bars: int = 600, n_assets: int = 3, seed: int = 1) -> FeatureStore:
    dataset = write_csv(folder / "dataset", bars(n_bars, n_assets, seed=seed))
    store, _ = open_store(small_config(), dataset, folder / "cache")
    return store


def handmade_store(
    folder: Path,
    ohlc: np.ndarray,
    n_features: int = 3,
    start_ns: int = 1_700_000_000 * 10**9 // HOUR_NS * HOUR_NS,
) -> FeatureStore:
    """A store with these prices ([asset, time, o/h/l/c]) and features that encode the bar index."""
    n_assets, n_time, _ = ohlc.shape
    folder.mkdir(parents=True, exist_ok=True)
    index = np.arange(n_time, dtype=np.float32)[None, :, None]
    features = np.broadcast_to(index / n_time, (n_assets, n_time, n_features)).copy()
    prices = np.concatenate([ohlc, np.ones((n_assets, n_time, 1))], axis=2)
    np.save(folder / "features.npy", features.astype(np.float32))
    np.save(folder / "prices.npy", prices.astype(np.float64))
    np.save(folder / "timestamps.npy", start_ns + HOUR_NS * np.arange(n_time, dtype=np.int64))
    meta = {
        "format": STORE_FORMAT,
        "hash": "handmade",
        "assets": [f"A{i}" for i in range(n_assets)],
        "feature_names": [f"f{i}" for i in range(n_features)],
        "bar_ns": HOUR_NS,
        "config": {"features": {"clip": 5.0}},
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return restamp(folder)


def restamp(folder: Path) -> FeatureStore:
    """Record the arrays now in `folder` in its meta.json (after a test rewrote them), attached."""
    meta = json.loads((folder / "meta.json").read_text())
    meta["arrays"] = describe_arrays(folder)
    (folder / "meta.json").write_text(json.dumps(meta))
    return FeatureStore.attach(folder)


def poisoned_copy(
    store: FeatureStore, folder: Path, start: int, stop: int, window: int
) -> FeatureStore:
    """A copy whose features outside rows [start-window+1, stop) and prices outside [start, stop) are NaN."""
    shutil.copytree(store.path, folder)
    features = np.load(folder / "features.npy")
    prices = np.load(folder / "prices.npy")
    features[:, : start - window + 1] = np.nan
    features[:, stop:] = np.nan
    prices[:, :start] = np.nan
    prices[:, stop:] = np.nan
    np.save(folder / "features.npy", features)
    np.save(folder / "prices.npy", prices)
    return restamp(folder)
