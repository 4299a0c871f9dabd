"""A rollout of G members at once: each member's own envs, one vmapped policy forward per step.

What SB3's `collect_rollouts` does per member, done for the group: sample the member's actions
with its own generator (as SB3's `Normal.rsample` draws them from the global one), clip them to
the action space, step its envs, bootstrap time-limit truncations with its value function, fill
its rollout buffer, compute its GAE. A member's envs, generator and buffer are its own, so what
one member does (or stops doing) never changes another's trajectory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.utils import obs_as_tensor

from core.policies.stacked import StackedPolicies, gaussian_log_prob


def collect_group_rollouts(
    models: Sequence[Any],
    stacked: StackedPolicies,
    members: Sequence[int],
    generators: Sequence[torch.Generator],
) -> dict[int, list[dict[str, Any]]]:
    """Fill the rollout buffers of members `members` (n_steps each); return each one's last
    step infos (the callbacks' `locals["infos"]`)."""
    index = stacked.index(members)
    n_steps = {models[m].n_steps for m in members}
    if len(n_steps) != 1:
        raise ValueError("a group's members must share n_steps")
    infos: dict[int, list[dict[str, Any]]] = {}
    for m in members:
        models[m].rollout_buffer.reset()
        models[m].policy.set_training_mode(False)
    for _ in range(n_steps.pop()):
        obs = _group_observation([models[m]._last_obs for m in members], stacked.device)
        with torch.no_grad():
            mean, values, log_std = stacked.heads(obs, index)
            noise = torch.stack(
                [
                    torch.empty(mean.shape[1:], dtype=mean.dtype).normal_(generator=generators[m])
                    for m in members
                ]
            ).to(mean.device)
            actions = mean + noise * log_std.exp().unsqueeze(1)
            log_probs = gaussian_log_prob(actions, mean, log_std)
        # One copy back for the whole group, not three per member.
        actions, values, log_probs = actions.cpu(), values.cpu(), log_probs.cpu()
        for row, m in enumerate(members):
            infos[m] = _step_member(models[m], actions[row], values[row], log_probs[row])
    for m in members:
        model = models[m]
        with torch.no_grad():
            last = model.policy.predict_values(obs_as_tensor(model._last_obs, model.device))
        model.rollout_buffer.compute_returns_and_advantage(
            last_values=last, dones=model._last_episode_starts
        )
    return infos


def _group_observation(
    observations: Sequence[dict[str, np.ndarray]], device: torch.device
) -> dict[str, torch.Tensor]:
    """The members' observations as [G, n_envs, ...] tensors on `device`: stacked in numpy and
    moved in one copy per key (from pinned memory on a GPU), not one per member."""
    stacked = {key: np.stack([obs[key] for obs in observations]) for key in observations[0]}
    if device.type == "cpu":
        return {key: torch.from_numpy(value) for key, value in stacked.items()}
    return {
        key: torch.from_numpy(value).pin_memory().to(device, non_blocking=True)
        for key, value in stacked.items()
    }


def _step_member(
    model: Any, actions: torch.Tensor, values: torch.Tensor, log_probs: torch.Tensor
) -> list[dict[str, Any]]:
    """One env step of one member, as SB3's collect_rollouts takes it."""
    taken = actions.cpu().numpy()
    space = model.action_space
    clipped = np.clip(taken, space.low, space.high)
    env = model.env
    new_obs, rewards, dones, infos = env.step(clipped)
    model.num_timesteps += env.num_envs
    model._update_info_buffer(infos, dones)
    for k, done in enumerate(dones):
        info = infos[k]
        if (
            done
            and info.get("terminal_observation") is not None
            and info.get("TimeLimit.truncated", False)
        ):
            terminal = model.policy.obs_to_tensor(info["terminal_observation"])[0]
            with torch.no_grad():
                terminal_value = model.policy.predict_values(terminal)[0]
            rewards[k] += model.gamma * terminal_value
    model.rollout_buffer.add(
        model._last_obs, taken, rewards, model._last_episode_starts, values, log_probs
    )
    model._last_obs = new_obs
    model._last_episode_starts = dones
    return infos
