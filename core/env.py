"""Trading environments and the entry points that build them.

`TradingEnv` is a gymnasium env over one bar range of a feature store; `make_vec_env` gives K
of them as a numpy-batched VecEnv (default), SB3's DummyVecEnv, or SB3's SubprocVecEnv whose
workers attach the store by path. All three run the same `Simulator`, so they agree exactly.

Observation (a dict): `market` float32 [asset·window·feature] (reshape to [asset, window,
feature]), the last `window` feature rows of every asset, copied out of the shared memory-mapped
store; `portfolio` float32 [2·asset + 1]: weights held, drawdown from the episode's peak, time
in position per asset.
Action: target weights in [-1, 1] per asset (core.market turns them into trades).
Step info: `timestamp` (UTC ns close of the bar traded through), `equity`, `weights` (held at
that close), `cost`, `receipts` (RECEIPT_DTYPE rows), `trade_counts`, `reward_components`.
"""

from __future__ import annotations

import functools
import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from core.batch_env import (
    BatchTradingEnv,
    StepInfo,
    action_space,
    episode_start,
    observation_space,
    reset_info,
)
from core.config import Config
from core.env_setup import resolve_config, resolve_range, resolve_store, settings_of
from core.simulator import BarRange, Settings, Simulator
from core.store import FeatureStore
from core.threads import ThreadLimitedFactory

VecKind = Literal["batch", "subproc", "dummy"]
# Modules a forkserver loads once, so each SubprocVecEnv worker starts with them imported.
WORKER_PRELOAD = ["numpy", "core.store", "core.env"]
FIRST = np.zeros(1, np.int64)  # the only env of a TradingEnv's simulator


class TradingEnv(gym.Env):
    metadata = {"render_modes": []}  # noqa: RUF012 (gymnasium reads a class attribute)

    def __init__(
        self, store: FeatureStore, settings: Settings, bars: BarRange, seed: int | None = None
    ) -> None:
        self.sim = Simulator(store, settings, bars, n_envs=1)
        self.observation_space = observation_space(self.sim)
        self.action_space = action_space(self.sim)
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
    settings: Settings
    bars: BarRange
    seed: int | None = None

    def __call__(self) -> TradingEnv:
        return TradingEnv(FeatureStore.attach(self.store_path), self.settings, self.bars, self.seed)


def make_env(
    config: Config | None = None,
    data: FeatureStore | str | Path | None = None,
    fold: Any = None,
    seed: int | None = 0,
    **overrides: Any,
) -> TradingEnv:
    """One TradingEnv. `fold`: None (every bar), (start, stop), a slice or a `.start/.stop`."""
    return TradingEnv(*_env_parts(config, data, fold, overrides), seed)


def make_vec_env(
    n_envs: int,
    kind: VecKind = "batch",
    config: Config | None = None,
    data: FeatureStore | str | Path | None = None,
    fold: Any = None,
    seed: int | None = 0,
    **overrides: Any,
) -> VecEnv:
    """K envs; env k is seeded `seed + k` at its first reset, whatever the kind."""
    if n_envs < 1:
        raise ValueError(f"n_envs must be at least 1, got {n_envs}")
    store, settings, bars = _env_parts(config, data, fold, overrides)
    vec: VecEnv
    if kind == "batch":
        vec = BatchTradingEnv(store, settings, bars, n_envs)
    elif kind == "dummy":
        vec = DummyVecEnv([functools.partial(TradingEnv, store, settings, bars)] * n_envs)
    elif kind == "subproc":
        factory = ThreadLimitedFactory(EnvFactory(str(store.path), settings, bars))
        vec = SubprocVecEnv([factory] * n_envs, start_method=_start_method())
    else:
        raise ValueError(f"kind must be 'batch', 'subproc' or 'dummy', got {kind!r}")
    if seed is not None:
        vec.seed(seed)
    return vec


def _env_parts(
    config: Config | None, data: FeatureStore | str | Path | None, fold: Any, overrides: dict
) -> tuple[FeatureStore, Settings, BarRange]:
    config = resolve_config(config, overrides)
    store = resolve_store(config, data)
    return store, settings_of(config), resolve_range(fold, store, config.env.window)


def _start_method() -> str:
    """forkserver where it exists: workers fork from a process that already imported numpy."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return "spawn"
    multiprocessing.set_forkserver_preload(WORKER_PRELOAD)
    return "forkserver"
