"""The baseline: a trading env written the way most open-source trading envs are.

Per step it looks rows up with `DataFrame.loc` (a window slice per asset for the observation,
a row per asset for prices), builds the state from Python lists and settles trades asset by
asset in a Python loop. It follows the same execution contract as core.envs.market (decide at the
close, fill at the next open, cost on the traded notional, mark at the close) so benchmarks
compare the same work; it has no stops, borrow or receipts.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces

from core.features.store import FeatureStore


class NaivePandasEnv(gym.Env):
    metadata = {"render_modes": []}  # noqa: RUF012 (gymnasium reads a class attribute)

    def __init__(
        self,
        store_path: str,
        window: int = 32,
        episode_bars: int = 720,
        cost_bps: float = 3.0,
        initial_equity: float = 10_000.0,
        reward_scale: float = 100.0,
    ) -> None:
        store = FeatureStore.attach(store_path)
        index = pd.DatetimeIndex(np.asarray(store.timestamps).astype("datetime64[ns]"))
        self.dates = list(index)
        self.assets = store.assets
        self.features = {
            asset: pd.DataFrame(
                np.asarray(store.features[a]), index=index, columns=store.feature_names
            )
            for a, asset in enumerate(self.assets)
        }
        self.prices = {
            asset: pd.DataFrame(
                np.asarray(store.prices[a, :, :4]),
                index=index,
                columns=["open", "high", "low", "close"],
            )
            for a, asset in enumerate(self.assets)
        }
        self.window, self.episode_bars = window, episode_bars
        self.cost_rate = cost_bps / 1e4
        self.initial_equity, self.reward_scale = initial_equity, reward_scale
        n_assets, n_features = len(self.assets), len(store.feature_names)
        size = n_assets * window * n_features + 2 * n_assets + 1
        self.observation_space = spaces.Box(-np.inf, np.inf, (size,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (n_assets,), np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        latest = len(self.dates) - 1 - self.episode_bars
        self.t = int(self.np_random.integers(self.window - 1, latest))
        self.end = self.t + self.episode_bars
        self.cash = self.initial_equity
        self.shares = [0.0] * len(self.assets)
        self.held = [0] * len(self.assets)
        self.peak = self.initial_equity
        return self._state(), {}

    def _close(self, asset: str, t: int) -> float:
        return float(self.prices[asset].loc[self.dates[t], "close"])

    def _equity(self, t: int) -> float:
        return self.cash + sum(
            qty * self._close(asset, t) for asset, qty in zip(self.assets, self.shares, strict=True)
        )

    def _state(self) -> np.ndarray:
        state: list[float] = []
        first, last = self.dates[self.t - self.window + 1], self.dates[self.t]
        for asset in self.assets:
            rows = self.features[asset].loc[first:last]
            for row in rows.values.tolist():
                state.extend(row)
        equity = self._equity(self.t)
        for asset, qty in zip(self.assets, self.shares, strict=True):
            state.append(qty * self._close(asset, self.t) / equity)
        state.append(1.0 - equity / self.peak)
        state.extend(held / (held + self.window) for held in self.held)
        return np.array(state, dtype=np.float32)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        before = self._equity(self.t)
        weights = [min(max(float(w), -1.0), 1.0) for w in action]
        gross = sum(abs(w) for w in weights)
        if gross > 1.0:
            weights = [w / gross for w in weights]
        bar = self.dates[self.t + 1]
        opens = [float(self.prices[asset].loc[bar, "open"]) for asset in self.assets]
        equity_open = self.cash + sum(q * p for q, p in zip(self.shares, opens, strict=True))
        for i, (weight, price) in enumerate(zip(weights, opens, strict=True)):
            target = weight * equity_open / price
            delta = target - self.shares[i]
            self.cash -= delta * price + abs(delta) * price * self.cost_rate
            self.held[i] = self.held[i] + 1 if target * self.shares[i] > 0 else int(target != 0)
            self.shares[i] = target
        self.t += 1
        after = self._equity(self.t)
        self.peak = max(self.peak, after)
        reward = self.reward_scale * math.log(max(after, 1e-300) / before)
        terminated = after <= 0
        truncated = self.t >= self.end
        return self._state(), reward, terminated, truncated, {"equity": after}


class NaiveEnvFactory:
    """Picklable constructor for SubprocVecEnv workers; episodes stay before bar `stop`."""

    def __init__(self, path: str, window: int, episode: int, cost_bps: float, stop: int) -> None:
        self.args = (path, window, episode, cost_bps, stop)

    def __call__(self) -> NaivePandasEnv:
        path, window, episode, cost_bps, stop = self.args
        env = NaivePandasEnv(path, window=window, episode_bars=episode, cost_bps=cost_bps)
        env.dates = env.dates[:stop]
        return env
