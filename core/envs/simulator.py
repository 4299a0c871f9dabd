"""K trading episodes stepped together over one bar range of a feature store.

This is the engine under both envs: `TradingEnv` runs it with K = 1, `BatchTradingEnv` with
K in the thousands, so a single and a batched env cannot disagree. Every step is a fixed number
of numpy calls whatever K is; nothing loops over envs or assets in Python.

Time: at decision bar t the agent sees feature rows t-window+1 .. t of every asset and its
portfolio; the order fills at the open of t+1 and the step ends at the close of t+1 (core.envs.market).
Within a range [start, stop) the simulator reads prices of bars start .. stop-1 and feature
rows start-window+1 .. stop-1 (the window looks back, never ahead), and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from core.bar_range import BarRange
from core.config import EnvConfig
from core.envs.market import (
    LIQUIDATION,
    REASONS,
    ExecutionRules,
    Portfolio,
    Receipts,
    min_trade_of,
    step,
)
from core.envs.reward import RewardRules, TradeCounter, rewards
from core.envs.settings import EnvSettings
from core.errors import UserError
from core.features.store import FeatureStore
from core.features.windows import window_bars

OPEN, HIGH, LOW, CLOSE = range(4)
REASON_NAMES = np.asarray(REASONS)
# Portfolio state is clipped to this (weights beyond 10x equity only occur near bankruptcy).
STATE_LIMIT = 10.0
RECEIPT_DTYPE = np.dtype(
    [
        ("asset", np.int32),
        ("bar", np.int64),
        ("timestamp", np.int64),  # UTC ns: the bar's open, or its close for a liquidation
        ("delta_qty", np.float64),
        ("price", np.float64),
        ("cost", np.float64),
        ("reason", "U11"),
    ]
)


class ReceiptRows:
    """One env's receipts of one step: a structured array (RECEIPT_DTYPE) with a readable face.

    `rows["cost"]` is a column, `rows[0]` a dict, `list(rows)` dicts; equality compares every
    field, so env checkers and tests can compare infos.
    """

    __slots__ = ("array",)
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self.array[key]
        return dict(zip(RECEIPT_DTYPE.names, self.array[key].item(), strict=True))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReceiptRows) and np.array_equal(self.array, other.array)

    def __repr__(self) -> str:
        return f"ReceiptRows({list(self)!r})"


@dataclass
class StepOutput:
    rewards: np.ndarray  # [K]
    terminated: np.ndarray  # [K] bankrupt
    truncated: np.ndarray  # [K] episode length or range end reached
    close_ns: np.ndarray  # [K] UTC ns close of the bar just traded
    equity: np.ndarray
    weights: np.ndarray  # [K, A] held at that close
    cost: np.ndarray
    turnover: np.ndarray  # [K] traded notional / equity at the open
    raw_receipts: Receipts
    bar: np.ndarray  # [K] index of the bar just traded
    bar_open_ns: np.ndarray  # the store's bar open times
    counter_names: list[str]
    counts: np.ndarray  # [K, counters]
    components: dict[str, np.ndarray]

    @cached_property
    def receipt_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(RECEIPT_DTYPE rows sorted by env, bounds): env k's rows are rows[bounds[k]:bounds[k+1]].

        Built on first use: training rarely reads receipts, and at large K this is real work.
        """
        receipts = self.raw_receipts
        order = np.argsort(receipts.env, kind="stable")
        env = receipts.env[order]
        reason = receipts.reason[order]
        bar = self.bar[env]
        opens = self.bar_open_ns[bar]
        bar_ns = self.close_ns[0] - self.bar_open_ns[self.bar[0]]
        records = np.empty(len(env), RECEIPT_DTYPE)
        records["asset"] = receipts.asset[order]
        records["bar"] = bar
        records["timestamp"] = np.where(reason == LIQUIDATION, opens + bar_ns, opens)
        records["delta_qty"] = receipts.delta_qty[order]
        records["price"] = receipts.price[order]
        records["cost"] = receipts.cost[order]
        records["reason"] = REASON_NAMES[reason]
        return records, np.searchsorted(env, np.arange(len(self.rewards) + 1))

    def receipts_of(self, k: int) -> ReceiptRows:
        records, bounds = self.receipt_table
        return ReceiptRows(records[bounds[k] : bounds[k + 1]])


class Simulator:
    def __init__(
        self, store: FeatureStore, settings: EnvSettings, bars: BarRange, n_envs: int
    ) -> None:
        env = settings.env
        self.store, self.settings, self.bars, self.n_envs = store, settings, bars, n_envs
        self.window = env.window
        self.episode_bars = window_bars("env", "episode_bars", env.episode_bars, store.meta)
        features = np.asarray(store.features)  # [asset, time, feature], memory-mapped
        self.n_assets, n_time, self.n_features = features.shape
        check_range(bars, n_time, self.window)
        self.prices = np.asarray(store.prices)
        self.timestamps = np.asarray(store.timestamps)
        self.bar_ns = store.bar_ns
        # windows[j] is the [asset, window, feature] block ending at row j + window - 1: a view
        # with overlapping strides, so gathering K windows is K·assets contiguous copies.
        a_stride, t_stride, f_stride = features.strides
        self.windows = np.lib.stride_tricks.as_strided(
            features,
            shape=(n_time - self.window + 1, self.n_assets, self.window, self.n_features),
            strides=(t_stride, a_stride, t_stride, f_stride),
            writeable=False,
        )
        check_band(env, self.n_assets)
        self.execution = ExecutionRules.from_config(env, self.bar_ns, self.n_assets)
        self.reward_rules = RewardRules.from_config(settings.reward, self.bar_ns)
        counters = dict.fromkeys([*settings.timeframes, *self.reward_rules.band_timeframes])
        self.counter = TradeCounter(n_envs, list(counters), self.bar_ns)
        self.initial_equity = env.initial_equity
        self.book = Portfolio.start(n_envs, self.n_assets, self.initial_equity)
        self.t = np.full(n_envs, bars.start, np.int64)
        self.end = np.full(n_envs, bars.start, np.int64)
        self.close = np.zeros((n_envs, self.n_assets))
        self.peak = np.full(n_envs, self.initial_equity)
        self.equity = np.full(n_envs, self.initial_equity)  # at the close of bar t
        self.weights = np.zeros((n_envs, self.n_assets))  # held at that close
        self.held = np.zeros((n_envs, self.n_assets), np.int64)

    def draw_start(self, rng: np.random.Generator) -> int:
        """Uniform over every bar that one step can follow, so the range's recent end is
        sampled as often as its beginning; episodes starting late are cut at the range end."""
        return int(rng.integers(self.bars.start, self.bars.stop - 1))

    def reset(self, envs: np.ndarray, starts: np.ndarray) -> None:
        """Start episodes of `envs` flat at decision bars `starts`."""
        starts = np.asarray(starts, np.int64)
        bad = (starts < self.bars.start) | (starts > self.bars.stop - 2)
        if bad.any():
            raise ValueError(
                f"episode start bar {int(starts[bad][0])} is outside the env's range: starts "
                f"must lie in [{self.bars.start}, {self.bars.stop - 2}] so one bar can follow"
            )
        # Replace arrays rather than write into them: the last StepOutput may still hold them.
        book = self.book
        self.t = _replaced(self.t, envs, starts)
        self.end = _replaced(
            self.end, envs, np.minimum(starts + self.episode_bars, self.bars.stop - 1)
        )
        book.cash = _replaced(book.cash, envs, self.initial_equity)
        book.qty = _replaced(book.qty, envs, 0.0)
        book.entry = _replaced(book.entry, envs, 0.0)
        self.close = _replaced(self.close, envs, self.prices[:, starts, CLOSE].T)
        self.peak = _replaced(self.peak, envs, self.initial_equity)
        self.equity = _replaced(self.equity, envs, self.initial_equity)
        self.weights = _replaced(self.weights, envs, 0.0)
        self.held = _replaced(self.held, envs, 0)
        self.counter.reset(envs)

    def observe(self, envs: np.ndarray | slice = slice(None)) -> dict[str, np.ndarray]:
        """Observation of `envs`: market windows [k, asset·window·feature] and portfolio state.

        Flat (a free reshape) because SB3's policies expect vectors;
        `market.reshape(k, asset, window, feature)` restores the axes.
        """
        market = self.windows[self.t[envs] - (self.window - 1)]
        return {
            "market": market.reshape(len(market), -1),
            "portfolio": self.portfolio_state(envs),
        }

    def portfolio_state(self, envs: np.ndarray | slice = slice(None)) -> np.ndarray:
        """[k, 2·assets + 1]: weights, drawdown, time in position (held/(held+window) in [0, 1))."""
        return portfolio_vector(
            self.weights[envs], self.drawdown(envs), self.held[envs], self.window
        )

    def drawdown(self, envs: np.ndarray | slice = slice(None)) -> np.ndarray:
        """[k]: how far equity at the close of bar t is below its peak, as a fraction."""
        return 1.0 - self.equity[envs] / self.peak[envs]

    def step(self, actions: np.ndarray) -> StepOutput:
        """Trade every env one bar; envs past their end must be reset by the caller first."""
        actions = np.asarray(actions, dtype=np.float64).reshape(self.n_envs, self.n_assets)
        nxt = self.t + 1
        bar = self.prices[:, nxt, :4].transpose(1, 0, 2)  # [K, asset, o/h/l/c]
        before_qty = self.book.qty  # core.envs.market replaces the array, never writes into it
        result = step(self.book, actions, self.close, bar, self.execution)
        close = bar[..., CLOSE]
        self.close = close
        self.t = nxt
        self.peak = np.maximum(self.peak, result.equity_after)
        self.equity = result.equity_after
        solvent = self.equity > 0
        self.weights = np.where(
            solvent[:, None],
            self.book.qty * close / np.where(solvent, self.equity, 1.0)[:, None],
            0.0,
        )
        drawdown = 1.0 - result.equity_after / self.peak
        self._update_tenure(before_qty)
        close_ns = self.timestamps[nxt] + self.bar_ns
        counts = result.receipts.per_env(self.n_envs, "count").astype(np.int64)
        self.counter.add(counts, self.timestamps[nxt])  # trades fill at the bar's open
        components = rewards(
            self.reward_rules,
            result.equity_before,
            result.equity_after,
            drawdown,
            result.turnover,
            self.counter,
        )
        names, counts = self.counter.table()
        return StepOutput(
            rewards=components["reward"],
            terminated=result.bankrupt,
            truncated=~result.bankrupt & (nxt >= self.end),
            close_ns=close_ns,
            equity=result.equity_after,
            weights=self.weights,
            cost=result.cost,
            turnover=result.turnover,
            raw_receipts=result.receipts,
            bar=nxt,
            bar_open_ns=self.timestamps,
            counter_names=names,
            counts=counts,
            components=components,
        )

    def _update_tenure(self, before_qty: np.ndarray) -> None:
        qty = self.book.qty
        kept = (np.sign(qty) == np.sign(before_qty)) & (qty != 0)
        self.held = np.where(kept, self.held + 1, np.where(qty != 0, 1, 0))


def portfolio_vector(
    weights: np.ndarray, drawdown: np.ndarray, bars_held: np.ndarray, window: int
) -> np.ndarray:
    """The portfolio part of an observation, [k, 2·assets + 1] float32: one formula for the
    walks and for a decision asked of a stated portfolio (--predict --holding)."""
    tenure = bars_held / (bars_held + window)
    state = np.concatenate([weights, drawdown[:, None], tenure], axis=1)
    return np.clip(state, -STATE_LIMIT, STATE_LIMIT).astype(np.float32)


def _replaced(array: np.ndarray, envs: np.ndarray, value: Any) -> np.ndarray:
    copy = array.copy()
    copy[envs] = value
    return copy


def check_range(bars: BarRange, n_time: int, window: int) -> None:
    """A range needs `window - 1` feature rows before it and two bars (one step) inside it."""
    if not 0 <= bars.start < bars.stop <= n_time:
        raise UserError(
            f"bar range [{bars.start}, {bars.stop}) is not inside the feature store's "
            f"{n_time:,} bars\n  fix: pass a fold range within [0, {n_time})"
        )
    if bars.start < window - 1:
        raise UserError(
            f"bar range starts at bar {bars.start}, but an observation needs the {window} "
            f"feature rows ending at its first bar\n  fix: start the range at bar {window - 1} "
            "or later, or lower env.window"
        )
    if len(bars) < 2:
        raise UserError(
            f"bar range [{bars.start}, {bars.stop}) holds {len(bars)} bar; an episode needs 2"
        )


def check_band(env: EnvConfig, n_assets: int) -> None:
    """The no-trade band must let an equal-weight position open, or buy-and-hold (and any agent
    that spreads its capital) would never trade and the baselines would judge nothing."""
    equal_weight = env.max_leverage / n_assets
    band = min_trade_of(env, n_assets)
    if band >= equal_weight:
        raise UserError(
            f"env.min_trade = {band:g} is not below an equal-weight position "
            f"(env.max_leverage {env.max_leverage:g} / {n_assets} assets = {equal_weight:.4g}): "
            "changes that small are skipped, so an equal-weight portfolio could never open\n"
            f"  fix: set env.min_trade below {equal_weight:.4g} (e.g. {equal_weight / 2:.3g}) or "
            "to auto (80 % of an equal-weight position at most)"
        )
