"""Files shaped as real sources ship them load with the default config.

A forex year with Christmas and New Year short sessions (day-first dates), a 24/7 exchange with a
30-hour and a 2-hour outage, 8.5 years of daily business-day bars written by `df.to_csv()`, and a
ten-asset portfolio: closures are skipped and listed, look-backs fit the bar, the no-trade band
fits the portfolio.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import load_config
from core.data.calendar import build_timeline
from core.data.load import load_dataset
from core.envs.market import min_trade_of
from core.errors import UserError
from core.evaluation.judge import annualisation_of
from core.features.build import open_store
from core.features.resolved import with_inferred
from core.folds import split
from core.units import DAY_NS, HOUR_NS, YEAR_NS
from tests.conftest import PYTHON, REPO_ROOT
from tests.helpers.datasets import bars
from tests.helpers.walk_forward import (
    ar1_frames,
    bars_needed,
    learnable_config,
    store_of,
    walk_forward,
)


def on_times(stamps: pd.DatetimeIndex, seed: int = 1, n_assets: int = 1) -> dict[str, pd.DataFrame]:
    frames = bars(len(stamps), n_assets=n_assets, seed=seed)
    return {name: frame.assign(timestamp=stamps) for name, frame in frames.items()}


def forex_2017() -> pd.DatetimeIndex:
    """EURUSD hours of 2017 as a feed ships them: Sunday 22:00 to Friday 21:00 UTC, and on
    Christmas Day and New Year's Day only the Asian morning (00:00-08:00) trades."""
    hours = pd.date_range("2017-01-01 22:00", "2018-01-05 20:00", freq="1h", tz="UTC")
    day, hour = hours.day_of_week, hours.hour
    weekend = ((day == 4) & (hour >= 21)) | (day == 5) | ((day == 6) & (hour < 22))
    short = hours.normalize().isin(pd.DatetimeIndex(["2017-12-25", "2018-01-01"], tz="UTC"))
    return hours[~weekend & ~(short & (hour >= 8) & (hour < 22))]


def write_forex(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    frame = on_times(forex_2017())["SYN01"]
    stamps = pd.DatetimeIndex(frame.pop("timestamp"))
    frame.insert(0, "Gmt time", stamps.strftime("%d.%m.%Y %H:%M:%S.000"))  # day-first
    frame.to_csv(folder / "EURUSD.csv", index=False)
    return folder


CRYPTO_OUTAGES = (
    ("2018-02-08 01:00", "2018-02-09 07:00"),
    ("2018-06-01 10:00", "2018-06-01 12:00"),
)


def crypto_2018(assets: int = 2) -> dict[str, pd.DataFrame]:
    """A 24/7 exchange's hours of 2018 with an exchange-wide 30-hour and a 2-hour outage."""
    hours = pd.date_range("2018-01-01", "2018-12-31 23:00", freq="1h", tz="UTC")
    for start, end in CRYPTO_OUTAGES:
        hours = hours[(hours < start) | (hours >= end)]
    return on_times(hours, n_assets=assets)


def write(folder: Path, frames: dict[str, pd.DataFrame]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


def business_days() -> pd.DatetimeIndex:
    """GOOG's listed days 2004-08-19 to 2013-03-28: weekdays less the exchange's holidays (US
    federal holidays as a stand-in) and the two days Hurricane Sandy closed it."""
    from pandas.tseries.holiday import USFederalHolidayCalendar

    days = pd.bdate_range("2004-08-19", "2013-03-28")
    holidays = USFederalHolidayCalendar().holidays("2004-01-01", "2013-12-31")
    sandy = pd.DatetimeIndex(["2012-10-29", "2012-10-30"])
    return days[~days.isin(holidays) & ~days.isin(sandy)]


def write_daily(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    frame = bars(len(business_days()), n_assets=1, seed=5)["SYN01"].drop(columns="timestamp")
    frame.index = business_days()
    frame.to_csv(folder / "GOOG.csv")  # the dates are pandas' unnamed index column
    return folder


# ---------------------------------------------------------------- closures


def test_a_forex_year_loads_and_names_its_holidays(tmp_path: Path) -> None:
    market = load_dataset(load_config().data, write_forex(tmp_path))
    summary = market.summary
    assert summary.calendar == "sessions"
    assert len(market.timestamps) == len(forex_2017())
    assert summary.closures.count == 2 and summary.closures.bars == 28
    assert summary.closures.listed == [
        "closed 2017-12-25 08:00 → 2017-12-25 22:00 UTC (14 bars, every asset)",
        "closed 2018-01-01 08:00 → 2018-01-01 22:00 UTC (14 bars, every asset)",
    ]
    assert summary.assets[0].filled == 0
    # Nothing invented: the bar after the closure carries the whole move since 07:00.
    after = np.searchsorted(market.timestamps, pd.Timestamp("2017-12-25 22:00", tz="UTC").value)
    assert market.timestamps[after] - market.timestamps[after - 1] == 15 * HOUR_NS
    # missing_bars=fail still refuses every stretch the market normally trades.
    with pytest.raises(UserError, match=r"bar\(s\) missing on the common timeline"):
        load_dataset(load_config(overrides=["data.missing_bars=fail"]).data, tmp_path)


def test_a_24_7_exchange_with_outages_skips_the_long_one(tmp_path: Path) -> None:
    folder = write(tmp_path, crypto_2018())
    market = load_dataset(load_config().data, folder)
    summary = market.summary
    assert summary.calendar == "continuous"
    assert summary.closures.count == 1
    assert summary.closures.longest == (
        "closed 2018-02-08 01:00 → 2018-02-09 07:00 UTC (30 bars, every asset)"
    )
    # The 2-hour outage is within data.ffill_limit: flat bars, as before.
    assert [a.filled for a in summary.assets] == [2, 2]
    assert len(market.timestamps) == 365 * 24 - 30
    assert pd.Timestamp("2018-02-08 12:00", tz="UTC").value not in market.timestamps
    assert pd.Timestamp("2018-06-01 11:00", tz="UTC").value in market.timestamps


def test_a_closure_beside_a_gap_of_one_asset(tmp_path: Path) -> None:
    """Every asset lacks 2018-02-08 01:00 .. 2018-02-09 06:00 (skipped); ETH alone then lacks six
    more hours while BTC trades: that is a missing stretch, an error naming ETH and its span."""
    frames = crypto_2018()
    btc, eth = frames["SYN01"], frames["SYN02"]
    stamps = pd.DatetimeIndex(eth["timestamp"])
    lost = (stamps >= "2018-02-09 07:00") & (stamps < "2018-02-09 13:00")
    folder = write(tmp_path, {"BTC": btc, "ETH": eth[~lost]})
    with pytest.raises(UserError) as caught:
        load_dataset(load_config().data, folder)
    message = str(caught.value)
    assert "ETH.csv: 6 bars in a row are missing from 2018-02-09 07:00 UTC" in message
    assert "while other assets trade" in message and "fix:" in message


def test_a_closure_longer_than_a_week(tmp_path: Path) -> None:
    hours = pd.date_range("2019-01-01", "2019-06-30 23:00", freq="1h", tz="UTC")
    hours = hours[(hours < "2019-03-01") | (hours >= "2019-03-11 06:00")]  # 10 days and 6 hours
    market = load_dataset(load_config().data, write(tmp_path, on_times(hours, n_assets=2)))
    assert market.summary.calendar == "continuous"
    assert market.summary.closures.longest == (
        "closed 2019-03-01 00:00 → 2019-03-11 06:00 UTC (246 bars, every asset)"
    )
    np.testing.assert_array_equal(market.timestamps, hours.as_unit("ns").asi8)


def test_annualisation_with_closures_stays_the_calendars(tmp_path: Path) -> None:
    folder = write(tmp_path / "data", crypto_2018())
    config = load_config(overrides=["features.normalisation_window=48"])
    store, _ = open_store(config, folder, tmp_path / "cache")
    assert annualisation_of(store, config).periods_per_year == YEAR_NS / HOUR_NS
    assert store.meta["resolved"]["bars_per_year"] == YEAR_NS / HOUR_NS
    assert store.meta["summary"]["closures"]["count"] == 1


# ---------------------------------------------------------------- windows that fit the bar


def test_daily_stocks_warm_up_within_a_year_and_plan_a_fold(tmp_path: Path) -> None:
    folder = write_daily(tmp_path / "data")
    config = load_config()
    store, _ = open_store(config, folder, tmp_path / "cache")
    meta = store.meta
    assert meta["bar_ns"] == DAY_NS and meta["resolved"]["calendar"] == "sessions"
    per_year = meta["resolved"]["bars_per_year"]
    assert 245 < per_year < 255
    assert meta["warmup_bars"] <= per_year  # was 882 bars (3.5 years) with hourly windows
    resolved = with_inferred(config, meta)
    assert resolved.features.normalisation_window == 30
    assert resolved.features.return_horizons == [1, 4, 21]
    assert resolved.env.episode_bars == round(per_year)
    assert (resolved.evaluation.ma_fast_bars, resolved.evaluation.ma_slow_bars) == (21, 168)
    folds = split(np.asarray(store.timestamps), store.bar_ns, resolved)
    assert len(folds) >= 1 and len(folds[0].train) > 4.9 * per_year
    # Holidays and the hurricane are closures of the business-day calendar, listed.
    listed = meta["summary"]["closures"]["listed"]
    assert meta["summary"]["closures"]["count"] > 50
    assert any(line.startswith("closed 2004-09-06 00:00 → 2004-09-07 00:00 UTC") for line in listed)
    keys = {item["key"] for item in meta["inferred"]}
    assert {"features.normalisation_window", "features.return_horizons"} <= keys


def test_hourly_auto_windows_are_the_old_values(tmp_path: Path) -> None:
    folder = write(tmp_path / "data", crypto_2018())
    store, _ = open_store(load_config(), folder, tmp_path / "cache")
    resolved = with_inferred(load_config(), store.meta)
    assert resolved.features.normalisation_window == 720
    assert resolved.features.return_horizons == [1, 4, 24]
    assert (resolved.features.volatility_window, resolved.features.volume_window) == (24, 24)
    assert resolved.env.episode_bars == 720
    assert (resolved.evaluation.ma_fast_bars, resolved.evaluation.ma_slow_bars) == (24, 168)
    # A span is converted with the calendar: 30 days of hourly 24/7 bars are 720.
    spans = load_config(overrides=["features.normalisation_window=30d", "env.episode_bars=2w"])
    assert with_inferred(spans, store.meta).features.normalisation_window == 720
    assert with_inferred(spans, store.meta).env.episode_bars == 336


def test_a_span_too_short_for_the_bar_is_refused(tmp_path: Path) -> None:
    folder = write_daily(tmp_path / "data")
    config = load_config(overrides=["features.normalisation_window=5d"])
    with pytest.raises(
        UserError, match=r"features\.normalisation_window = '5d' is 3 bar\(s\) of 1d"
    ):
        open_store(config, folder, tmp_path / "cache")


# ---------------------------------------------------------------- any number of assets


def test_the_no_trade_band_fits_the_portfolio() -> None:
    env = load_config().env
    assert [round(min_trade_of(env, n), 4) for n in (1, 4, 5, 10)] == [0.2, 0.2, 0.16, 0.08]
    assert min_trade_of(load_config(overrides=["env.min_trade=0.05"]).env, 10) == 0.05


@pytest.mark.slow
def test_ten_assets_train_with_the_default_band(tmp_path: Path) -> None:
    config = learnable_config(
        "walk_forward.max_folds=1", "ppo.total_timesteps=4096", "hardware.n_envs=16"
    )
    assert config.env.min_trade == "auto"
    frames = ar1_frames(bars_needed(config), 10, 0.2, seed=3)
    store = store_of(tmp_path, frames, config)
    summary = walk_forward(tmp_path, store, config)
    assert summary["failed_jobs"] == {}
    assert np.isfinite(summary["strategies"]["agent"]["sharpe"])


def test_a_band_that_cannot_work_is_refused_before_any_job(tmp_path: Path) -> None:
    folder = write(tmp_path / "data", crypto_2018(assets=10))
    for flag in ("--check-data", "--dry-run"):
        done = subprocess.run(
            [
                PYTHON,
                "training/train_walk_forward.py",
                flag,
                "--data",
                str(folder),
                "--preset",
                "quick",
                "--no-progress",
                "--set",
                "env.min_trade=0.2",
                "--set",
                f"data.cache_dir={tmp_path / 'cache'}",
                "--set",
                "walk_forward.train_years=0.25",
                "--set",
                "walk_forward.validation_months=1",
                "--set",
                "walk_forward.test_months=1",
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode != 0, flag
        assert "Traceback" not in done.stderr
        assert "env.min_trade = 0.2 is not below an equal-weight position" in done.stderr, flag


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.tuples(st.integers(1, 2_400), st.integers(1, 60)), max_size=6),
    limit=st.integers(1, 8),
)
def test_stretches_longer_than_the_limit_are_skipped_the_rest_kept(
    gaps: list[tuple[int, int]], limit: int
) -> None:
    """A 24/7 grid with stretches no asset has: exactly those longer than data.ffill_limit leave
    the timeline, each as one closure of its length; the short ones stay, to be filled."""
    grid = pd.Timestamp("2021-01-04", tz="UTC").value + np.arange(2_500, dtype=np.int64) * HOUR_NS
    removed = np.zeros(len(grid), dtype=bool)
    for start, length in gaps:
        removed[start : min(start + length, len(grid) - 1)] = True
    edges = np.diff(np.concatenate([[0], removed.astype(np.int8), [0]]))
    runs = list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))
    long_runs = [(a, b) for a, b in runs if b - a > limit]
    skipped = np.zeros(len(grid), dtype=bool)
    for a, b in long_runs:
        skipped[a:b] = True
    union = grid[~removed]
    timeline = build_timeline("continuous", union, int(grid[0]), int(grid[-1]), HOUR_NS, limit)
    np.testing.assert_array_equal(timeline.timestamps, grid[~skipped])
    assert [(c.start, c.end, c.bars) for c in timeline.closures] == [
        (int(grid[a]), int(grid[b]), int(b - a)) for a, b in long_runs
    ]
    # missing_bars=fail (no closure limit) keeps every bar of the grid.
    strict = build_timeline("continuous", union, int(grid[0]), int(grid[-1]), HOUR_NS, None)
    np.testing.assert_array_equal(strict.timestamps, grid)


def test_eleven_months_of_hourly_forex_plan_two_folds_with_no_flags(tmp_path: Path) -> None:
    """Day-first EURUSD hours, weekends and holiday sessions closed: `--check-data` and
    `--dry-run` with defaults (walk_forward auto) find folds and say how they were sized."""
    folder = tmp_path / "data"
    folder.mkdir()
    frame = on_times(forex_2017())["SYN01"]
    frame = frame[frame["timestamp"] < pd.Timestamp("2017-12-01", tz="UTC")]
    stamps = pd.DatetimeIndex(frame.pop("timestamp"))
    frame.insert(0, "Gmt time", stamps.strftime("%d.%m.%Y %H:%M:%S.000"))
    frame.to_csv(folder / "EURUSD.csv", index=False)
    common = ["--data", str(folder), "--no-progress", "--set", f"data.cache_dir={tmp_path / 'c'}"]
    checked = subprocess.run([PYTHON, "training/train_walk_forward.py", "--check-data", *common],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "walk_forward.train_years / validation_months / test_months = " in checked.stdout
    planned = subprocess.run([PYTHON, "training/train_walk_forward.py", "--dry-run", "--json", *common],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    folds = json.loads(planned.stdout)["folds"]
    assert len(folds) >= 2
    assert all(fold["test"]["bars"] >= 20 and fold["validation"]["bars"] >= 20 for fold in folds)
