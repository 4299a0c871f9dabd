"""A PPO actor's deterministic action, bar after bar, without SB3's per-call set-up.

`predict(deterministic=True)` re-walks every module to set eval mode, deep-copies the
observation and builds a `Normal` distribution (validating its arguments) only to read its mean:
on a 4,000-bar walk that was half of a member's evaluation time. For SB3's diagonal-Gaussian
actor-critic the deterministic action is the action net's mean, clipped to the action space;
`actor_mean` computes exactly that with the same modules in the same order, so its actions are
bit-identical to `predict`'s (tests/test_policies.py checks it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.preprocessing import is_image_space

from core.policies.stacked import ActorCriticHeads

ActorMean = Callable[[dict[str, np.ndarray]], np.ndarray]


def fast_actor(policy: Any) -> ActorMean | None:
    """The policy's deterministic action for observation rows [n, ...] -> [n, actions]; None
    for anything but a feed-forward diagonal-Gaussian actor-critic on a Box action space with
    non-image observations (those go through `predict`)."""
    space = policy.action_space
    observations = getattr(policy.observation_space, "spaces", None)
    if (
        not isinstance(getattr(policy, "action_dist", None), DiagGaussianDistribution)
        or not hasattr(policy, "action_net")
        or hasattr(policy, "lstm_actor")
        or getattr(policy, "squash_output", True)
        or not isinstance(space, spaces.Box)
        or observations is None
        or any(is_image_space(item) for item in observations.values())
    ):
        return None
    shapes = {key: item.shape for key, item in observations.items()}
    low, high = space.low, space.high
    heads = ActorCriticHeads(policy)  # the actor path a group's walks take, one policy here

    def actor_mean(obs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            tensors = {
                key: torch.as_tensor(
                    np.asarray(value).reshape((-1, *shapes[key])), device=policy.device
                )
                for key, value in obs.items()
            }
            mean, _ = heads(tensors, False)
        return np.clip(mean.cpu().numpy().reshape((-1, *space.shape)), low, high)

    return actor_mean
