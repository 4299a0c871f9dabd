"""Data as users have it, loaded with no settings: bar, calendar and timeframes inferred.

Four markets, each with one real-looking hole inside a session: crypto (24/7 hourly), forex
(hourly, closed Friday 21:00 to Sunday 22:00 UTC), an exchange (30-minute bars 14:30-21:00 UTC,
Monday to Friday, with holidays) and daily business-day bars saved by pandas' `df.to_csv()`
(dates in an unnamed first column). Each loads with the default config, infers the right values,
hands its hole to `data.missing_bars`, and annualises by the inferred calendar.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import DataConfig, dump_config, load_config
from core.data.calendar import build_timeline, infer_bar
from core.data.load import MarketData, load_dataset
from core.data.source import sample_config
from core.data.synthetic import generate_from_config, sample_name
from core.envs.settings import env_settings
from core.errors import UserError
from core.evaluation.judge import annualisation_of
from core.features.build import open_store
from core.features.matrix import auto_timeframes, feature_names, timeframe_labels
from core.features.resolved import inferred_settings, with_inferred
from core.features.windows import resolve_windows
from core.hardware.planner import estimate_policy_shape
from core.units import DAY_NS, HOUR_NS, MINUTE_NS, WEEK_NS, YEAR_NS
from tests.helpers.datasets import bars
from training.run.files import RunFiles
from training.run.folder import _inferred_yaml, run_config

MONDAY = pd.Timestamp("2021-01-04", tz="UTC")  # weeks below start on this Monday


def data_config(*overrides: str) -> DataConfig:
    return load_config(overrides=[f"data.{o}" for o in overrides]).data


def on_times(stamps: pd.DatetimeIndex, seed: int = 1) -> pd.DataFrame:
    """Synthetic OHLCV bars stamped at these (UTC) bar open times."""
    frame = bars(len(stamps), n_assets=1, seed=seed)["SYN01"]
    return frame.assign(timestamp=stamps)


def write(folder: Path, frames: dict[str, pd.DataFrame]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


def ns(stamps: pd.DatetimeIndex) -> np.ndarray:
    return stamps.as_unit("ns").asi8


def names(market: MarketData) -> list[str]:
    return [item.key for item in market.summary.inferred]


# ---------------------------------------------------------------- the four markets


def crypto_hours(weeks: int = 6) -> pd.DatetimeIndex:
    return pd.date_range(MONDAY, periods=weeks * 168, freq="1h")


def forex_hours(weeks: int = 6) -> pd.DatetimeIndex:
    hours = crypto_hours(weeks)
    day, hour = hours.day_of_week, hours.hour
    closed = ((day == 4) & (hour >= 21)) | (day == 5) | ((day == 6) & (hour < 22))
    return hours[~closed]


HOLIDAYS = ("2021-01-18", "2021-02-17")  # a Monday (a long weekend) and a Wednesday


def exchange_half_hours(weeks: int = 8) -> pd.DatetimeIndex:
    slots = pd.date_range(MONDAY, periods=weeks * 7 * 48, freq="30min")
    minute = slots.hour * 60 + slots.minute
    open_ = (slots.day_of_week < 5) & (minute >= 14 * 60 + 30) & (minute < 21 * 60)
    holiday = np.isin(slots.strftime("%Y-%m-%d"), HOLIDAYS)
    return slots[open_ & ~holiday]


def business_days(n_days: int = 400) -> pd.DatetimeIndex:
    days = pd.bdate_range("2019-01-02", periods=n_days, tz="UTC")
    return days[~np.isin(days.strftime("%m-%d"), ["01-01", "07-04", "12-25"])]


def crypto_dataset(folder: Path) -> tuple[Path, pd.Timestamp]:
    hours = crypto_hours()
    hole = hours[500]  # a Sunday 20:00: no asset has this bar
    return write(folder, {"BTC": on_times(hours.delete(500))}), hole


def forex_dataset(folder: Path) -> tuple[Path, pd.Timestamp]:
    hours = forex_hours()
    hole = pd.Timestamp("2021-01-13 10:00", tz="UTC")  # a Wednesday morning
    return write(folder, {"EURUSD": on_times(hours[hours != hole])}), hole


def exchange_dataset(folder: Path) -> tuple[Path, pd.Timestamp]:
    slots = exchange_half_hours()
    hole = pd.Timestamp("2021-01-28 17:00", tz="UTC")  # a Thursday afternoon
    return write(folder, {"SPY": on_times(slots[slots != hole])}), hole


def daily_dataset(folder: Path) -> tuple[Path, pd.Timestamp]:
    """Two stocks saved the pandas way: dates as the (unnamed) index, `df.to_csv()`."""
    days = business_days()
    hole = days[150]  # one stock lacks a trading day the other has
    folder.mkdir(parents=True, exist_ok=True)
    for name, seed, stamps in (("AAPL", 1, days), ("MSFT", 2, days[days != hole])):
        frame = on_times(stamps, seed).set_index("timestamp")
        frame.index = frame.index.tz_localize(None).rename(None)  # as most downloads are
        frame.to_csv(folder / f"{name}.csv")
    return folder, hole


MARKETS: dict[str, tuple[Callable[[Path], tuple[Path, pd.Timestamp]], str, str, list[str]]] = {
    "crypto": (crypto_dataset, "1h", "continuous", ["1h", "4h", "1d"]),
    "forex": (forex_dataset, "1h", "sessions", ["1h", "4h", "1d"]),
    "exchange": (exchange_dataset, "30min", "sessions", ["30min", "4h", "1d"]),
    "daily": (daily_dataset, "1d", "sessions", ["1d", "7d"]),
}


@pytest.mark.parametrize("market_name", sorted(MARKETS))
def test_loads_with_the_defaults_and_fills_the_hole(tmp_path: Path, market_name: str) -> None:
    make, bar, calendar, timeframes = MARKETS[market_name]
    folder, hole = make(tmp_path)
    market = load_dataset(data_config(), folder)
    summary = market.summary
    assert (summary.bar, summary.calendar) == (bar, calendar)
    assert timeframe_labels(load_config().features, market.bar_ns) == timeframes
    assert {"data.bar", "data.calendar"} <= set(names(market))
    # The hole is on the timeline, filled flat at the previous close with no volume.
    row = int(np.searchsorted(market.timestamps, hole.value))
    assert market.timestamps[row] == hole.value
    missing = [i for i, report in enumerate(summary.assets) if report.filled]
    assert len(missing) == 1 and summary.assets[missing[0]].filled == 1
    filled = market.ohlcv[missing[0], row]
    assert (filled[:4] == market.ohlcv[missing[0], row - 1, 3]).all() and filled[4] == 0.0
    for item in summary.inferred:
        assert "if wrong" in item.line() and item.fix.split("=")[0] == item.key


@pytest.mark.parametrize("market_name", ["forex", "exchange"])
def test_hole_inside_a_session_follows_missing_bars(tmp_path: Path, market_name: str) -> None:
    make, *_ = MARKETS[market_name]
    folder, hole = make(tmp_path)
    filled = load_dataset(data_config(), folder)
    assert filled.summary.holes == 1
    with pytest.raises(UserError, match=f"1 bar\\(s\\) missing .*{hole:%Y-%m-%d %H:%M} UTC"):
        load_dataset(data_config("missing_bars=fail"), folder)
    dropped = load_dataset(data_config("missing_bars=drop"), folder)
    assert hole.value not in dropped.timestamps
    assert len(dropped.timestamps) == len(filled.timestamps) - 1


def test_forex_weekend_is_closed_not_missing(tmp_path: Path) -> None:
    folder, _ = forex_dataset(tmp_path)
    market = load_dataset(data_config(), folder)
    saturday = pd.Timestamp("2021-01-09 12:00", tz="UTC").value
    assert saturday not in market.timestamps
    assert len(market.timestamps) == len(forex_hours())
    reason = next(i for i in market.summary.inferred if i.key == "data.calendar").reason
    assert "open Sun 22:00-24:00, Mon-Thu 00:00-24:00, Fri 00:00-21:00 UTC" in reason
    # Forced 24/7, each weekend is a stretch every asset lacks: a closure, skipped and listed.
    forced = load_dataset(data_config("calendar=continuous"), folder)
    np.testing.assert_array_equal(forced.timestamps, market.timestamps)
    closures = forced.summary.closures
    assert closures.count == 6 and closures.bars == 6 * 49
    assert (
        closures.listed[0]
        == "closed 2021-01-08 21:00 → 2021-01-10 22:00 UTC (49 bars, every asset)"
    )
    # missing_bars=fail still refuses them: nothing says the market was shut.
    with pytest.raises(UserError, match="missing on the common timeline"):
        load_dataset(data_config("calendar=continuous", "missing_bars=fail"), folder)


def test_exchange_holidays_are_closed_and_hours_described(tmp_path: Path) -> None:
    folder, _ = exchange_dataset(tmp_path)
    market = load_dataset(data_config(), folder)
    days = set(pd.DatetimeIndex(market.timestamps, tz="UTC").strftime("%Y-%m-%d"))
    assert not days & set(HOLIDAYS)
    assert len(market.timestamps) == len(exchange_half_hours())
    reason = next(i for i in market.summary.inferred if i.key == "data.calendar").reason
    assert "open Mon-Fri 14:30-21:00 UTC" in reason
    # An explicit sessions calendar finds the same hole (the weekly template, not other assets).
    explicit = load_dataset(data_config("calendar=sessions", "bar=30min"), folder)
    np.testing.assert_array_equal(explicit.timestamps, market.timestamps)
    assert explicit.summary.inferred == [] and explicit.summary.holes == 1


def test_daylight_saving_makes_no_holes(tmp_path: Path) -> None:
    """New York hours in UTC move by an hour twice a year: the edges shift, nothing is missing."""
    local = pd.date_range("2021-01-04", "2022-12-30", freq="30min", tz="America/New_York")
    minute = local.hour * 60 + local.minute
    stamps = local[(local.day_of_week < 5) & (minute >= 9 * 60 + 30) & (minute < 16 * 60)]
    utc = stamps.tz_convert("UTC")
    market = load_dataset(data_config(), write(tmp_path, {"SPY": on_times(utc)}))
    assert market.summary.calendar == "sessions" and market.summary.holes == 0
    np.testing.assert_array_equal(market.timestamps, ns(utc))


def test_daily_pandas_csv_finds_the_unnamed_date_column(tmp_path: Path) -> None:
    folder, _ = daily_dataset(tmp_path)
    assert (folder / "AAPL.csv").read_text().startswith(",open,high,low,close,volume\n")
    market = load_dataset(data_config(), folder)
    assert names(market)[0] == "data.timestamp_column"
    assert market.summary.assets[0].time_column == "Unnamed: 0"
    assert market.summary.gaps > 0  # weekends and holidays are closures
    assert pd.Timestamp("2019-07-04", tz="UTC").value not in market.timestamps
    # One stock alone: a missing weekday is a holiday (closed); a bar only another asset has
    # is the only way a daily hole shows.
    alone = load_dataset(data_config(), folder / "MSFT.csv")
    assert alone.summary.holes == 0 and alone.summary.assets[0].filled == 0


def test_unnamed_column_of_row_numbers_is_not_a_time(tmp_path: Path) -> None:
    frame = on_times(crypto_hours(1))
    frame.drop(columns="timestamp").to_csv(tmp_path / "BTC.csv")  # index 0, 1, 2, ...
    with pytest.raises(UserError, match="row number index") as caught:
        load_dataset(data_config(), tmp_path)
    assert "fix: set data.timestamp_column" in str(caught.value)
    frame.to_csv(tmp_path / "BTC.csv")  # a named timestamp column wins over the index
    assert len(load_dataset(data_config(), tmp_path).timestamps) == 168


def test_parquet_with_a_date_index(tmp_path: Path) -> None:
    frame = on_times(crypto_hours(1)).set_index("timestamp")
    frame.index = frame.index.rename(None)
    frame.to_parquet(tmp_path / "BTC.parquet")  # the index is stored as the index
    market = load_dataset(data_config(), tmp_path)
    np.testing.assert_array_equal(market.timestamps, ns(crypto_hours(1)))


def test_timeframe_folder_reads_the_shortest_timeframe(tmp_path: Path) -> None:
    minutes = pd.date_range(MONDAY, periods=2_000, freq="5min")
    write(tmp_path / "BTC", {"BTC_5min": on_times(minutes), "BTC_1h": on_times(minutes[::12])})
    write(tmp_path / "BTC", {"2021": on_times(minutes[::3])})  # a year, not a timeframe
    market = load_dataset(data_config(), tmp_path)
    assert market.summary.bar == "5min" and len(market.timestamps) == 2_000
    assert sorted(market.summary.assets[0].ignored_files) == ["2021.csv", "BTC_1h.csv"]


# ---------------------------------------------------------------- rules and their limits


@settings(max_examples=60)
@given(
    bar=st.sampled_from([MINUTE_NS, 5 * MINUTE_NS, 15 * MINUTE_NS, HOUR_NS, 4 * HOUR_NS, DAY_NS]),
    n_bars=st.integers(50, 400),
    removed=st.sets(st.integers(1, 48), max_size=8),
    closure=st.integers(0, 30),
)
def test_bar_is_the_most_common_step(
    bar: int, n_bars: int, removed: set[int], closure: int
) -> None:
    stamps = np.arange(n_bars, dtype=np.int64) * bar
    stamps[n_bars // 2 :] += closure * bar  # a session break
    kept = np.delete(stamps, sorted(removed))
    assert infer_bar([kept, kept[::2]])[0] == bar


def test_a_set_bar_still_wins_and_is_checked(tmp_path: Path) -> None:
    folder, _ = crypto_dataset(tmp_path)
    assert load_dataset(data_config("bar=1h"), folder).summary.inferred[0].key == "data.calendar"
    with pytest.raises(UserError, match=r"not a multiple of the 2h bar \(data.bar\)"):
        load_dataset(data_config("bar=2h"), folder)


def test_mixed_spacing_names_the_inferred_bar(tmp_path: Path) -> None:
    stamps = crypto_hours(1)
    shifted = stamps.where(np.arange(len(stamps)) != 10, stamps[10] + pd.Timedelta("30min"))
    write(tmp_path, {"BTC": on_times(shifted)})
    with pytest.raises(UserError, match=r"inferred for data\.bar: auto") as caught:
        load_dataset(data_config(), tmp_path)
    assert "data.bar=30min" in str(caught.value)


def test_long_outage_on_a_24_7_market_is_a_closure(tmp_path: Path) -> None:
    hours = crypto_hours()
    write(tmp_path, {"BTC": on_times(hours.delete(range(300, 306)))})
    market = load_dataset(data_config(), tmp_path)
    assert market.summary.calendar == "continuous"
    assert len(market.timestamps) == len(hours) - 6
    assert market.summary.closures.count == 1 and market.summary.assets[0].filled == 0
    # At the limit it is still a short stretch: filled flat, not skipped.
    limit = load_dataset(data_config("ffill_limit=6"), tmp_path)
    assert len(limit.timestamps) == len(hours) and limit.summary.assets[0].filled == 6


@settings(max_examples=40)
@given(
    hours=st.lists(
        st.tuples(st.integers(0, 23), st.integers(1, 24)).map(lambda h: (min(h), max(h))),
        min_size=7,
        max_size=7,
    ),
    weeks=st.integers(3, 5),
    hole_slots=st.sets(st.integers(0, 167), max_size=4),
)
def test_holes_inside_sessions_are_found_and_closures_are_not(
    hours: list[tuple[int, int]], weeks: int, hole_slots: set[int]
) -> None:
    """Any weekly session (one open interval a day, possibly empty); one bar removed in each of a
    few distinct slots of the week: exactly those bars come back as holes, nothing else."""
    grid = MONDAY.value + np.arange(weeks * 168, dtype=np.int64) * HOUR_NS
    slot = np.arange(len(grid)) % 168
    day, hour = slot // 24, slot % 24
    low = np.array([h[0] for h in hours])[day]
    high = np.array([h[1] for h in hours])[day]
    is_open = (hour >= low) & (hour < high)
    if is_open.sum() < 2:
        return
    inside = np.zeros(len(grid), dtype=bool)
    inside[1:-1] = is_open[1:-1] & is_open[:-2] & is_open[2:]
    holes = [
        int(np.flatnonzero(inside & (slot == s))[0])
        for s in hole_slots
        if (inside & (slot == s)).any()
    ]
    holes = [h for h in holes if not any(abs(h - other) == 1 for other in holes if other != h)]
    union = np.delete(grid[is_open], np.searchsorted(grid[is_open], grid[holes]))
    timeline = build_timeline("auto", union, int(union[0]), int(union[-1]), HOUR_NS)
    if is_open.all():
        assert timeline.calendar == "continuous"
    else:
        assert timeline.calendar == "sessions" and timeline.holes == len(holes)
    expected = grid[is_open]
    np.testing.assert_array_equal(
        timeline.timestamps, expected[(expected >= union[0]) & (expected <= union[-1])]
    )


def test_short_data_is_read_by_coverage() -> None:
    """Under two weeks there is no weekly pattern to read: a few holes stay continuous."""
    grid = MONDAY.value + np.arange(60, dtype=np.int64) * HOUR_NS
    union = np.delete(grid, range(10, 22))  # 80 % of the slots
    assert (
        build_timeline("auto", union, int(grid[0]), int(grid[-1]), HOUR_NS).calendar == "continuous"
    )
    night = grid[(grid // HOUR_NS) % 24 < 8]  # 8 hours a day
    assert (
        build_timeline("auto", night, int(night[0]), int(night[-1]), HOUR_NS).calendar == "sessions"
    )


@pytest.mark.parametrize(
    ("bar", "expected"),
    [
        (MINUTE_NS, ["1min", "15min", "1h"]),
        (5 * MINUTE_NS, ["5min", "1h", "4h"]),
        (15 * MINUTE_NS, ["15min", "1h", "4h"]),
        (30 * MINUTE_NS, ["30min", "4h", "1d"]),
        (HOUR_NS, ["1h", "4h", "1d"]),
        (4 * HOUR_NS, ["4h", "1d", "7d"]),
        (DAY_NS, ["1d", "7d"]),
        (WEEK_NS, ["7d"]),
    ],
)
def test_auto_timeframes_are_multiples_of_the_bar(bar: int, expected: list[str]) -> None:
    assert auto_timeframes(bar) == expected


def test_daily_bars_get_features_with_the_defaults() -> None:
    daily, _ = resolve_windows(load_config(), DAY_NS, 252.0)  # business days
    names_ = feature_names(daily.features, DAY_NS)
    assert names_[:3] == ["1d_ret_1", "1d_ret_4", "1d_ret_21"] and "7d_rsi" in names_


def test_planner_estimates_auto_timeframes_as_hourly() -> None:
    auto = estimate_policy_shape(load_config())
    hourly = estimate_policy_shape(load_config(overrides=["features.timeframes=[1h, 4h, 1d]"]))
    assert auto == hourly


# ---------------------------------------------------------------- annualisation and the store


@pytest.mark.parametrize("market_name", sorted(MARKETS))
def test_annualisation_follows_the_inferred_calendar(tmp_path: Path, market_name: str) -> None:
    make, _, calendar, _ = MARKETS[market_name]
    market = load_dataset(data_config(), make(tmp_path)[0])
    meta = {
        "resolved": {"calendar": market.summary.calendar},
        "inferred": [{"key": item.key} for item in market.summary.inferred],
    }
    store = SimpleNamespace(timestamps=market.timestamps, bar_ns=market.bar_ns, meta=meta)
    annual = annualisation_of(store, load_config())  # type: ignore[arg-type]
    if calendar == "continuous":
        assert annual.periods_per_year == YEAR_NS / market.bar_ns
        assert "24/7" in annual.description
    else:
        span = (int(market.timestamps[-1]) + market.bar_ns - int(market.timestamps[0])) / YEAR_NS
        assert annual.periods_per_year == pytest.approx(len(market.timestamps) / span)
        assert "exchange sessions" in annual.description
    assert "calendar inferred from the data" in annual.description
    # Without the store's record (a handmade store) the calendar is read from its timeline.
    bare = SimpleNamespace(timestamps=market.timestamps, bar_ns=market.bar_ns, meta={})
    assert annualisation_of(bare, load_config()).periods_per_year == annual.periods_per_year  # type: ignore[arg-type]


SMALL = ["features.return_horizons=[1, 4]", "features.normalisation_window=48"]


def test_store_records_and_a_run_reads_the_inferred_values(tmp_path: Path) -> None:
    hours = forex_hours(weeks=14)
    folder = write(tmp_path / "data", {"EURUSD": on_times(hours)})
    config = load_config(overrides=SMALL)
    store, _ = open_store(config, folder, tmp_path / "cache")
    resolved = {"bar": "1h", "calendar": "sessions", "timeframes": ["1h", "4h", "1d"]}
    assert {k: store.meta["resolved"][k] for k in resolved} == resolved
    # Forex: 120 bars a week; the windows left on auto keep their hourly values.
    assert store.meta["resolved"]["bars_per_year"] == pytest.approx(120 * 52.18, rel=0.01)
    assert store.meta["resolved"]["windows"] == {
        "features.volatility_window": 24,
        "features.volume_window": 24,
    }
    keys = [item["key"] for item in store.meta["inferred"]]
    assert keys == [
        "data.bar",
        "data.calendar",
        "features.timeframes",
        "features.volatility_window",
        "features.volume_window",
    ]
    assert store.feature_names[:2] == ["1h_ret_1", "1h_ret_4"] and "1d_rsi" in store.feature_names
    concrete = with_inferred(config, store.meta)
    assert (concrete.data.bar, concrete.data.calendar) == ("1h", "sessions")
    assert env_settings(concrete).timeframes == ("1h", "4h", "1d")
    assert annualisation_of(store, config).periods_per_year < 0.75 * YEAR_NS / HOUR_NS
    # A run folder keeps the config as given and the inferred values beside it.
    files = RunFiles(tmp_path / "run")
    files.root.mkdir()
    files.config.write_text(dump_config(config))
    assert run_config(files.root).data.calendar == "auto"
    files.inferred_config.write_text(_inferred_yaml(inferred_settings(config, store.meta)))
    assert run_config(files.root) == concrete
    # EnvSettings given explicitly are not overwritten.
    explicit = load_config(overrides=[*SMALL, "data.calendar=sessions", "features.timeframes=[1h]"])
    assert inferred_settings(explicit, store.meta) == {
        "data": {"bar": "1h"},
        "features": {"volatility_window": 24, "volume_window": 24},
        "env": {"episode_bars": 720},
        "evaluation": {"ma_fast_bars": 24, "ma_slow_bars": 168},
    }


def test_default_sample_is_unchanged(tmp_path: Path) -> None:
    """The generated sample stays hourly 24/7 (same folder name), and is read back that way."""
    data = load_config().data
    assert data.bar == "auto" and data.calendar == "auto"
    assert "-1h-" in sample_name(sample_config(data))
    short = load_config(overrides=["data.synthetic_years=0.1", "data.synthetic_assets=2"]).data
    frames = generate_from_config(sample_config(short))
    market = load_dataset(data_config(), write(tmp_path, frames))
    assert (market.summary.bar, market.summary.calendar) == ("1h", "continuous")
    assert timeframe_labels(load_config().features, market.bar_ns) == ["1h", "4h", "1d"]
