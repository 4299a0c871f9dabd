"""Deterministic walks of many members at once: each member is one env of the walk, and one
vmapped forward per bar answers for all of them (SB3's `predict(deterministic=True)`: the mean
action, clipped to the action space)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from core.bar_range import BarRange
from core.envs.settings import EnvSettings
from core.evaluation.rollout import JointPolicy, Track, walk
from core.features.store import FeatureStore
from core.policies.stacked import StackedPolicies


def joint_policy(
    stacked: StackedPolicies, members: Sequence[int], low: np.ndarray, high: np.ndarray
) -> JointPolicy:
    """Env k of a walk acts as member members[k] of `stacked`."""
    index = stacked.index(members)
    device = stacked.device

    def decide(
        obs: dict[str, np.ndarray], weights: np.ndarray, t: int, alive: np.ndarray
    ) -> np.ndarray:
        rows = {
            key: torch.as_tensor(value, device=device).unsqueeze(1) for key, value in obs.items()
        }
        with torch.no_grad():
            mean = stacked.mean_actions(rows, index)
        return np.clip(mean[:, 0].cpu().numpy(), low, high)

    return decide


def walk_members(
    store: FeatureStore,
    settings: EnvSettings,
    bars: BarRange,
    stacked: StackedPolicies,
    members: Sequence[int],
) -> list[Track]:
    """One track per member in `members`, walked together over `bars`."""
    space = stacked.policies[members[0]].action_space
    decide = joint_policy(stacked, members, space.low, space.high)
    return walk(store, settings, bars, len(members), decide)
