"""Trade counters against a brute-force count, and reward rules from config."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.envs.reward import DAY_NS, RewardRules, TradeCounter
from tests.helpers.datasets import HOUR_NS
from tests.helpers.stores import small_config


@given(
    counts=st.lists(st.lists(st.integers(0, 5), min_size=2, max_size=2), min_size=1, max_size=60),
    reset_at=st.integers(0, 59),
)
def test_trailing_counts_match_a_brute_force_sum(counts: list[list[int]], reset_at: int) -> None:
    counter = TradeCounter(2, ["1h", "4h", "1d"], HOUR_NS)
    history: list[list[int]] = [[], []]
    for step, row in enumerate(counts):
        if step == reset_at:  # env 1 starts a new episode; env 0 carries on
            counter.reset(np.array([1]))
            history[1] = []
        counter.add(np.array(row), np.full(2, step * HOUR_NS))
        for env in range(2):
            history[env].append(row[env])
        trailing = counter.trailing()
        for env in range(2):
            for column, bars in enumerate((1, 4, 24)):
                assert trailing[env, column] == sum(history[env][-bars:])
    names, table = counter.table()
    assert names == ["1h", "4h", "1d", "day", "episode"]
    assert table[:, -1].tolist() == [sum(history[0]), sum(history[1])]


def test_day_count_restarts_when_the_utc_day_changes() -> None:
    counter = TradeCounter(1, ["1h"], HOUR_NS)
    for hour, expected in [(22, 1), (23, 2), (24, 1), (25, 2)]:
        counter.add(np.array([1]), np.array([DAY_NS + hour * HOUR_NS]))
        assert counter.today[0] == expected


def test_bands_convert_window_counts_to_trades_per_day() -> None:
    config = small_config(
        "reward.trade_band={4h: [1, 6], 1d: [2, 30]}", "reward.trade_band_penalty=0.1"
    )
    rules = RewardRules.from_config(config.reward, HOUR_NS)
    (four_hours, day) = rules.bands
    assert (four_hours.bars, four_hours.per_day) == (4, pytest.approx(6.0))
    assert (day.bars, day.per_day) == (24, pytest.approx(1.0))
    off = RewardRules.from_config(small_config("reward.trade_band={4h: [1, 6]}").reward, HOUR_NS)
    assert off.bands == ()  # a band without a penalty is off
