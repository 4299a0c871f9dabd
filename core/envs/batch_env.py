"""`BatchTradingEnv`: K trading envs stepped together with array operations, as one SB3 VecEnv.

Same observations, rewards and infos as K `TradingEnv`s in a DummyVecEnv (tested), without a
process or a Python call per env: one `Simulator` step for all of them. SB3's auto-reset
contract holds: a finished env is reset inside `step_wait`, its last observation travels in
`infos[k]["terminal_observation"]`, and `TimeLimit.truncated` tells a time limit from a loss.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices

from core.bar_range import BarRange
from core.envs.settings import EnvSettings
from core.envs.simulator import STATE_LIMIT, Simulator, StepOutput
from core.features.store import FeatureStore


def observation_space(store: FeatureStore, window: int) -> spaces.Dict:
    """Bounds: features are clipped z-scores (or ±1 encodings); the state is clipped too. From
    the store and window alone, so a checkpoint's spaces come from the run, not from its file."""
    n_assets, _, n_features = store.features.shape
    shape = (n_assets * window * n_features,)
    bound = max(float(store.meta["config"]["features"]["clip"]), 1.0)
    state = (2 * n_assets + 1,)
    return spaces.Dict(
        {
            "market": spaces.Box(-bound, bound, shape, np.float32),
            "portfolio": spaces.Box(-STATE_LIMIT, STATE_LIMIT, state, np.float32),
        }
    )


def action_space(store: FeatureStore) -> spaces.Box:
    return spaces.Box(-1.0, 1.0, (store.features.shape[0],), np.float32)


def episode_start(sim: Simulator, requested: Any, rng: np.random.Generator) -> int:
    """The requested start (bar index or time), or a random bar of the range."""
    return sim.draw_start(rng) if requested is None else resolve_start(requested, sim.timestamps)


def reset_info(sim: Simulator, start: int) -> dict[str, Any]:
    return {
        "timestamp": int(sim.timestamps[start] + sim.bar_ns),
        "equity": sim.initial_equity,
        "start": start,
    }


def info_fields(out: StepOutput, k: int) -> dict[str, Any]:
    """The contract keys of env k's step info."""
    counts = out.counts[k].tolist()
    return {
        "timestamp": int(out.close_ns[k]),
        "equity": float(out.equity[k]),
        "weights": out.weights[k],
        "cost": float(out.cost[k]),
        "receipts": out.receipts_of(k),
        "trade_counts": dict(zip(out.counter_names, counts, strict=True)),
        "reward_components": {name: float(value[k]) for name, value in out.components.items()},
    }


CONTRACT_KEYS = frozenset(
    ("timestamp", "equity", "weights", "cost", "receipts", "trade_counts", "reward_components")
)


class StepInfo(dict):
    """A step info whose contract keys are filled from the batch arrays on first use.

    Why: SB3 wants one dict per env per step, and building K full dicts costs more than the
    step itself at K = 256. SB3 only asks for `episode`, `terminal_observation` and
    `TimeLimit.truncated`, which never fill it; reading any contract key, iterating, comparing,
    copying or pickling fills it, after which it is a plain dict.
    """

    __slots__ = ("_index", "_out")

    def __init__(self, out: StepOutput, index: int, truncated: bool | None = None) -> None:
        if truncated is not None:  # vec envs report time limits the way SB3's own do
            dict.__setitem__(self, "TimeLimit.truncated", truncated)
        self._out: StepOutput | None = out
        self._index = index

    def _fill(self) -> StepInfo:
        if self._out is not None:
            fields = info_fields(self._out, self._index)
            self._out = None
            for key, value in fields.items():
                dict.setdefault(self, key, value)
        return self

    def __getitem__(self, key: str) -> Any:
        return dict.__getitem__(self._fill(), key)

    def get(self, key: str, default: Any = None) -> Any:
        if key in CONTRACT_KEYS:
            self._fill()
        return dict.get(self, key, default)

    def __contains__(self, key: object) -> bool:
        return key in CONTRACT_KEYS or dict.__contains__(self, key)

    def __iter__(self) -> Iterator[str]:
        return dict.__iter__(self._fill())

    def __len__(self) -> int:
        return dict.__len__(self._fill())

    def keys(self) -> KeysView[str]:
        return dict.keys(self._fill())

    def values(self) -> ValuesView[Any]:
        return dict.values(self._fill())

    def items(self) -> ItemsView[str, Any]:
        return dict.items(self._fill())

    def copy(self) -> dict[str, Any]:
        return dict(self._fill().items())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StepInfo):
            other._fill()
        return dict.__eq__(self._fill(), other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return dict.__repr__(self._fill())

    def __reduce__(self) -> tuple[type, tuple[dict[str, Any]]]:
        return (dict, (self.copy(),))


def step_infos(out: StepOutput) -> list[dict[str, Any]]:
    """One info per env: lazily filled, so a step costs one small object per env."""
    truncated = (out.truncated & ~out.terminated).tolist()
    return [StepInfo(out, k, cut) for k, cut in enumerate(truncated)]


class BatchTradingEnv(VecEnv):
    def __init__(
        self, store: FeatureStore, settings: EnvSettings, bars: BarRange, n_envs: int
    ) -> None:
        self.sim = Simulator(store, settings, bars, n_envs)
        self.assets = store.assets
        self.render_mode = None
        super().__init__(n_envs, observation_space(store, self.sim.window), action_space(store))
        self._rngs: list[np.random.Generator | None] = [None] * n_envs
        self._actions: np.ndarray | None = None

    def reset(self) -> dict[str, np.ndarray]:
        envs = np.arange(self.num_envs)
        starts = []
        for k in envs:  # once per episode, not per step: each env keeps its own generator
            if self._seeds[k] is not None or self._rngs[k] is None:
                self._rngs[k] = seeding.np_random(self._seeds[k])[0]
            starts.append(episode_start(self.sim, self._options[k].get("start"), self._rngs[k]))
        self.sim.reset(envs, np.array(starts))
        self.reset_infos = [reset_info(self.sim, start) for start in starts]
        self._reset_seeds()
        self._reset_options()
        return self.sim.observe()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[dict]]:
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async(): call step(actions)")
        out = self.sim.step(self._actions)
        self._actions = None
        dones = out.terminated | out.truncated
        obs = self.sim.observe()
        infos = step_infos(out)
        if dones.any():
            self._restart(np.flatnonzero(dones), obs, infos)
        return obs, out.rewards.astype(np.float32), dones, infos

    def _restart(self, envs: np.ndarray, obs: dict[str, np.ndarray], infos: list[dict]) -> None:
        """Auto-reset finished envs; their final observation goes into their info first."""
        for k in envs:
            infos[k]["terminal_observation"] = {key: value[k].copy() for key, value in obs.items()}
        starts = np.array([self.sim.draw_start(self._rng(k)) for k in envs])
        self.sim.reset(envs, starts)
        fresh = self.sim.observe(envs)
        for key, value in fresh.items():
            obs[key][envs] = value

    def _rng(self, k: int) -> np.random.Generator:
        if self._rngs[k] is None:
            self._rngs[k] = seeding.np_random(None)[0]
        return self._rngs[k]

    def close(self) -> None:
        self._actions = None

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The batch shares one set of attributes: the same value for every index."""
        return [getattr(self, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        method = getattr(self, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        return list(self._get_indices(indices))


def resolve_start(value: Any, timestamps: np.ndarray) -> int:
    """An episode start: a bar index, or a time (the first bar opening at or after it, UTC)."""
    if isinstance(value, int | np.integer):
        return int(value)
    import pandas as pd  # only for a start given as a time: env workers stay numpy-only

    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    bar = int(np.searchsorted(timestamps, stamp.value))
    if bar == len(timestamps):
        last = pd.Timestamp(int(timestamps[-1]), tz="UTC")
        raise ValueError(f"episode start {value!r} is after the store's last bar ({last})")
    return bar
