"""Baseline strategies an agent must beat on the same windows, costs and market model.

cash (never trades), equal-weight buy-and-hold, a random policy trading about as much as the
agent (so a cost-driven "edge" shows up in the baseline too), and a moving-average crossover.
Each is a `core.evaluation.rollout.Policy`: it decides at the close of bar t from data up to that close.
"""

from __future__ import annotations

import numpy as np

from core.envs.market import ExecutionRules, target_weights
from core.envs.simulator import CLOSE
from core.evaluation.rollout import Policy
from core.features.store import FeatureStore

BASELINES = ("cash", "buy_and_hold", "random", "ma_crossover")
CALIBRATION_DRAWS = 4096


def cash(n_assets: int) -> Policy:
    flat = np.zeros((1, n_assets))
    return lambda obs, weights, t: flat


def buy_and_hold(n_assets: int, rules: ExecutionRules) -> Policy:
    """Equal weights bought at the first open, then held (the target is what is held)."""
    start = np.full((1, n_assets), min(1.0, rules.max_leverage) / n_assets)

    def decide(obs: dict[str, np.ndarray], weights: np.ndarray, t: int) -> np.ndarray:
        return start if not np.abs(weights).any() else weights

    return decide


def random_policy(
    n_assets: int, rules: ExecutionRules, turnover_per_bar: float, seed: int
) -> Policy:
    """Redraws uniform random targets on a random fraction of bars, chosen so that its expected
    turnover per bar matches `turnover_per_bar` (the agent's); holds in between."""
    rng = np.random.default_rng(seed)
    per_redraw = redraw_turnover(n_assets, rules, rng)
    chance = float(np.clip(turnover_per_bar / per_redraw, 0.0, 1.0)) if per_redraw > 0 else 0.0
    low = 0.0 if rules.long_only else -1.0

    def decide(obs: dict[str, np.ndarray], weights: np.ndarray, t: int) -> np.ndarray:
        if rng.random() < chance:
            return rng.uniform(low, 1.0, (1, n_assets))
        return weights

    return decide


def redraw_turnover(n_assets: int, rules: ExecutionRules, rng: np.random.Generator) -> float:
    """Mean Σ|Δweight| between two independent random targets (after the leverage cap)."""
    low = 0.0 if rules.long_only else -1.0
    a = target_weights(rng.uniform(low, 1.0, (CALIBRATION_DRAWS, n_assets)), rules)
    b = target_weights(rng.uniform(low, 1.0, (CALIBRATION_DRAWS, n_assets)), rules)
    return float(np.abs(a - b).sum(axis=1).mean())


def ma_crossover(store: FeatureStore, rules: ExecutionRules, fast: int, slow: int) -> Policy:
    """Long each asset whose fast moving average of closes is above the slow one (short it when
    shorts are allowed), equal weights; averages end at the decision bar's close."""
    closes = np.asarray(store.prices)[:, :, CLOSE]  # [asset, time]
    fast_ma, slow_ma = _moving_average(closes, fast), _moving_average(closes, slow)
    n_assets = closes.shape[0]
    size = min(1.0, rules.max_leverage) / n_assets
    low = 0.0 if rules.long_only else -1.0

    def decide(obs: dict[str, np.ndarray], weights: np.ndarray, t: int) -> np.ndarray:
        signal = np.where(fast_ma[:, t] > slow_ma[:, t], 1.0, low)
        return (signal * size)[None]

    return decide


def _moving_average(closes: np.ndarray, bars: int) -> np.ndarray:
    """Trailing mean over `bars` closes ending at each bar (shorter at the series' start)."""
    total = np.cumsum(closes, axis=1)
    lagged = np.zeros_like(total)
    lagged[:, bars:] = total[:, :-bars]
    counts = np.minimum(np.arange(1, closes.shape[1] + 1), bars)
    return (total - lagged) / counts
