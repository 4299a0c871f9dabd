"""The execution contract against hand-computed examples, and accounting identities as properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from core.config import load_config
from core.envs.market import (
    LIQUIDATION,
    REBALANCE,
    STOP,
    TAKE_PROFIT,
    ExecutionRules,
    Portfolio,
    step,
    target_weights,
)
from core.envs.simulator import check_band
from core.errors import UserError

RULES = ExecutionRules(
    long_only=False,
    max_leverage=1.0,
    min_trade=0.0,
    cost_rate=3e-4,  # 1 bp fee + 1 bp half-spread + 1 bp slippage
    stop_loss=None,
    take_profit=None,
    borrow_rate_per_bar=0.0,
)


def rules(**changes: object) -> ExecutionRules:
    return ExecutionRules(**{**RULES.__dict__, **changes})  # type: ignore[arg-type]


def bar(open_: float, high: float, low: float, close: float) -> np.ndarray:
    return np.array([[[open_, high, low, close]]])


def test_long_fills_at_next_open_and_pays_costs_on_the_change() -> None:
    book = Portfolio.start(1, 1, 10_000.0)
    result = step(book, np.array([[0.5]]), np.array([[99.0]]), bar(100, 112, 99, 110), RULES)
    assert book.qty[0, 0] == pytest.approx(50.0)  # 0.5 * 10,000 / open 100
    assert result.cost[0] == pytest.approx(50 * 100 * 3e-4)  # 1.50
    assert book.cash[0] == pytest.approx(10_000 - 5_000 - 1.5)
    assert result.equity_after[0] == pytest.approx(4_998.5 + 50 * 110)
    (receipt_price,) = result.receipts.price
    assert receipt_price == 100.0 and result.receipts.reason[0] == REBALANCE
    assert result.turnover[0] == pytest.approx(0.5)


def test_short_gains_when_price_falls() -> None:
    book = Portfolio.start(1, 1, 10_000.0)
    result = step(book, np.array([[-0.5]]), np.array([[100.0]]), bar(100, 101, 89, 90), RULES)
    assert book.qty[0, 0] == pytest.approx(-50.0)
    assert result.equity_after[0] == pytest.approx(10_000 + 5_000 - 1.5 - 50 * 90)


def test_second_step_trades_only_the_difference() -> None:
    book = Portfolio.start(1, 1, 10_000.0)
    step(book, np.array([[0.5]]), np.array([[100.0]]), bar(100, 110, 100, 110), RULES)
    # equity at the next open (110): 4,998.5 + 50 * 110 = 10,498.5; target 0.25 -> qty 23.86
    result = step(book, np.array([[0.25]]), np.array([[110.0]]), bar(110, 111, 109, 110), RULES)
    target_qty = 0.25 * 10_498.5 / 110
    assert book.qty[0, 0] == pytest.approx(target_qty)
    assert result.cost[0] == pytest.approx((50 - target_qty) * 110 * 3e-4)


def test_leverage_cap_scales_and_long_only_clips() -> None:
    np.testing.assert_allclose(target_weights(np.array([[1.0, 1.0]]), RULES), [[0.5, 0.5]])
    np.testing.assert_allclose(
        target_weights(np.array([[0.8, -0.6]]), rules(long_only=True)), [[0.8, 0.0]]
    )
    np.testing.assert_allclose(
        target_weights(np.array([[0.3, -0.2]]), rules(max_leverage=2.0)), [[0.3, -0.2]]
    )


def test_changes_below_min_trade_are_skipped() -> None:
    book = Portfolio.start(1, 1, 10_000.0)
    step(
        book, np.array([[0.5]]), np.array([[100.0]]), bar(100, 100, 100, 100), rules(min_trade=0.01)
    )
    result = step(
        book,
        np.array([[0.505]]),
        np.array([[100.0]]),
        bar(100, 100, 100, 100),
        rules(min_trade=0.01),
    )
    assert len(result.receipts) == 0 and result.cost[0] == 0


def test_stop_loss_fills_at_the_stop_price() -> None:
    book = Portfolio.start(1, 1, 10_000.0)
    result = step(
        book, np.array([[1.0]]), np.array([[100.0]]), bar(100, 101, 94, 96), rules(stop_loss=0.05)
    )
    assert list(result.receipts.reason) == [REBALANCE, STOP]
    assert result.receipts.price[1] == pytest.approx(95.0)
    assert book.qty[0, 0] == 0
    expected = 10_000 - 3.0 + 100 * 95 - 100 * 95 * 3e-4 - 100 * 100
    assert result.equity_after[0] == pytest.approx(expected)


def test_stop_gapped_through_fills_at_the_open() -> None:
    book = Portfolio.start(1, 1, 10_000.0)
    step(
        book, np.array([[1.0]]), np.array([[100.0]]), bar(100, 100, 100, 100), rules(stop_loss=0.05)
    )
    result = step(
        book, np.array([[1.0]]), np.array([[100.0]]), bar(90, 92, 88, 91), rules(stop_loss=0.05)
    )
    stops = result.receipts.reason == STOP
    assert result.receipts.price[stops][0] == 90.0


def test_take_profit_on_a_short() -> None:
    book = Portfolio.start(1, 1, 10_000.0)
    result = step(
        book, np.array([[-1.0]]), np.array([[100.0]]), bar(100, 101, 89, 95), rules(take_profit=0.1)
    )
    assert list(result.receipts.reason) == [REBALANCE, TAKE_PROFIT]
    assert result.receipts.price[1] == pytest.approx(90.0) and book.qty[0, 0] == 0


def test_borrow_cost_on_shorts_only() -> None:
    book = Portfolio.start(2, 1, 10_000.0)
    actions = np.array([[-0.5], [0.5]])
    prices = np.array([[100.0], [100.0]])
    step(
        book,
        actions,
        prices,
        np.tile(bar(100, 100, 100, 100), (2, 1, 1)),
        rules(borrow_rate_per_bar=1e-3),
    )
    assert book.cash[0] == pytest.approx(10_000 + 5_000 - 1.5 - 5_000 * 1e-3)
    assert book.cash[1] == pytest.approx(10_000 - 5_000 - 1.5)


def test_bankruptcy_liquidates_at_the_close() -> None:
    book = Portfolio.start(1, 1, 10_000.0)
    result = step(
        book,
        np.array([[-1.0]]),
        np.array([[100.0]]),
        bar(100, 250, 100, 250),
        rules(max_leverage=1.0),
    )
    assert result.bankrupt[0]
    assert result.receipts.reason[-1] == LIQUIDATION and book.qty[0, 0] == 0
    assert result.equity_after[0] == pytest.approx(book.cash[0])


@given(
    actions=hnp.arrays(np.float64, (6, 3, 2), elements=st.floats(-1.5, 1.5)),
    moves=hnp.arrays(np.float64, (6, 3, 2), elements=st.floats(-0.2, 0.2)),
    leverage=st.floats(0.5, 3.0),
    stop=st.none() | st.floats(0.01, 0.3),
)
def test_equity_is_cash_plus_marked_positions_and_costs_match_receipts(
    actions: np.ndarray, moves: np.ndarray, leverage: float, stop: float | None
) -> None:
    chosen = rules(max_leverage=leverage, stop_loss=stop, min_trade=0.01)
    book = Portfolio.start(3, 2, 10_000.0)
    close = np.full((3, 2), 100.0)
    for t in range(len(actions)):
        open_ = close * np.exp(moves[t] / 4)
        new_close = open_ * np.exp(moves[t])
        high = np.maximum(open_, new_close) * 1.01
        low = np.minimum(open_, new_close) * 0.99
        cash_before = book.cash.copy()
        equity_open = book.equity(open_)
        result = step(book, actions[t], close, np.stack([open_, high, low, new_close], -1), chosen)
        np.testing.assert_allclose(result.equity_after, book.cash + (book.qty * new_close).sum(-1))
        np.testing.assert_allclose(result.cost, result.receipts.per_env(3))
        flows = np.bincount(
            result.receipts.env,
            weights=result.receipts.delta_qty * result.receipts.price + result.receipts.cost,
            minlength=3,
        )
        np.testing.assert_allclose(book.cash, cash_before - flows, rtol=1e-9, atol=1e-6)
        # Sized on the equity at the open (before costs); skipped changes add at most min_trade.
        gross = (np.abs(book.qty) * open_).sum(-1) / equity_open
        assert (gross[equity_open > 0] <= leverage + 2 * 0.01 + 1e-9).all()
        close = new_close


def test_a_band_wider_than_an_equal_weight_position_is_refused() -> None:
    check_band(load_config(overrides=["env.min_trade=0.2"]).env, n_assets=4)
    with pytest.raises(UserError, match=r"env.min_trade = 0.25 is not below an equal-weight"):
        check_band(load_config(overrides=["env.min_trade=0.25"]).env, n_assets=4)
