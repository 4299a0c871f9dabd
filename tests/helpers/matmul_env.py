"""A gymnasium env whose step does BLAS and torch work, so that thread pools actually spin up."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np


class MatmulEnv(gym.Env):
    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)

    def __init__(self, size: int = 400) -> None:
        self._matrix = np.random.default_rng(0).random((size, size))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(4, dtype=np.float32), {"pid": os.getpid()}

    def step(self, action):
        import torch

        product = self._matrix @ self._matrix
        tensor = torch.from_numpy(product) @ torch.from_numpy(product)
        obs = np.full(4, float(tensor[0, 0]) % 1.0, dtype=np.float32)
        return obs, 0.0, False, False, {"pid": os.getpid()}
