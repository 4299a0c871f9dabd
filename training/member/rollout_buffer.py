"""PPO's rollout buffer with fewer copies of the (large) market observations.

SB3's DictRolloutBuffer copies each observation twice on the way in, allocates the whole buffer
again for every rollout, transposes it into a second buffer before the first epoch
(`swap_and_flatten`) and copies every minibatch twice (numpy fancy indexing, then `th.tensor`).
At the default observation (4,361 floats) these copies were ~25 % of a shared_asset learner's
time (bench/bench_policies.py measures it). Here the arrays are allocated once, filled in place,
read step-major through a free reshape and gathered once per minibatch by torch, on CPU into one
of two minibatch arrays kept for the whole run (a fresh 17 MB array per minibatch cost the kernel
page faults and zeroing: 2.8-7.5 ms per gather instead of 1.6-2.4 ms, bench below). The samples are
the same transitions; only the shuffled order differs from SB3's (env-major) one.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import torch
from stable_baselines3.common.buffers import DictRolloutBuffer
from stable_baselines3.common.type_aliases import DictRolloutBufferSamples


class FewCopiesDictRolloutBuffer(DictRolloutBuffer):
    """A drop-in `rollout_buffer_class` for PPO with dict observations on any device."""

    def reset(self) -> None:
        if getattr(self, "_allocated", False):  # every entry is overwritten before it is read
            self.pos, self.full, self.generator_ready = 0, False, False
            return
        super().reset()
        self._allocated = True
        self._minibatches: dict[tuple[str, int], torch.Tensor] = {}  # see _gather

    def add(  # type: ignore[override]
        self,
        obs: dict[str, np.ndarray],
        action: np.ndarray,
        reward: np.ndarray,
        episode_start: np.ndarray,
        value: torch.Tensor,
        log_prob: torch.Tensor,
    ) -> None:
        for key, stored in self.observations.items():
            stored[self.pos] = obs[key].reshape(stored.shape[1:])
        self.actions[self.pos] = action.reshape(self.n_envs, self.action_dim)
        self.rewards[self.pos] = reward
        self.episode_starts[self.pos] = episode_start
        self.values[self.pos] = value.detach().cpu().numpy().reshape(-1)
        self.log_probs[self.pos] = log_prob.detach().cpu().numpy().reshape(-1)
        self.pos += 1
        self.full = self.pos == self.buffer_size

    def get(  # type: ignore[override]
        self, batch_size: int | None = None
    ) -> Generator[DictRolloutBufferSamples, None, None]:
        assert self.full, "the rollout is not complete"
        total = self.buffer_size * self.n_envs
        batch_size = batch_size or total

        def flat(array: np.ndarray) -> torch.Tensor:  # [step, env, ...] -> [step*env, ...]: a view
            return torch.from_numpy(array.reshape(total, *array.shape[2:]))

        observations = {key: flat(value) for key, value in self.observations.items()}
        actions = flat(self.actions.astype(np.float32, copy=False))
        columns = [
            flat(getattr(self, name)) for name in ("values", "log_probs", "advantages", "returns")
        ]
        order = torch.from_numpy(np.random.permutation(total))  # seeded with SB3's numpy seed
        for number, start in enumerate(range(0, total, batch_size)):
            picked = order[start : start + batch_size]
            old_values, old_log_prob, advantages, returns = (
                column.index_select(0, picked).to(self.device) for column in columns
            )
            yield DictRolloutBufferSamples(
                observations={
                    key: self._gather(key, value, picked, number % 2, batch_size)
                    for key, value in observations.items()
                },
                actions=actions.index_select(0, picked).to(self.device),
                old_values=old_values,
                old_log_prob=old_log_prob,
                advantages=advantages,
                returns=returns,
            )

    def _gather(
        self, key: str, source: torch.Tensor, picked: torch.Tensor, slot: int, batch_size: int
    ) -> torch.Tensor:
        """Rows `picked` of one observation key. On CPU they land in one of two arrays reused
        for every minibatch: PPO's update is done with a minibatch (backward and step) before it
        asks for the next, and the alternate slot keeps the one before intact as well."""
        if self.device.type != "cpu":
            return source.index_select(0, picked).to(self.device)
        shape = (batch_size, *source.shape[1:])
        kept = self._minibatches.get((key, slot))
        if kept is None or kept.shape != shape or kept.dtype != source.dtype:
            kept = self._minibatches[(key, slot)] = torch.empty(shape, dtype=source.dtype)
        destination = kept[: len(picked)]
        return torch.index_select(source, 0, picked, out=destination)
