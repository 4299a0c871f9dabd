"""The feature store: reuse, invalidation, atomic builds under SIGKILL, zero-copy attach."""

from __future__ import annotations

import hashlib
import json
import pickle
import signal
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import UserError
from core.features.build import export_parquet, open_store
from core.features.store import FeatureStore
from tests.conftest import PYTHON, REPO_ROOT
from tests.helpers.datasets import bars, write_csv
from tests.helpers.stores import SMALL_FEATURES, small_config


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "bars", bars(1_500, n_assets=3))


def test_build_then_reuse(dataset: Path, tmp_path: Path) -> None:
    store, built = open_store(small_config(), dataset, tmp_path / "cache")
    assert built and store.features.dtype == np.float32
    assert store.features.shape == (3, len(store.timestamps), len(store.feature_names))
    assert store.prices.shape == (3, len(store.timestamps), 5)
    assert np.isfinite(store.features).all()
    again, built_again = open_store(small_config(), dataset, tmp_path / "cache")
    assert not built_again and again.path == store.path
    assert isinstance(again.features, np.memmap)


def test_changed_file_or_setting_rebuilds(dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first, _ = open_store(small_config(), dataset, cache)
    other_setting, built = open_store(small_config("features.rsi_period=7"), dataset, cache)
    assert built and other_setting.path != first.path
    frame = pd.read_csv(dataset / "SYN02.csv")
    frame.loc[700, "close"] *= 1.0001
    frame.to_csv(dataset / "SYN02.csv", index=False)
    edited, built = open_store(small_config(), dataset, cache)
    assert built and edited.path not in (first.path, other_setting.path)
    unchanged_paths = small_config("data.cache_dir=elsewhere", "env.fee_bps=9")
    _, built = open_store(unchanged_paths, dataset, cache)
    assert not built  # settings that do not change a stored value do not rebuild


def test_a_half_written_store_is_never_trusted(dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    store, _ = open_store(small_config(), dataset, cache)
    (store.path / "meta.json").unlink()  # as if a copy was interrupted
    rebuilt, built = open_store(small_config(), dataset, cache)
    assert built and rebuilt.path == store.path and (rebuilt.path / "meta.json").is_file()


KILL_DURING_BUILD = """
import sys
from pathlib import Path
import core.features.matrix as features
from core.config import load_config
from core.features.build import open_store

real = features.normalise
def slow(*args, **kwargs):
    print("computing", flush=True)
    import time; time.sleep(30)
    return real(*args, **kwargs)
features.normalise = slow
open_store(load_config(overrides=sys.argv[3:]), Path(sys.argv[1]), Path(sys.argv[2]))
"""


def test_sigkill_during_build_leaves_nothing_trusted(dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    child = subprocess.Popen(
        [PYTHON, "-c", KILL_DURING_BUILD, str(dataset), str(cache), *SMALL_FEATURES],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "computing"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    leftovers = [p.name for p in cache.iterdir()]
    assert leftovers and all(name.startswith(".building-") for name in leftovers)
    store, built = open_store(small_config(), dataset, cache)
    assert built and np.isfinite(store.features).all()
    assert [p.name for p in cache.iterdir()] == [store.path.name]  # the dead build was swept


READ_STORE = """
import hashlib, os, sys, psutil
from core.features.store import FeatureStore
store = FeatureStore.attach(sys.argv[1])
digest = hashlib.sha256(store.features.tobytes() + store.prices.tobytes()).hexdigest()
print(digest, "pandas" in sys.modules)
"""


def test_processes_attach_and_read_identical_values(dataset: Path, tmp_path: Path) -> None:
    store, _ = open_store(small_config(), dataset, tmp_path / "cache")
    expected = hashlib.sha256(
        np.asarray(store.features).tobytes() + np.asarray(store.prices).tobytes()
    ).hexdigest()
    children = [
        subprocess.Popen(
            [PYTHON, "-c", READ_STORE, str(store.path)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [child.communicate(timeout=60)[0].split() for child in children]
    assert all(child.returncode == 0 for child in children)
    assert outputs == [[expected, "False"]] * 4  # same bytes; attaching needs no pandas


def test_store_pickles_as_its_path(dataset: Path, tmp_path: Path) -> None:
    store, _ = open_store(small_config(), dataset, tmp_path / "cache")
    payload = pickle.dumps(store)
    assert len(payload) < 1_000 < store.features.nbytes
    clone = pickle.loads(payload)
    np.testing.assert_array_equal(clone.features, store.features)


def test_attach_refuses_an_unfinished_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"not a usable feature store: not finished"):
        FeatureStore.attach(tmp_path)


def test_store_matches_the_single_asset_computation(dataset: Path, tmp_path: Path) -> None:
    """Parallel workers and the warm-up trim put each asset's rows where they belong."""
    from core.data.load import load_dataset
    from core.features.matrix import asset_features
    from core.features.resample import Bars
    from core.features.resolved import with_inferred

    config = small_config()
    store, _ = open_store(config, dataset, tmp_path / "cache", workers=2)
    market = load_dataset(config.data, dataset)
    warmup = store.meta["warmup_bars"]
    for index in range(len(market.assets)):
        base = Bars(market.timestamps, market.ohlcv[index], market.bar_ns)
        features, _ = asset_features(base, with_inferred(config, store.meta).features)
        np.testing.assert_array_equal(store.features[index], features[warmup:])
    np.testing.assert_array_equal(store.timestamps, market.timestamps[warmup:])


def test_parallel_build_equals_serial(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.features.build as feature_store

    serial, _ = open_store(small_config(), dataset, tmp_path / "serial", workers=1)
    monkeypatch.setattr(feature_store, "PARALLEL_MIN_BARS", 0)
    parallel, _ = open_store(small_config(), dataset, tmp_path / "parallel", workers=2)
    np.testing.assert_array_equal(serial.features, parallel.features)


@pytest.mark.parametrize(
    "stamps, timezone",
    [
        ("naive", "America/New_York"),  # naive series read in its own timezone
        ("aware", None),  # aware series: its offset wins, no tz_localize crash
    ],
)
def test_exogenous_join_is_as_of_the_bar_close(
    tmp_path: Path, stamps: str, timezone: str | None
) -> None:
    from core.data.exogenous import as_of, load_exogenous

    days = pd.date_range("2017-01-01", periods=10, freq="D").tz_localize("America/New_York")
    text = (
        days.strftime("%Y-%m-%d %H:%M") if stamps == "naive" else days.map(pd.Timestamp.isoformat)
    )
    pd.DataFrame({"Date": text, "rate": np.arange(10.0)}).to_csv(tmp_path / "rate.csv", index=False)
    config = small_config(
        f"data.exogenous=[{{name: rate, path: '{tmp_path / 'rate.csv'}', available_after: 1h"
        + (f", timezone: {timezone}" if timezone else "")
        + "}]"
    )
    series = load_exogenous(config.data.exogenous[0], config.data, 0)
    utc_known = days.tz_convert("UTC").as_unit("ns").asi8 + 3_600 * 10**9
    np.testing.assert_array_equal(series.known_at, utc_known)
    closes = np.arange(utc_known[0] - 7_200 * 10**9, utc_known[-1], 1_800 * 10**9)
    joined = as_of(series, closes)[:, 0]
    expected = np.searchsorted(utc_known, closes, side="right") - 1.0
    expected[expected < 0] = np.nan
    np.testing.assert_array_equal(joined, expected)


def test_exogenous_features_enter_the_store(tmp_path: Path) -> None:
    dataset = write_csv(tmp_path / "bars", bars(1_500, n_assets=2))
    days = pd.date_range("2016-12-25", periods=80, freq="D")
    frame = pd.DataFrame({"Date": days.strftime("%Y-%m-%d"), "rate": np.sin(np.arange(80.0))})
    frame.to_csv(tmp_path / "rate.csv", index=False)
    spec = "data.exogenous=[{name: macro, path: '%s', available_after: 1d}]" % (
        tmp_path / "rate.csv"
    )
    store, _ = open_store(small_config(spec), dataset, tmp_path / "cache")
    assert store.feature_names[-2:] == ["x_macro_rate", "x_macro_rate_chg"]
    np.testing.assert_array_equal(store.features[0, :, -2:], store.features[1, :, -2:])
    assert np.isfinite(store.features).all()


def test_export_features_writes_long_parquet(dataset: Path, tmp_path: Path) -> None:
    store, _ = open_store(small_config(), dataset, tmp_path / "cache")
    out = tmp_path / "out" / "features.parquet"
    rows = export_parquet(store, out)
    table = pd.read_parquet(out)
    assert rows == len(table) == 3 * len(store.timestamps)
    assert list(table.columns) == ["timestamp", "asset", *store.feature_names]
    second = table[table["asset"] == "SYN02"]
    np.testing.assert_array_equal(second.iloc[:, 2:].to_numpy(), store.features[1])
    assert str(second["timestamp"].dt.tz) == "UTC"
    assert [p.name for p in out.parent.iterdir()] == ["features.parquet"]
    with pytest.raises(UserError, match=r"must end in \.parquet"):
        export_parquet(store, tmp_path / "features.csv")


def test_meta_records_inputs_and_versions(dataset: Path, tmp_path: Path) -> None:
    store, _ = open_store(small_config(), dataset, tmp_path / "cache")
    meta = json.loads((store.path / "meta.json").read_text())
    assert meta["assets"] == ["SYN01", "SYN02", "SYN03"]
    assert meta["hash"].startswith(store.path.name)
    assert {"numpy", "pandas", "ta-lib"} <= set(meta["versions"])
    assert meta["config"]["features"]["timeframes"] == ["1h", "4h"]
    assert meta["summary"]["bars"] == 1_500
