"""Execution and accounting: the one place that turns target weights into fills, costs and equity.

Contract (DESIGN.md, Execution): the agent decides at the close of bar t; the portfolio is
rebalanced at the open of bar t+1 (equity at that open = cash + Σ qty·open, new qty = w·equity /
open, cost = Σ |Δqty|·open·(fee + half-spread + slippage) bps, paid from cash); stops and
take-profits may close a position inside bar t+1 (triggered by its low/high, filled at the stop
price, same cost rate); shorts pay borrow; the step ends at the close of t+1, marked with close
prices. Equity <= 0 liquidates everything at the close and ends the episode.

Every array has a leading env axis E (and an asset axis A), so one env (E = 1) and a batch of
thousands share this code and its tests; nothing loops over envs or assets in Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.config import EnvConfig
from core.data.calendar import Inferred
from core.units import YEAR_NS

REBALANCE, STOP, TAKE_PROFIT, LIQUIDATION = range(4)
REASONS = ("rebalance", "stop", "take_profit", "liquidation")
BPS = 1e-4
# env.min_trade: auto. 0.2 (0.01 let agents churn away 35 %/y in costs), but at most this share of
# an equal-weight position, so a portfolio of any size can open one.
MIN_TRADE_DEFAULT = 0.2
MIN_TRADE_EQUAL_WEIGHT_SHARE = 0.8


def min_trade_of(env: EnvConfig, n_assets: int) -> float:
    """The no-trade band in weight: env.min_trade, or its `auto` value for this portfolio."""
    if env.min_trade != "auto":
        return float(env.min_trade)
    return min(MIN_TRADE_DEFAULT, MIN_TRADE_EQUAL_WEIGHT_SHARE * env.max_leverage / n_assets)


def min_trade_inferred(env: EnvConfig, n_assets: int) -> Inferred | None:
    """What env.min_trade: auto chose, for the data summary (None when it was set)."""
    if env.min_trade != "auto":
        return None
    return Inferred(
        "env.min_trade",
        f"{min_trade_of(env, n_assets):.4g}",
        f"{MIN_TRADE_DEFAULT:g}, at most {100 * MIN_TRADE_EQUAL_WEIGHT_SHARE:.0f} % of an equal-weight "
        f"position (env.max_leverage {env.max_leverage:g} / {n_assets} asset(s))",
        "env.min_trade=<weight>",
    )


@dataclass(frozen=True)
class ExecutionRules:
    long_only: bool
    max_leverage: float
    min_trade: float
    cost_rate: float  # fraction of traded notional: fee + half-spread + slippage
    stop_loss: float | None
    take_profit: float | None
    borrow_rate_per_bar: float

    @property
    def tracks_entry(self) -> bool:
        """Entry prices matter only to stops and take-profits; without them, skip the work."""
        return self.stop_loss is not None or self.take_profit is not None

    @classmethod
    def from_config(cls, env: EnvConfig, bar_ns: int, n_assets: int) -> ExecutionRules:
        return cls(
            long_only=env.long_only,
            max_leverage=env.max_leverage,
            min_trade=min_trade_of(env, n_assets),
            cost_rate=(env.fee_bps + env.half_spread_bps + env.slippage_bps) * BPS,
            stop_loss=env.stop_loss,
            take_profit=env.take_profit,
            borrow_rate_per_bar=env.borrow_bps_per_year * BPS * bar_ns / YEAR_NS,
        )


@dataclass
class Portfolio:
    """Cash [E], quantities [E, A] and the average entry price of each open position [E, A]."""

    cash: np.ndarray
    qty: np.ndarray
    entry: np.ndarray

    @classmethod
    def start(cls, n_envs: int, n_assets: int, equity: float) -> Portfolio:
        return cls(
            np.full(n_envs, float(equity)),
            np.zeros((n_envs, n_assets)),
            np.zeros((n_envs, n_assets)),
        )

    def equity(self, prices: np.ndarray) -> np.ndarray:
        return self.cash + (self.qty * prices).sum(axis=-1)

    def weights(self, prices: np.ndarray) -> np.ndarray:
        """Position value / equity; zero where equity is not positive."""
        equity = self.equity(prices)
        safe = np.where(equity > 0, equity, 1.0)
        return np.where(equity[:, None] > 0, self.qty * prices / safe[:, None], 0.0)


@dataclass(frozen=True)
class Receipts:
    """One row per executed change of position; counters are derived from these, never kept apart."""

    env: np.ndarray
    asset: np.ndarray
    delta_qty: np.ndarray
    price: np.ndarray
    cost: np.ndarray
    reason: np.ndarray

    @classmethod
    def empty(cls) -> Receipts:
        ints, floats = np.zeros(0, dtype=np.int64), np.zeros(0)
        return cls(ints, ints, floats, floats, floats, np.zeros(0, dtype=np.int8))

    @classmethod
    def concat(cls, parts: list[Receipts]) -> Receipts:
        if len(parts) <= 1:
            return parts[0] if parts else NO_RECEIPTS
        return cls(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__)
        )

    def __len__(self) -> int:
        return len(self.env)

    def per_env(self, n_envs: int, field: str = "cost") -> np.ndarray:
        """Sum of a field per env ([E]); `count` counts receipts."""
        weights = None if field == "count" else getattr(self, field)
        return np.bincount(self.env, weights=weights, minlength=n_envs).astype(float)


NO_RECEIPTS = Receipts.empty()  # shared: receipts are never written after creation


@dataclass(frozen=True)
class StepResult:
    equity_before: np.ndarray  # at the close of bar t
    equity_after: np.ndarray  # at the close of bar t+1
    cost: np.ndarray  # paid during the step, [E]
    turnover: np.ndarray  # traded notional / equity at the open, [E]
    receipts: Receipts
    bankrupt: np.ndarray  # [E] bool


def target_weights(actions: np.ndarray, rules: ExecutionRules) -> np.ndarray:
    """Actions in [-1, 1] per asset -> weights: long-only clips at 0; gross above the cap is scaled."""
    weights = np.clip(actions, 0.0 if rules.long_only else -1.0, 1.0)
    gross = np.abs(weights).sum(axis=-1, keepdims=True)
    scale = np.where(
        gross > rules.max_leverage, rules.max_leverage / np.maximum(gross, 1e-300), 1.0
    )
    return weights * scale


def step(
    book: Portfolio,
    actions: np.ndarray,
    previous_close: np.ndarray,
    bar: np.ndarray,
    rules: ExecutionRules,
) -> StepResult:
    """Decide at `previous_close` [E, A]; trade and hold through `bar` [E, A, 4] (o, h, l, c)."""
    open_, high, low, close = (bar[..., i] for i in range(4))
    equity_before = book.equity(previous_close)
    equity_open = book.equity(open_)
    rebalanced = _rebalance(book, target_weights(actions, rules), open_, equity_open, rules)
    exits = _stops(book, open_, high, low, rules)
    _borrow(book, close, rules)
    equity_after = book.equity(close)
    bankrupt = equity_after <= 0
    liquidated = _liquidate(book, close, bankrupt, rules)
    if len(liquidated):
        equity_after = book.equity(close)
    receipts = Receipts.concat([part for part in (rebalanced, exits, liquidated) if len(part)])
    n_envs = len(book.cash)
    notional = np.abs(receipts.delta_qty) * receipts.price
    traded = np.bincount(receipts.env, weights=notional, minlength=n_envs)
    turnover = traded / np.where(equity_open > 0, equity_open, 1.0)
    return StepResult(
        equity_before, equity_after, receipts.per_env(n_envs), turnover, receipts, bankrupt
    )


def _trade(
    book: Portfolio, new_qty: np.ndarray, price: np.ndarray, rules: ExecutionRules, reason: int
) -> Receipts:
    """Move positions to `new_qty` at `price`, pay costs from cash, keep average entry prices."""
    delta = new_qty - book.qty
    traded = delta != 0
    if not traded.any():
        return NO_RECEIPTS
    notional = delta * price
    cost = np.abs(notional) * rules.cost_rate
    book.cash -= (notional + cost).sum(axis=-1)
    if rules.tracks_entry:
        _update_entry(book, new_qty, delta, price, traded)
    book.qty = new_qty
    env, asset = np.nonzero(traded)
    return Receipts(
        env,
        asset,
        delta[env, asset],
        price[env, asset],
        cost[env, asset],
        np.full(len(env), reason, dtype=np.int8),
    )


def _update_entry(
    book: Portfolio, new_qty: np.ndarray, delta: np.ndarray, price: np.ndarray, traded: np.ndarray
) -> None:
    """Average entry price: blended when a position grows, reset when it opens or flips."""
    grows = traded & (np.sign(new_qty) == np.sign(book.qty)) & (np.abs(new_qty) > np.abs(book.qty))
    opens = traded & (np.sign(new_qty) != np.sign(book.qty)) & (new_qty != 0)
    averaged = np.divide(
        book.qty * book.entry + delta * price, new_qty, out=np.zeros_like(new_qty), where=grows
    )
    book.entry = np.where(grows, averaged, np.where(opens, price, book.entry))
    book.entry = np.where(new_qty == 0, 0.0, book.entry)


def _rebalance(
    book: Portfolio,
    target: np.ndarray,
    open_: np.ndarray,
    equity_open: np.ndarray,
    rules: ExecutionRules,
) -> Receipts:
    solvent = (equity_open > 0)[:, None]
    safe_equity = np.where(solvent, equity_open[:, None], 1.0)
    current = np.where(solvent, book.qty * open_ / safe_equity, 0.0)
    wanted = np.where(solvent, target * safe_equity / open_, book.qty)
    small = np.abs(target - current) < rules.min_trade
    return _trade(book, np.where(small, book.qty, wanted), open_, rules, REBALANCE)


def _stops(
    book: Portfolio, open_: np.ndarray, high: np.ndarray, low: np.ndarray, rules: ExecutionRules
) -> Receipts:
    """Stop-loss first, then take-profit (the conservative order when a bar touches both)."""
    parts = []
    long, short = book.qty > 0, book.qty < 0
    if rules.stop_loss is not None:
        long_stop = book.entry * (1 - rules.stop_loss)
        short_stop = book.entry * (1 + rules.stop_loss)
        hit = (long & (low <= long_stop)) | (short & (high >= short_stop))
        # A bar that opens through the stop fills at the open, not at the better stop price.
        price = np.where(long, np.minimum(open_, long_stop), np.maximum(open_, short_stop))
        parts.append(
            _trade(book, np.where(hit, 0.0, book.qty), np.where(hit, price, open_), rules, STOP)
        )
        long, short = book.qty > 0, book.qty < 0
    if rules.take_profit is not None:
        long_take = book.entry * (1 + rules.take_profit)
        short_take = book.entry * (1 - rules.take_profit)
        hit = (long & (high >= long_take)) | (short & (low <= short_take))
        price = np.where(long, np.maximum(open_, long_take), np.minimum(open_, short_take))
        parts.append(
            _trade(
                book, np.where(hit, 0.0, book.qty), np.where(hit, price, open_), rules, TAKE_PROFIT
            )
        )
    return Receipts.concat(parts)


def _borrow(book: Portfolio, close: np.ndarray, rules: ExecutionRules) -> None:
    if rules.borrow_rate_per_bar:
        shorts = np.where(book.qty < 0, -book.qty * close, 0.0).sum(axis=-1)
        book.cash -= shorts * rules.borrow_rate_per_bar


def _liquidate(
    book: Portfolio, close: np.ndarray, bankrupt: np.ndarray, rules: ExecutionRules
) -> Receipts:
    if not bankrupt.any():
        return NO_RECEIPTS
    return _trade(book, np.where(bankrupt[:, None], 0.0, book.qty), close, rules, LIQUIDATION)
