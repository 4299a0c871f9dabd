"""Causality of every feature: values up to bar t never change when later bars are removed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import Config, FeaturesConfig, load_config
from core.data.exogenous import ExogenousSeries, as_of
from core.features.matrix import asset_features, feature_names, lookback_bars, raw_features
from core.features.resample import Bars, last_closed, resample
from tests.helpers.datasets import HOUR_NS, bars, hourly

N_BARS = 2_400


def small_features(normalisation: str) -> FeaturesConfig:
    config = load_config(
        overrides=[
            f"features.normalisation={normalisation}",
            "features.normalisation_window=60",
            "features.timeframes=[1h,4h,1d]",
            "features.return_horizons=[1,3]",
        ]
    )
    return hourly(config).features


CLOSURE = slice(1_200, 1_230)  # 30 bars an exchange outage took: the timeline skips them


@pytest.fixture(scope="module")
def base() -> Bars:
    """Hourly bars with a 30-hour closure inside: features across it must stay causal too."""
    frame = bars(N_BARS + 30, n_assets=1, seed=3)["SYN01"]
    frame = frame.drop(index=range(CLOSURE.start, CLOSURE.stop)).reset_index(drop=True)
    timestamps = frame["timestamp"].astype("int64").to_numpy()
    ohlcv = frame[["open", "high", "low", "close", "volume"]].to_numpy()
    assert (np.diff(timestamps) == 31 * HOUR_NS).sum() == 1
    return Bars(timestamps, ohlcv, HOUR_NS)


def exogenous_for(base: Bars) -> np.ndarray:
    """A daily series stamped at midnight, known 6h later; joined as of each bar close."""
    days = np.arange(base.timestamps[0], base.timestamps[-1] + 3 * 86_400e9, 86_400e9).astype(
        np.int64
    )
    values = np.cumsum(np.random.default_rng(0).standard_normal(len(days)))[:, None]
    series = ExogenousSeries("macro", ("level",), days + 6 * HOUR_NS, values)
    return as_of(series, base.close_times)


def cut(base: Bars, end: int) -> Bars:
    return Bars(base.timestamps[:end], base.ohlcv[:end], base.bar_ns)


@pytest.mark.parametrize("normalisation", ["rolling", "expanding"])
@settings(max_examples=25)
@given(fraction=st.floats(0.05, 0.999))
def test_features_never_change_when_later_bars_are_removed(
    base: Bars, normalisation: str, fraction: float
) -> None:
    config = small_features(normalisation)
    exogenous = exogenous_for(base)
    full, _ = asset_features(base, config, exogenous)
    end = max(2, int(fraction * N_BARS))
    truncated, _ = asset_features(cut(base, end), config, exogenous[:end])
    np.testing.assert_array_equal(truncated, full[:end])


def test_the_causality_check_can_fail(base: Bars) -> None:
    """A centred (future-peeking) normalisation is caught by the same comparison."""
    config = small_features("rolling")
    raw = raw_features(base, config)
    centred = raw - np.array([np.convolve(c, np.ones(5) / 5, mode="same") for c in raw.T]).T
    end = 1_500
    raw_cut = raw_features(cut(base, end), config)
    centred_cut = (
        raw_cut - np.array([np.convolve(c, np.ones(5) / 5, mode="same") for c in raw_cut.T]).T
    )
    assert not np.allclose(centred_cut[1_000:end], centred[1_000:end], equal_nan=True)


def test_higher_timeframe_bar_is_seen_only_after_it_closes(base: Bars) -> None:
    four_hour = resample(base, 4 * HOUR_NS)
    index = last_closed(four_hour, base.close_times)
    seen = index >= 0
    closes = four_hour.close_times[index[seen]]
    assert (closes <= base.close_times[seen]).all()
    # and it is the latest such bar: the next one has not closed yet
    following = index[seen] + 1
    has_next = following < len(four_hour.timestamps)
    assert (four_hour.close_times[following[has_next]] > base.close_times[seen][has_next]).all()


def test_resampled_bars_aggregate_their_hours(base: Bars) -> None:
    four_hour = resample(base, 4 * HOUR_NS)
    first_full = int(np.argmax(base.timestamps % (4 * HOUR_NS) == 0))
    hours = base.ohlcv[first_full : first_full + 4]
    bucket = int(np.searchsorted(four_hour.timestamps, base.timestamps[first_full]))
    np.testing.assert_allclose(
        four_hour.ohlcv[bucket],
        [hours[0, 0], hours[:, 1].max(), hours[:, 2].min(), hours[-1, 3], hours[:, 4].sum()],
    )


def test_exogenous_value_is_used_only_once_known() -> None:
    known_at = np.array([10, 20, 30], dtype=np.int64)
    series = ExogenousSeries("x", ("v",), known_at, np.array([[1.0], [np.nan], [3.0]]))
    joined = as_of(series, np.array([5, 10, 19, 25, 30, 31], dtype=np.int64))[:, 0]
    np.testing.assert_array_equal(joined, [np.nan, 1.0, 1.0, 1.0, 3.0, 3.0])


def test_names_match_columns_and_lookback_covers_warmup(base: Bars) -> None:
    config = small_features("rolling")
    features, first = asset_features(base, config)
    assert features.shape[1] == len(feature_names(config, HOUR_NS))
    assert 0 < first <= lookback_bars(config, HOUR_NS)
    assert np.isfinite(features[first:]).all()
    assert np.abs(features[first:]).max() <= config.clip


def test_default_config_names(default_config: Config) -> None:
    names = feature_names(hourly(default_config).features, HOUR_NS)
    assert names[:3] == ["1h_ret_1", "1h_ret_4", "1h_ret_24"]
    assert "1d_rsi" in names and names[-1] == "weekday_cos"


def test_every_registered_indicator_has_its_columns_and_look_back(base: Bars) -> None:
    """The registry is the one list: each entry computes exactly the columns it declares."""
    from core.features.indicators import timeframe_indicators
    from core.features.registry import INDICATORS

    for name, spec in INDICATORS.items():
        config = hourly(
            load_config(overrides=[f"features.indicators=[{name}]", "features.return_horizons=[1]"])
        ).features
        columns = timeframe_indicators(base.ohlcv, config)
        assert list(columns) == ["ret_1", *spec.columns], name
        # The warm-up the registry declares covers the bars the indicator needs.
        first = max(int(np.argmax(np.isfinite(columns[c]))) for c in spec.columns)
        assert 0 < first <= spec.lookback(config), name
