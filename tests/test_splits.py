"""Stock exports as users have them: adjusted prices from an Adj Close column, and an
unadjusted split caught (a genuine crash and 24/7 markets left alone, `data.splits=accept`)."""

from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import DataConfig, load_config
from core.data.adjusted import adjust, adjusted_column
from core.data.load import load_dataset
from core.data.splits import FACTORS, RATIOS, find_splits, volume_change
from core.data.validation import RowLocator
from core.errors import UserError
from tests.helpers.datasets import bars, yahoo_daily
from training.views.data import price_lines, print_summary

DAYS = pd.bdate_range("2012-01-02", periods=600)


def data_config(*overrides: str) -> DataConfig:
    return load_config(overrides=[f"data.{o}" for o in overrides]).data


def write(folder: Path, name: str, frame: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


def walk(
    n: int, gaps: np.ndarray | None = None, seed: int = 0, volume_noise: float = 0.3
) -> np.ndarray:
    """Valid bars [n, 5]: a random walk whose open is the previous close times `gaps`."""
    rng = np.random.default_rng(seed)
    moves = np.exp(rng.normal(0, 0.02, n))
    gap = np.ones(n) if gaps is None else gaps
    close = np.empty(n)
    open_ = np.empty(n)
    price = 100.0
    for row in range(n):
        open_[row] = price * gap[row]
        close[row] = open_[row] * moves[row]
        price = close[row]
    high = np.maximum(open_, close) * 1.01
    low = np.minimum(open_, close) * 0.99
    volume = 1_000 * np.exp(rng.normal(0, volume_noise, n))
    return np.column_stack([open_, high, low, close, volume])


# ---------------------------------------------------------------- adjusted prices


def test_a_yahoo_export_with_dividends_and_a_split_loads_in_adjusted_prices(
    tmp_path: Path,
) -> None:
    export, adjusted = yahoo_daily(DAYS, split_row=300, split=4.0, dividend=0.005)
    market = load_dataset(data_config(), write(tmp_path, "AAPL", export))
    prices = market.ohlcv[0]
    np.testing.assert_allclose(prices[:, :4], adjusted[["open", "high", "low", "close"]], rtol=1e-9)
    # Volume scales inversely: every bar's traded value is the export's.
    np.testing.assert_allclose(
        prices[:, 3] * prices[:, 4], export["Close"] * export["Volume"], rtol=1e-9
    )
    assert market.summary.assets[0].adjusted_with == "Adj Close"
    out = io.StringIO()
    print_summary(market.summary, out)
    assert "prices adjusted with the 'Adj Close' column (AAPL)" in out.getvalue()
    assert "data.adjusted_close=none" in out.getvalue()


@pytest.mark.parametrize(
    "name", ["Adj Close", "adj_close", "adjclose", "Adj. Close", "ADJ-CLOSE", "adjusted_close"]
)
def test_adjusted_close_names_are_found(name: str) -> None:
    assert adjusted_column(["Date", "Close", name], "auto", "f.csv") == name


def test_adjusted_column_settings() -> None:
    columns = ["Date", "Close", "Adj Close", "Close (adj)"]
    assert adjusted_column(["Date", "Close"], "auto", "f.csv") is None
    assert adjusted_column(columns, "none", "f.csv") is None
    assert adjusted_column(columns, "close (ADJ)", "f.csv") == "Close (adj)"
    with pytest.raises(UserError, match=r"(?s)f.csv: no column named 'adjusted'.*Adj Close"):
        adjusted_column(columns, "adjusted", "f.csv")
    with pytest.raises(
        UserError, match=r"(?s)more than one adjusted-close column.*data.adjusted_close"
    ):
        adjusted_column(["Adj Close", "adj_close"], "auto", "f.csv")


def test_none_reads_the_raw_prices(tmp_path: Path) -> None:
    export, _ = yahoo_daily(DAYS, dividend=0.005)
    market = load_dataset(data_config("adjusted_close=none"), write(tmp_path, "AAPL", export))
    np.testing.assert_allclose(market.ohlcv[0][:, 3], export["Close"])
    assert market.summary.assets[0].adjusted_with == ""


@pytest.mark.parametrize(("value", "what"), [("", "missing"), ("0", "0, not a positive price")])
def test_a_bad_adjusted_close_names_file_line_and_fix(
    tmp_path: Path, value: str, what: str
) -> None:
    export, _ = yahoo_daily(DAYS)
    export["Adj Close"] = export["Adj Close"].astype(object)
    export.loc[41, "Adj Close"] = value
    export.loc[50, "Adj Close"] = value
    folder = write(tmp_path, "MSFT", export)
    with pytest.raises(UserError) as error:
        load_dataset(data_config(), folder)
    message = str(error.value)
    assert f"MSFT.csv, line 43 ({DAYS[41]:%Y-%m-%d} 00:00 UTC): Adj Close is {what}" in message
    assert "(1 more row(s) like it)" in message
    assert "data.adjusted_close=none" in message


def test_adjusting_keeps_bars_valid_and_scales_volume_inversely() -> None:
    prices = walk(50)
    adjusted = prices[:, 3] * np.linspace(0.5, 1.0, 50)
    result = adjust(prices, adjusted, "adj", np.arange(50), RowLocator("f.csv", csv=True))
    np.testing.assert_allclose(result[:, 3], adjusted)
    np.testing.assert_allclose(result[:, 3] * result[:, 4], prices[:, 3] * prices[:, 4])
    assert (result[:, 1] >= result[:, [0, 3]].max(axis=1)).all()
    assert (result[:, 2] <= result[:, [0, 3]].min(axis=1)).all()


# ---------------------------------------------------------------- split detection


def test_an_unadjusted_4_for_1_split_is_refused_with_asset_date_and_fix(tmp_path: Path) -> None:
    export, _ = yahoo_daily(DAYS, split_row=300, split=4.0)
    folder = write(tmp_path, "GOOG", export.drop(columns="Adj Close"))
    with pytest.raises(UserError) as error:
        load_dataset(data_config(), folder)
    message = str(error.value)
    day = DAYS[300].strftime("%Y-%m-%d")
    assert f"GOOG.csv, line 302 ({day} 00:00 UTC): GOOG moves from close" in message
    assert "(x0.250, -75%), a 4:1 split's ratio, with volume x" in message
    assert "looks like an unadjusted stock split" in message
    assert "Adj Close column" in message and "data.splits=accept" in message


def test_the_same_export_with_its_adj_close_loads(tmp_path: Path) -> None:
    export, _ = yahoo_daily(DAYS, split_row=300, split=4.0)
    market = load_dataset(data_config(), write(tmp_path, "GOOG", export))
    assert market.summary.assets[0].splits == []


def test_accept_keeps_the_move_and_lists_it(tmp_path: Path) -> None:
    export, _ = yahoo_daily(DAYS, split_row=300, split=4.0)
    folder = write(tmp_path, "GOOG", export.drop(columns="Adj Close"))
    market = load_dataset(data_config("splits=accept"), folder)
    report = market.summary.assets[0]
    assert len(report.splits) == 1 and "line 302" in report.splits[0]
    np.testing.assert_allclose(market.ohlcv[0][:, 3], export["Close"])
    lines = price_lines([asdict(report)])  # as a store's meta.json keeps it
    assert lines[0].startswith("• GOOG: 1 overnight move(s) that look like an unadjusted split")
    assert "4:1 split's ratio" in lines[1]


def test_a_genuine_30_percent_crash_is_not_a_split(tmp_path: Path) -> None:
    export, _ = yahoo_daily(DAYS)
    export = export.drop(columns="Adj Close")
    after = export.index >= 400
    export.loc[after, ["Open", "High", "Low", "Close"]] *= 0.70  # the night's gap
    export.loc[400:409, "Volume"] *= 3  # panic selling
    market = load_dataset(data_config(), write(tmp_path, "BANK", export))
    assert market.ohlcv[0][400, 0] / market.ohlcv[0][399, 3] == pytest.approx(0.70)


def test_a_crypto_crash_inside_daily_bars_is_not_a_split(tmp_path: Path) -> None:
    days = pd.date_range("2022-01-01", periods=300, freq="1D", tz="UTC")
    frame = bars(300, n_assets=1, seed=2)["SYN01"].assign(timestamp=days)
    crash = frame.index >= 150
    frame.loc[crash, ["open", "high", "low", "close"]] *= 0.5
    frame.loc[150, "open"] = frame.loc[149, "close"]  # 24/7: the day opens at the last close
    frame.loc[150, "high"] = frame.loc[150, "open"]
    frame.loc[150:170, "volume"] *= 4
    market = load_dataset(data_config(), write(tmp_path, "LUNA", frame))
    assert market.summary.assets[0].splits == []


def test_a_split_gap_needs_volume_moving_the_other_way() -> None:
    gaps = np.ones(60)
    gaps[30] = 0.5
    flat = walk(60, gaps)
    flat[:, 4] = 1_000.0
    assert find_splits(flat) == []  # -50 % with unchanged volume: a crash, not a split
    split = flat.copy()
    split[30:, 4] *= 2
    found = find_splits(split)
    assert [(s.row, s.ratio) for s in found] == [(30, "2:1")]
    assert found[0].volume_change == pytest.approx(volume_change(split[:, 4], 30))
    reverse_gaps = np.ones(60)
    reverse_gaps[30] = 10 * 1.02
    reverse = walk(60, reverse_gaps)
    reverse[30:, 4] /= 10
    assert [(s.row, s.ratio) for s in find_splits(reverse)] == [(30, "1:10")]


def test_without_volume_the_price_decides() -> None:
    gaps = np.ones(40)
    gaps[20] = 1 / 3
    prices = walk(40, gaps)
    prices[:, 4] = 0
    found = find_splits(prices)
    assert [(s.row, s.ratio, s.volume_change) for s in found] == [(20, "3:1", None)]


def test_a_gap_outside_the_tolerance_is_not_a_split() -> None:
    gaps = np.ones(40)
    gaps[20] = 0.5 * 0.95  # 5 % below the 2:1 price
    prices = walk(40, gaps)
    prices[20:, 4] *= 2
    assert find_splits(prices) == []


small_gaps = st.lists(st.floats(-0.25, 0.25), min_size=30, max_size=80)


@settings(max_examples=60, deadline=None)
@given(small_gaps, st.floats(1e-4, 1e4), st.integers(0, 1_000))
def test_scaling_every_price_by_a_constant_never_flags(
    log_gaps: list[float], scale: float, seed: int
) -> None:
    prices = walk(len(log_gaps), np.exp(log_gaps), seed)
    scaled = prices.copy()
    scaled[:, :4] *= scale
    assert find_splits(scaled) == []


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-0.1, 0.1), min_size=30, max_size=80),
    st.sampled_from(RATIOS),
    st.floats(0.2, 0.8),
    st.floats(-0.02, 0.02),
)
def test_a_planted_split_is_found_at_its_row_with_its_ratio(
    log_gaps: list[float], ratio: tuple[float, str], where: float, night: float
) -> None:
    gap, label = ratio
    row = int(where * len(log_gaps))
    gaps = np.exp(log_gaps)
    gaps[row] = gap * np.exp(night)
    prices = walk(len(gaps), gaps, volume_noise=0.05)
    prices[row:, 4] /= gap  # shares scale inversely to the price
    found = find_splits(prices)
    assert [(s.row, s.ratio) for s in found] == [(row, label)]
    assert len(RATIOS) == 2 * len(FACTORS)


def test_split_settings_are_checked() -> None:
    with pytest.raises(UserError, match=r"data\.splits"):
        data_config("splits=warn")
    with pytest.raises(UserError, match=r"data\.adjusted_close"):
        data_config("adjusted_close=' '")
