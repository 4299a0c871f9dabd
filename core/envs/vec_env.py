"""K trading envs as one stable-baselines3 VecEnv: numpy-batched, in-process, or one per worker.

All three kinds run the same `Simulator`, so they agree exactly; env k is seeded `seed + k`.
SubprocVecEnv workers receive an `EnvFactory` (the store's path, settings, a bar range) and
attach the store themselves: nothing large is pickled.
"""

from __future__ import annotations

import functools
import multiprocessing
from typing import Literal

from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from core.bar_range import BarRange
from core.envs.batch_env import BatchTradingEnv
from core.envs.settings import EnvSettings
from core.envs.trading_env import EnvFactory, TradingEnv
from core.features.store import FeatureStore
from core.hardware.threads import ThreadLimitedFactory

VecKind = Literal["batch", "subproc", "dummy"]
# Modules a forkserver loads once, so each SubprocVecEnv worker starts with them imported.
WORKER_PRELOAD = ["numpy", "core.features.store", "core.envs.trading_env"]


def vec_env(
    n_envs: int,
    kind: VecKind,
    store: FeatureStore,
    settings: EnvSettings,
    bars: BarRange,
    seed: int | None = 0,
) -> VecEnv:
    """K envs over `bars` of `store`; env k is seeded `seed + k` at its first reset."""
    if n_envs < 1:
        raise ValueError(f"n_envs must be at least 1, got {n_envs}")
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


def _start_method() -> str:
    """forkserver where it exists: workers fork from a process that already imported numpy."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return "spawn"
    multiprocessing.set_forkserver_preload(WORKER_PRELOAD)
    return "forkserver"
