"""The constant-position measure: a walk whose target weights never move is named, one that
moves or holds nothing is not (flat is the no-trade alarm's)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.evaluation.positions import describe_position, position_spread

LIMIT = 0.01  # evaluation.constant_position_std's default
FLAT = 0.01  # training.post.results.COLLAPSED_EXPOSURE
BARS = 200


def constant(spread_of: np.ndarray) -> bool:
    return position_spread(spread_of).is_constant(LIMIT, FLAT)


def test_a_fixed_long_is_constant_and_said_as_a_reader_pictures_it() -> None:
    weights = np.tile([0.85, 0.0], (BARS, 1))
    spread = position_spread(weights)
    assert constant(weights) and spread.bars == BARS
    np.testing.assert_allclose(spread.mean, [0.85, 0.0])
    assert describe_position(spread, ["BTC", "ETH"]) == "+0.85 long BTC"
    both = position_spread(np.tile([0.5, -0.1], (BARS, 1)))
    assert describe_position(both, ["BTC", "ETH"]) == "+0.50 long BTC, -0.10 short ETH"


def test_weights_that_follow_the_market_are_not_constant() -> None:
    moving = 0.5 * np.sin(np.arange(BARS) / 7.0)[:, None]
    assert not constant(moving)


def test_a_flat_walk_is_left_to_the_no_trade_alarm() -> None:
    zeros = np.zeros((BARS, 3))
    assert not constant(zeros)
    assert describe_position(position_spread(zeros), ["A", "B", "C"]) == "flat"
    assert not constant(np.full((BARS, 2), 0.002))  # under 1 % gross: as good as flat


def test_one_moving_asset_is_enough_to_clear_the_walk() -> None:
    rng = np.random.default_rng(0)
    weights = np.tile([0.6, -0.2, 0.1], (BARS, 1))
    assert constant(weights)
    weights[:, 1] += rng.normal(0.0, 0.05, BARS)  # the second asset follows something
    assert not constant(weights)
    weights[:, 1] = -0.2 + rng.normal(0.0, 0.001, BARS)  # jitter well below the threshold
    assert constant(weights)


def test_one_decision_says_nothing_and_a_bad_shape_is_refused() -> None:
    assert not constant(np.array([[0.85]]))
    assert position_spread(np.zeros((0, 2))).bars == 0
    with pytest.raises(ValueError, match="bars, assets"):
        position_spread(np.zeros(5))


WEIGHTS = arrays(
    np.float64,
    st.tuples(st.integers(2, 40), st.integers(1, 4)),
    elements=st.floats(-1, 1, allow_subnormal=False),
)


@given(WEIGHTS, st.floats(-1, 1))
def test_adding_a_constant_to_every_weight_never_changes_the_verdict(
    weights: np.ndarray, shift: float
) -> None:
    before, after = position_spread(weights), position_spread(weights + shift)
    np.testing.assert_allclose(after.std, before.std, atol=1e-9)
    assume(np.all(np.abs(before.std - LIMIT) > 1e-6))  # not on the edge of rounding
    assume(min(before.gross, after.gross) >= FLAT)  # flat is another alarm's business
    assert before.is_constant(LIMIT, FLAT) == after.is_constant(LIMIT, FLAT)


@given(
    WEIGHTS,
    arrays(np.float64, 4, elements=st.floats(0.05, 0.9)),
    st.floats(0.01, 0.99),
)
def test_moves_scaled_below_the_threshold_are_flagged_and_above_it_are_not(
    weights: np.ndarray, level: np.ndarray, fraction: float
) -> None:
    moves = weights - weights.mean(axis=0)
    largest = moves.std(axis=0).max()
    assume(largest > 1e-6)
    held = level[: weights.shape[1]]
    assert position_spread(held + moves * (fraction * LIMIT / largest)).is_constant(LIMIT, FLAT)
    louder = held + moves * (LIMIT / fraction / largest) * 1.001
    assert not position_spread(louder).is_constant(LIMIT, FLAT)
