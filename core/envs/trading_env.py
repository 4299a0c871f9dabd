"""`TradingEnv`: one gymnasium env over one bar range of a feature store (a K = 1 `Simulator`).

Light on purpose: SubprocVecEnv workers import this module (numpy, gymnasium and the store) and
build their env with `EnvFactory`, never the data or feature pipeline.

Observation (a dict): `market` float32 [asset·window·feature] (reshape to [asset, window,
feature]), the last `window` feature rows of every asset, copied out of the shared memory-mapped
store; `portfolio` float32 [2·asset + 1]: weights held, drawdown from the episode's peak, time
in position per asset.
Action: target weights in [-1, 1] per asset (core.envs.market turns them into trades).
Step info: `timestamp` (UTC ns close of the bar traded through), `equity`, `weights` (held at
that close), `cost`, `receipts` (RECEIPT_DTYPE rows), `trade_counts`, `reward_components`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from core.bar_range import BarRange
from core.envs.batch_env import (
    StepInfo,
    action_space,
    episode_start,
    observation_space,
    reset_info,
)
from core.envs.settings import EnvSettings
from core.envs.simulator import Simulator
from core.features.store import FeatureStore

FIRST = np.zeros(1, np.int64)  # the only env of a TradingEnv's simulator


class TradingEnv(gym.Env):
    metadata = {"render_modes": []}  # noqa: RUF012 (gymnasium reads a class attribute)

    def __init__(
        self, store: FeatureStore, settings: EnvSettings, bars: BarRange, seed: int | None = None
    ) -> None:
        self.sim = Simulator(store, settings, bars, n_envs=1)
        self.observation_space = observation_space(store, self.sim.window)
        self.action_space = action_space(store)
        self.assets = store.assets
        self._first_seed = seed
        self._running = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start flat at `options["start"]` (bar index or time) or at a random bar of the range."""
        if seed is None and self._first_seed is not None:
            seed = self._first_seed
        self._first_seed = None
        super().reset(seed=seed)
        bar = episode_start(self.sim, (options or {}).get("start"), self.np_random)
        self.sim.reset(FIRST, np.array([bar]))
        self._running = True
        return self._observation(), reset_info(self.sim, bar)

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if not self._running:
            raise RuntimeError("the episode has ended (or never began): call reset() first")
        out = self.sim.step(np.asarray(action)[None])
        terminated, truncated = bool(out.terminated[0]), bool(out.truncated[0])
        self._running = not (terminated or truncated)
        info = StepInfo(out, 0)
        return self._observation(), float(out.rewards[0]), terminated, truncated, info

    def _observation(self) -> dict[str, np.ndarray]:
        window = self.sim.windows[int(self.sim.t[0]) - (self.sim.window - 1)]
        # Copied: callers keep observations, and consecutive windows overlap in the store.
        market = window.reshape(-1).copy()
        return {"market": market, "portfolio": self.sim.portfolio_state()[0]}


@dataclass(frozen=True)
class EnvFactory:
    """Builds a TradingEnv in a worker process from the store's path: nothing large is pickled."""

    store_path: str
    settings: EnvSettings
    bars: BarRange
    seed: int | None = None

    def __call__(self) -> TradingEnv:
        return TradingEnv(FeatureStore.attach(self.store_path), self.settings, self.bars, self.seed)
