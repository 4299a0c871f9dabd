"""Reward and trade counters, vectorised over envs like the market model they sit on.

Reward (DESIGN.md): log(E_{t+1}/E_t)·reward_scale minus penalties, clipped to ±reward_clip.
Penalties are in return units and scaled like the log return, so `turnover_penalty = 0.0005`
charges an extra 5 bps per unit of turnover whatever `reward_scale` is. Every component is
returned before clipping so training logs can show what the agent is paid for.

Trade counts come from receipts only (one receipt = one trade): over the trailing window of each
timeframe, in the current UTC day, and since the episode began.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.config import RewardConfig
from core.data.timestamps import parse_duration
from core.units import DAY_NS

COMPONENTS = ("log_return", "pnl", "drawdown", "turnover", "trade_band", "unclipped", "reward")


@dataclass(frozen=True)
class Band:
    """Trades per day, counted over the trailing `bars`, must lie in [low, high]."""

    timeframe: str
    bars: int
    per_day: float  # count over the window × this = trades per day
    low: float
    high: float


class TradeCounter:
    """Receipt counts per env over trailing windows, per UTC day and per episode.

    A ring of cumulative counts makes every trailing window one subtraction, whatever its length.
    """

    def __init__(self, n_envs: int, timeframes: list[str], bar_ns: int) -> None:
        self.names = list(timeframes)
        self.bars = np.array([_bars(tf, bar_ns, "trade counter") for tf in self.names], np.int64)
        self.ring = np.zeros((n_envs, int(self.bars.max(initial=1)) + 1), np.int64)
        self.total = np.zeros(n_envs, np.int64)
        self.steps = np.zeros(n_envs, np.int64)
        self.day = np.full(n_envs, -1, np.int64)
        self.today = np.zeros(n_envs, np.int64)
        self.rows = np.arange(n_envs)

    def reset(self, envs: np.ndarray) -> None:
        self.ring[envs] = 0
        self.total[envs] = 0
        self.steps[envs] = 0
        self.day[envs] = -1
        self.today[envs] = 0

    def add(self, counts: np.ndarray, fill_ns: np.ndarray) -> None:
        """Record this step's receipt count per env; its trades filled at `fill_ns` (UTC)."""
        self.steps += 1
        self.total += counts
        self.ring[self.rows, self.steps % self.ring.shape[1]] = self.total
        day = fill_ns // DAY_NS
        self.today = np.where(day == self.day, self.today, 0) + counts
        self.day = day

    def trailing(self) -> np.ndarray:
        """[E, timeframes]: trades over each trailing window (shorter at an episode's start)."""
        back = np.maximum(self.steps[:, None] - self.bars[None, :], 0) % self.ring.shape[1]
        return self.total[:, None] - self.ring[self.rows[:, None], back]

    def table(self) -> tuple[list[str], np.ndarray]:
        """Counter names and [E, names] values: each timeframe, `day`, `episode`."""
        values = np.column_stack([self.trailing(), self.today, self.total])
        return [*self.names, "day", "episode"], values


@dataclass(frozen=True)
class RewardRules:
    scale: float
    clip: float
    drawdown_penalty: float
    turnover_penalty: float
    bands: tuple[Band, ...]
    band_penalty: float

    @classmethod
    def from_config(cls, reward: RewardConfig, bar_ns: int) -> RewardRules:
        bands = tuple(
            Band(tf, bars, DAY_NS / (bars * bar_ns), low, high)
            for tf, (low, high) in reward.trade_band.items()
            for bars in [_bars(tf, bar_ns, "reward.trade_band")]
        )
        return cls(
            reward.reward_scale,
            reward.reward_clip,
            reward.drawdown_penalty,
            reward.turnover_penalty,
            bands if reward.trade_band_penalty > 0 else (),
            reward.trade_band_penalty,
        )

    @property
    def band_timeframes(self) -> list[str]:
        return [band.timeframe for band in self.bands]


def rewards(
    rules: RewardRules,
    equity_before: np.ndarray,
    equity_after: np.ndarray,
    drawdown: np.ndarray,
    turnover: np.ndarray,
    counter: TradeCounter,
) -> dict[str, np.ndarray]:
    """Per-env components (see COMPONENTS); `reward` is the clipped sum paid to the agent."""
    # A bankrupt step has no finite log return; the clip turns it into the worst reward.
    ratio = np.maximum(equity_after, 1e-300) / equity_before
    log_return = np.log(ratio)
    pnl = rules.scale * log_return
    drawdown_cost = rules.scale * rules.drawdown_penalty * drawdown
    turnover_cost = rules.scale * rules.turnover_penalty * turnover
    band_cost = _band_cost(rules, counter)
    unclipped = pnl - drawdown_cost - turnover_cost - band_cost
    return {
        "log_return": log_return,
        "pnl": pnl,
        "drawdown": -drawdown_cost,
        "turnover": -turnover_cost,
        "trade_band": -band_cost,
        "unclipped": unclipped,
        "reward": np.clip(unclipped, -rules.clip, rules.clip),
    }


def _band_cost(rules: RewardRules, counter: TradeCounter) -> np.ndarray:
    cost = np.zeros(len(counter.total))
    if not rules.bands:
        return cost
    trailing = counter.trailing()
    for band in rules.bands:  # a handful of configured timeframes, not envs or assets
        rate = trailing[:, counter.names.index(band.timeframe)] * band.per_day
        # Too few trades only counts once the window is full: an episode starts with none.
        full = counter.steps >= band.bars
        below = np.where(full, np.maximum(band.low - rate, 0.0), 0.0)
        cost += rules.band_penalty * (below + np.maximum(rate - band.high, 0.0))
    return cost


def _bars(timeframe: str, bar_ns: int, key: str) -> int:
    length = parse_duration(timeframe, key)
    return max(1, length // bar_ns)
