"""Loading every supported format, and one clear message for every kind of bad input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import Config, DataConfig, load_config
from core.data.load import load_dataset
from core.data.timestamps import parse_timestamps
from core.errors import UserError
from core.folds import check_length
from tests.helpers.datasets import HOUR_NS, bars, write_csv


def data_config(*overrides: str) -> DataConfig:
    return load_config(overrides=[f"data.{o}" for o in overrides]).data


def one_asset(n_bars: int = 48) -> pd.DataFrame:
    return bars(n_bars, n_assets=1)["SYN01"]


def utc_ns(frame: pd.DataFrame) -> np.ndarray:
    return frame["timestamp"].astype("int64").to_numpy()


# ---------------------------------------------------------------- formats


def test_iso_with_offsets_becomes_utc(tmp_path: Path) -> None:
    frame = one_asset()
    local = frame.assign(
        timestamp=frame["timestamp"].dt.tz_convert("Asia/Tokyo").map(pd.Timestamp.isoformat)
    )
    write_csv(tmp_path, {"BTC": local})
    market = load_dataset(data_config(), tmp_path)
    np.testing.assert_array_equal(market.timestamps, utc_ns(frame))
    np.testing.assert_allclose(market.ohlcv[0, :, 3], frame["close"])


def test_naive_timestamps_are_read_in_the_configured_timezone(tmp_path: Path) -> None:
    frame = one_asset()
    naive = frame.assign(
        timestamp=frame["timestamp"].dt.tz_convert("Europe/Berlin").dt.strftime("%Y-%m-%d %H:%M:%S")
    )
    write_csv(tmp_path, {"BTC": naive})
    market = load_dataset(data_config("timezone=Europe/Berlin"), tmp_path)
    np.testing.assert_array_equal(market.timestamps, utc_ns(frame))


@pytest.mark.parametrize("unit, scale", [("s", 10**9), ("ms", 10**6), ("us", 10**3), ("ns", 1)])
def test_epoch_units_are_detected(tmp_path: Path, unit: str, scale: int) -> None:
    frame = one_asset()
    write_csv(tmp_path, {"BTC": frame.assign(timestamp=utc_ns(frame) // scale)})
    market = load_dataset(data_config(), tmp_path)
    np.testing.assert_array_equal(market.timestamps, utc_ns(frame))


def test_day_first_dates_with_milliseconds(tmp_path: Path) -> None:
    frame = one_asset(24 * 40)  # 40 days: some days are > 12, so the order is settled
    text = frame["timestamp"].dt.strftime("%d.%m.%Y %H:%M:%S.000")
    write_csv(
        tmp_path, {"EURUSD": frame.assign(timestamp=text).rename(columns={"timestamp": "Gmt time"})}
    )
    market = load_dataset(data_config(), tmp_path)
    np.testing.assert_array_equal(market.timestamps, utc_ns(frame))


def test_ambiguous_day_month_order_is_refused_with_both_patterns(tmp_path: Path) -> None:
    frame = one_asset(24 * 5)  # 1-5 January: every date fits both orders
    text = frame["timestamp"].dt.strftime("%d/%m/%Y %H:%M")
    write_csv(tmp_path, {"BTC": frame.assign(timestamp=text)})
    with pytest.raises(UserError) as caught:
        load_dataset(data_config(), tmp_path)
    message = str(caught.value)
    assert "day-first or month-first" in message
    assert "'%d/%m/%Y %H:%M'" in message and "'%m/%d/%Y %H:%M'" in message
    # ...and the explicit setting resolves it
    market = load_dataset(data_config("timestamp_format='%d/%m/%Y %H:%M'"), tmp_path)
    np.testing.assert_array_equal(market.timestamps, utc_ns(frame))


def test_parquet_with_aware_datetimes_and_any_column_case(tmp_path: Path) -> None:
    frame = one_asset().rename(columns=str.upper)
    frame.to_parquet(tmp_path / "ETH.parquet")
    market = load_dataset(data_config(), tmp_path)
    assert market.assets == ("ETH",)
    np.testing.assert_allclose(market.ohlcv[0, :, 1], frame["HIGH"])


def test_folder_per_asset_uses_the_base_timeframe_file(tmp_path: Path) -> None:
    frame = one_asset()
    write_csv(tmp_path / "BTC", {"1h": frame, "4h": frame.iloc[::4]})
    market = load_dataset(data_config(), tmp_path)
    assert market.assets == ("BTC",) and len(market.timestamps) == len(frame)
    assert market.summary.assets[0].ignored_files == ["4h.csv"]


def test_configured_timestamp_column(tmp_path: Path) -> None:
    frame = one_asset().rename(columns={"timestamp": "when"})
    write_csv(tmp_path, {"BTC": frame.assign(extra_time=1)})
    with pytest.raises(UserError, match="no timestamp column found"):
        load_dataset(data_config(), tmp_path)
    market = load_dataset(data_config("timestamp_column=when"), tmp_path)
    assert len(market.timestamps) == len(frame)


@given(
    stamps=st.lists(
        st.integers(1_000_000_000, 4_000_000_000), min_size=1, max_size=20, unique=True
    ).map(sorted),
    unit=st.sampled_from(["s", "ms", "us", "ns"]),
)
def test_epoch_round_trip(stamps: list[int], unit: str) -> None:
    scale = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    values = pd.Series([s * scale for s in stamps])
    parsed = parse_timestamps(values, "auto", "UTC", "test", ("f", "tz"))
    np.testing.assert_array_equal(parsed, np.array(stamps, dtype=np.int64) * 10**9)


# ---------------------------------------------------------------- bad input


def _set(row: int, column: str, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.astype({column: object}) if isinstance(value, str) else frame.copy()
        frame.loc[row, column] = value
        return frame

    return change


BAD_INPUTS = {
    "unsorted": (lambda f: f.iloc[[0, 1, 2, 4, 3, *range(5, len(f))]], "line 6", "not sorted"),
    "duplicated": (lambda f: pd.concat([f.iloc[:4], f.iloc[3:]]), "line 6", "duplicated timestamp"),
    "nan close": (_set(7, "close", np.nan), "line 9", "close is nan"),
    "inf high": (_set(7, "high", np.inf), "line 9", "high is inf"),
    "zero price": (_set(9, "low", 0.0), "line 11", "not a positive price"),
    "negative price": (_set(9, "open", -1.0), "line 11", "not a positive price"),
    "high below body": (_set(5, "high", 1e-3), "line 7", "below max(open, close)"),
    "low above body": (_set(5, "low", 1e9), "line 7", "above min(open, close)"),
    "negative volume": (_set(3, "volume", -5.0), "line 5", "volume -5 is negative"),
    "text in a price": (_set(3, "close", "12,5"), "row 4", "is not a number"),
    "missing column": (lambda f: f.drop(columns=["volume"]), "missing column(s) volume", "fix:"),
    "mixed spacing": (
        lambda f: f.assign(
            timestamp=f["timestamp"].where(f.index != 10, f["timestamp"] + pd.Timedelta("30min"))
        ),
        "line 12",
        "mixed bar spacing",
    ),
    "empty timestamp": (
        lambda f: f.assign(timestamp=f["timestamp"].astype(object).where(f.index != 2, None)),
        "row 3",
        "empty",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_file_row_and_fix(tmp_path: Path, case: str) -> None:
    mutate, where, what = BAD_INPUTS[case]
    frame = mutate(one_asset()).reset_index(drop=True)
    write_csv(tmp_path, {"BTC": frame})
    with pytest.raises(UserError) as caught:
        load_dataset(data_config(), tmp_path)
    message = str(caught.value)
    assert "BTC.csv" in message and where in message and what in message
    assert "fix:" in message


def test_parquet_rows_are_named_as_rows(tmp_path: Path) -> None:
    frame = one_asset()
    frame.loc[7, "close"] = np.nan
    frame.to_parquet(tmp_path / "BTC.parquet")
    with pytest.raises(UserError, match=r"BTC.parquet, row 8 \(.*UTC\): close is nan"):
        load_dataset(data_config(), tmp_path)


def test_missing_folder_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="dataset not found"):
        load_dataset(data_config(), tmp_path / "nope")
    with pytest.raises(UserError, match="no data files"):
        load_dataset(data_config(), tmp_path)


def test_garbage_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "BTC.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(UserError, match=r"cannot read .*BTC\.parquet"):
        load_dataset(data_config(), tmp_path)


RESEARCH_WINDOWS = [
    "walk_forward.train_years=5",
    "walk_forward.validation_months=6",
    "walk_forward.test_months=6",
]


def test_dataset_too_short_says_needed_and_available(default_config: Config) -> None:
    timestamps = np.arange(20_000, dtype=np.int64) * HOUR_NS
    with pytest.raises(UserError) as caught:
        check_length(timestamps, HOUR_NS, load_config(overrides=RESEARCH_WINDOWS), 1_000)
    message = str(caught.value)
    assert "dataset too short" in message and "the dataset has 20,000" in message
    assert "walk_forward.train_years" in message
    check_length(timestamps, HOUR_NS, default_config, warmup_bars=1_000)  # auto: sized to fit


def test_long_enough_dataset_passes(default_config: Config) -> None:
    timestamps = np.arange(70_000, dtype=np.int64) * HOUR_NS
    check_length(timestamps, HOUR_NS, default_config, warmup_bars=1_000)


# ---------------------------------------------------------------- alignment


def two_assets_with_holes(tmp_path: Path, holes: list[int]) -> Path:
    frames = bars(100, n_assets=2)
    frames["SYN02"] = frames["SYN02"].drop(index=holes)
    return write_csv(tmp_path, frames)


def test_ffill_fills_flat_bars_and_reports(tmp_path: Path) -> None:
    folder = two_assets_with_holes(tmp_path, [10, 11, 50])
    market = load_dataset(data_config("missing_bars=ffill", "ffill_limit=2"), folder)
    assert len(market.timestamps) == 100
    filled = market.ohlcv[1, 10]
    assert (filled[:4] == market.ohlcv[1, 9, 3]).all() and filled[4] == 0
    assert [a.filled for a in market.summary.assets] == [0, 3]


def test_ffill_limit_exceeded_is_an_error(tmp_path: Path) -> None:
    folder = two_assets_with_holes(tmp_path, [10, 11, 12])
    with pytest.raises(UserError, match=r"3 bars in a row are missing .*data.ffill_limit is 2"):
        load_dataset(data_config("ffill_limit=2"), folder)


def test_drop_removes_the_bar_from_every_asset(tmp_path: Path) -> None:
    folder = two_assets_with_holes(tmp_path, [10, 50])
    market = load_dataset(data_config("missing_bars=drop"), folder)
    assert len(market.timestamps) == 98
    assert market.summary.assets[1].missing_dropped == 2 and market.summary.gaps == 2


def test_fail_policy_names_asset_and_first_missing_bar(tmp_path: Path) -> None:
    folder = two_assets_with_holes(tmp_path, [10, 50])
    with pytest.raises(UserError, match=r"SYN02.csv: 2 bar\(s\) missing .*2017-01-01 10:00 UTC"):
        load_dataset(data_config("missing_bars=fail"), folder)


def test_assets_are_trimmed_to_their_common_span(tmp_path: Path) -> None:
    frames = bars(100, n_assets=2)
    frames["SYN01"] = frames["SYN01"].iloc[5:]
    frames["SYN02"] = frames["SYN02"].iloc[:90]
    market = load_dataset(data_config(), write_csv(tmp_path, frames))
    assert len(market.timestamps) == 85
    assert [a.trimmed for a in market.summary.assets] == [10, 5]


def test_sessions_calendar_expects_only_observed_bars(tmp_path: Path) -> None:
    frames = bars(24 * 7, n_assets=2)
    for name, frame in frames.items():  # exchange hours: 09:00-16:00 UTC only
        frames[name] = frame[frame["timestamp"].dt.hour.between(9, 16)]
    market = load_dataset(
        data_config("calendar=sessions", "missing_bars=fail"), write_csv(tmp_path, frames)
    )
    assert len(market.timestamps) == 8 * 7 and market.summary.gaps == 6
    with pytest.raises(UserError, match="missing"):
        load_dataset(data_config("calendar=continuous", "missing_bars=fail"), tmp_path)


@settings(max_examples=40)
@given(
    holes=st.lists(st.sets(st.integers(1, 58), max_size=12), min_size=2, max_size=3),
    policy=st.sampled_from(["ffill", "drop"]),
)
def test_alignment_keeps_real_bars_and_handles_holes(
    tmp_path_factory: pytest.TempPathFactory, holes: list[set[int]], policy: str
) -> None:
    """Real bars come through unchanged; ffill yields the full grid, drop only common bars."""
    frames = bars(60, n_assets=len(holes))
    folder = tmp_path_factory.mktemp("holes")
    for (name, frame), missing in zip(frames.items(), holes, strict=True):
        frame.drop(index=sorted(missing)).to_parquet(folder / f"{name}.parquet")
    market = load_dataset(data_config(f"missing_bars={policy}", "ffill_limit=60"), folder)
    every = set().union(*holes)
    expected_bars = 60 if policy == "ffill" else 60 - len(every)
    assert len(market.timestamps) == expected_bars
    for index, (frame, missing) in enumerate(zip(frames.values(), holes, strict=True)):
        grid = utc_ns(frame)
        kept = np.isin(grid, market.timestamps) & ~np.isin(np.arange(60), sorted(missing))
        rows = np.searchsorted(market.timestamps, grid[kept])
        np.testing.assert_array_equal(
            market.ohlcv[index, rows], frame.to_numpy()[kept, 1:].astype(float)
        )
        assert market.summary.assets[index].filled == (len(missing) if policy == "ffill" else 0)


def test_day_first_dashes_are_local_times_not_offsets(tmp_path: Path) -> None:
    """'31-01-2017' ends like an offset ('-2017') but is a naive date in data.timezone."""
    frame = bars(24 * 40, n_assets=1, seed=2)["SYN01"].iloc[::24].reset_index(drop=True)
    text = frame["timestamp"].dt.strftime("%d-%m-%Y")
    write_csv(tmp_path, {"SPY": frame.assign(timestamp=text)})
    market = load_dataset(data_config("bar=1d", "timezone=America/New_York"), tmp_path)
    expected = frame["timestamp"].dt.tz_localize(None).dt.tz_localize("America/New_York")
    np.testing.assert_array_equal(market.timestamps, expected.dt.tz_convert("UTC").astype("int64"))


def test_iso_mixing_offsets_and_naive_is_refused(tmp_path: Path) -> None:
    frame = one_asset()
    text = frame["timestamp"].map(pd.Timestamp.isoformat)
    text[5] = text[5].replace("+00:00", "")
    write_csv(tmp_path, {"BTC": frame.assign(timestamp=text)})
    with pytest.raises(UserError, match=r"row 6: .* has no UTC offset while other rows do"):
        load_dataset(data_config(), tmp_path)
