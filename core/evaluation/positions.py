"""Whether a strategy's decisions move with the market: the spread of its target weights.

A learner can converge to one action (say +85 % long, whatever the bars say): it trades and
holds exposure, and in a rising market may even look good, so neither the no-trade alarm nor
the Sharpe catches it. The standard deviation of each asset's target weight over a window does:
a policy that reads its observations moves its weights, one that ignores them keeps every std
near 0. A flat track (nothing held) is the no-trade alarm's business, not this one's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PositionSpread:
    """Per asset, the mean and the standard deviation (ddof 0) of the target weights over a
    window's decisions."""

    mean: np.ndarray
    std: np.ndarray
    bars: int

    @property
    def gross(self) -> float:
        """Mean gross weight of the average position: below the flat floor nothing is held."""
        return float(np.abs(self.mean).sum())

    def is_constant(self, max_std: float, flat_below: float) -> bool:
        """Every asset's weight std below `max_std` over two or more decisions, while holding
        at least `flat_below` gross on average (a flat track never traded: another alarm)."""
        return bool(self.bars >= 2 and self.gross >= flat_below and np.all(self.std < max_std))


def position_spread(weights: np.ndarray) -> PositionSpread:
    """The spread of target weights [bars, assets] (one decision a row)."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2:
        raise ValueError(f"expected target weights [bars, assets], got shape {weights.shape}")
    if not len(weights):
        zeros = np.zeros(weights.shape[1])
        return PositionSpread(zeros, zeros, 0)
    return PositionSpread(weights.mean(axis=0), weights.std(axis=0), len(weights))


def describe_position(spread: PositionSpread, assets: list[str]) -> str:
    """The average position a reader can picture: '+0.85 long BTC, -0.10 short ETH' (assets
    held under 0.005 on average are left out; all of them: 'flat')."""
    held = [
        f"{value:+.2f} {'long' if value > 0 else 'short'} {asset}"
        for asset, value in zip(assets, spread.mean, strict=True)
        if abs(value) >= 0.005
    ]
    return ", ".join(held) or "flat"
