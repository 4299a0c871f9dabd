"""Time one population group's PPO iteration (rollout on the batch env + batched update) on a
device: what bench/bench_device.py prints and what `--autotune` caches on a GPU machine, so the
planner's device rule follows a measurement rather than a guess.

A group of G members is built once per device (G = the largest size asked), and each size times
the first G of them: the same members, envs and settings on the CPU and on CUDA.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from core.bar_range import BarRange
from core.config import Config
from core.envs.settings import env_settings
from core.features.resolved import with_inferred
from core.features.store import FeatureStore
from core.policies.stacked import StackedPolicies
from training.member.models import new_model, store_layout
from training.population.adam import StackedAdam
from training.population.rollouts import collect_group_rollouts
from training.population.update import group_train


@dataclass(frozen=True)
class GroupTiming:
    device: str
    size: int
    seconds_per_iteration: float  # one rollout of every member + one update
    rollout: int  # env steps per member per iteration

    def members_per_hour(self, timesteps: int) -> float:
        """Members of `timesteps` PPO steps one such process trains per hour."""
        return 3600 * self.size * self.rollout / (self.seconds_per_iteration * timesteps)


def time_groups(
    config: Config,
    store: FeatureStore,
    device: str,
    sizes: Sequence[int],
    shape: tuple[int, int, int],
    torch_threads: int,
    iterations: int = 1,
    report: Callable[[GroupTiming], None] = lambda timing: None,
) -> list[GroupTiming]:
    """Seconds per iteration of a group of each size in `sizes` on `device`; `shape` is
    (n_envs, n_steps, batch_size) per member. One untimed iteration first (allocations, CUDA
    kernels' first launch), then `iterations` timed ones."""
    from core.envs.vec_env import vec_env

    torch.set_num_threads(torch_threads)
    n_envs, n_steps, batch = shape
    config = with_inferred(config, store.meta)
    layout = store_layout(store, config)
    bars = BarRange(config.env.window - 1, len(store.timestamps) - 1)
    settings = env_settings(config)
    models = []
    for seed in range(max(sizes)):
        vec = vec_env(n_envs, "batch", store, settings, bars, seed)
        model = new_model(
            config, vec, layout, n_steps, batch, seed, device, config.ppo.total_timesteps
        )
        model._setup_learn(10**9, None)
        models.append(model)
    timings = []
    for size in sizes:
        group = models[:size]
        stacked = StackedPolicies([model.policy for model in group])
        adam = StackedAdam(stacked.params, [model.policy.optimizer for model in group])
        members = list(range(size))
        torch_rngs = [torch.Generator().manual_seed(seed) for seed in members]
        numpy_rngs = [np.random.RandomState(seed) for seed in members]

        work = (group, stacked, adam, members, torch_rngs, numpy_rngs, device)
        _iteration(*work)
        started = time.perf_counter()
        for _ in range(iterations):
            _iteration(*work)
        seconds = (time.perf_counter() - started) / iterations
        timing = GroupTiming(device, size, seconds, n_envs * n_steps)
        report(timing)
        timings.append(timing)
    for model in models:
        model.env.close()
    return timings


def _iteration(
    group: list,
    stacked: StackedPolicies,
    adam: StackedAdam,
    members: list[int],
    torch_rngs: list[torch.Generator],
    numpy_rngs: list[np.random.RandomState],
    device: str,
) -> None:
    """One rollout of every member, one batched update, finished on the device."""
    collect_group_rollouts(group, stacked, members, torch_rngs)
    group_train(group, stacked, adam, members, numpy_rngs)
    if device != "cpu":
        torch.cuda.synchronize()


def crossing(cpu: Sequence[GroupTiming], cuda: Sequence[GroupTiming]) -> int | None:
    """The smallest measured group size from which CUDA trains more members per hour than the CPU
    at every larger measured size (None: the CPU wins at the largest)."""
    gpu = {t.size: t.seconds_per_iteration for t in cuda}
    found = None
    for timing in sorted(cpu, key=lambda t: t.size, reverse=True):
        if timing.size not in gpu:
            continue
        if gpu[timing.size] >= timing.seconds_per_iteration:
            break
        found = timing.size
    return found
