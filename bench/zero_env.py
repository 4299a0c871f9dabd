"""The learner bound: a VecEnv with the batch env's spaces whose steps cost nothing.

Observations are fixed random arrays and rewards zero, so PPO on it spends its time in the
learner only: real training can be at most this fast. Episodes end as the batch env's do (a
random start in a range of `range_bars`, then `episode_bars` steps or the range's end; SB3's
terminal-observation contract kept): a recurrent learner's cost depends on where they break.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv


class ZeroCostVecEnv(VecEnv):
    def __init__(
        self,
        n_envs: int,
        observation_space: spaces.Dict,
        action_space: spaces.Box,
        episode_bars: int = 720,
        range_bars: int = 10_000,
    ) -> None:
        super().__init__(n_envs, observation_space, action_space)
        rng = np.random.default_rng(0)
        self.obs = {
            key: rng.uniform(-1, 1, (n_envs, *space.shape)).astype(space.dtype)
            for key, space in observation_space.spaces.items()
        }
        self.rewards = np.zeros(n_envs, np.float32)
        self.episode_bars, self.range_bars = episode_bars, range_bars
        self.rng = rng
        self.left = self._lengths(n_envs)

    def _lengths(self, count: int) -> np.ndarray:
        starts = self.rng.integers(0, self.range_bars - 1, count)
        return np.minimum(self.episode_bars, self.range_bars - 1 - starts)

    def reset(self) -> dict[str, np.ndarray]:
        self.left = self._lengths(self.num_envs)
        return {key: value.copy() for key, value in self.obs.items()}

    def step_async(self, actions: np.ndarray) -> None:
        self.left -= 1

    def step_wait(self) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[dict]]:
        dones = self.left <= 0
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for k in np.flatnonzero(dones):
            infos[k]["terminal_observation"] = {key: value[k] for key, value in self.obs.items()}
            infos[k]["TimeLimit.truncated"] = True
        self.left[dones] = self._lengths(int(dones.sum()))
        obs = {key: value.copy() for key, value in self.obs.items()}  # as a real env hands out
        return obs, self.rewards.copy(), dones, infos

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [None] * self.num_envs

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        pass

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list:
        return [None] * self.num_envs

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * self.num_envs
