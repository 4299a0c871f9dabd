"""`--autotune`: time real PPO training on this machine for a few candidate settings and cache
the result for the planner (core.hardware.autotune).

A candidate is (torch threads, n_envs x n_steps, batch size); each trains the run's policy on the
batch env over the feature store: one untimed rollout + update (allocation, warm caches), then
`timed_rollouts` timed ones. The search is coordinate-wise from the rules' choice: threads
first, then the env/rollout split at the best thread count, then the batch size; about seven
candidates, seconds each. bench/bench_autotune.py grid-searches the same space to check it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from core.bar_range import BarRange
from core.config import Config
from core.envs.settings import env_settings
from core.features.resolved import with_inferred
from core.features.store import FeatureStore
from core.hardware.autotune import Autotune, Candidate, Measurement
from core.hardware.planner import MIN_MINIBATCHES, MIN_N_STEPS, Plan
from training.member.models import new_model, store_layout

ENV_COUNTS = (16, 32, 64, 128)
BATCH_DIVISORS = (16, 8, 4)  # minibatches per epoch


def thread_options(cpus: int) -> list[int]:
    """Powers of two below a member's CPUs, and the CPUs themselves."""
    options = {cpus}
    power = 1
    while power < cpus:
        options.add(power)
        power *= 2
    return sorted(options)


def rollout_options(
    target_rollout: int, env_counts: tuple[int, ...] = ENV_COUNTS
) -> list[tuple[int, int]]:
    """(n_envs, n_steps) pairs of about the target rollout, n_steps at least the planner's minimum."""
    return [(n_envs, max(MIN_N_STEPS, target_rollout // n_envs)) for n_envs in env_counts]


def batch_options(rollout: int) -> list[int]:
    return [rollout // d for d in BATCH_DIVISORS if rollout % d == 0 and d >= MIN_MINIBATCHES]


def grid(
    cpus: int, target_rollout: int, env_counts: tuple[int, ...] = ENV_COUNTS
) -> list[Candidate]:
    """Every candidate of the space (the benchmark measures them all)."""
    return [
        Candidate(threads, n_envs, n_steps, batch)
        for threads in thread_options(cpus)
        for n_envs, n_steps in rollout_options(target_rollout, env_counts)
        for batch in batch_options(n_envs * n_steps)
    ]


def measure(
    candidate: Candidate, config: Config, store: FeatureStore, timed_rollouts: int = 2
) -> float:
    """Env-steps per second of PPO training with these settings on this machine."""
    import torch

    from core.envs.vec_env import vec_env

    torch.set_num_threads(candidate.torch_threads)
    config = with_inferred(config, store.meta)  # timeframes: auto as the store resolved them
    bars = BarRange(config.env.window - 1, len(store.timestamps) - 1)
    vec = vec_env(candidate.n_envs, "batch", store, env_settings(config), bars, 0)
    model = new_model(
        config,
        vec,
        store_layout(store, config),
        candidate.n_steps,
        candidate.batch_size,
        seed=0,
        device="cpu",
        timesteps=(timed_rollouts + 1) * candidate.n_envs * candidate.n_steps,
    )
    rollout = candidate.n_envs * candidate.n_steps
    model.learn(rollout)
    started = time.perf_counter()
    model.learn(timed_rollouts * rollout, reset_num_timesteps=False)
    seconds = time.perf_counter() - started
    vec.close()
    return timed_rollouts * rollout / seconds


def probe(
    config: Config,
    store: FeatureStore,
    rule: Plan,
    cpus: int,
    key: str,
    machine: str,
    report: Callable[[Candidate, float], None] = lambda candidate, sps: None,
    env_counts: tuple[int, ...] = ENV_COUNTS,
) -> Autotune:
    """Coordinate search from the rules' plan; every measured candidate is kept."""
    seen: dict[Candidate, float] = {}

    def run(candidate: Candidate) -> float:
        if candidate not in seen:
            seen[candidate] = measure(candidate, config, store)
            report(candidate, seen[candidate])
        return seen[candidate]

    best = Candidate(min(rule.torch_threads, cpus), rule.n_envs, rule.n_steps, rule.batch_size)
    threads = max(thread_options(cpus), key=lambda t: run(replace(best, torch_threads=t)))
    best = replace(best, torch_threads=threads)
    best = max(
        (
            _split(best, pair)
            for pair in rollout_options(config.hardware.target_rollout_steps, env_counts)
        ),
        key=run,
    )
    n_envs, n_steps = best.n_envs, best.n_steps
    for batch in batch_options(n_envs * n_steps):  # the planner picks the fastest of all seen
        run(replace(best, batch_size=batch))
    measurements = tuple(Measurement(c, sps) for c, sps in seen.items())
    return Autotune(key, machine, measurements)


def _split(candidate: Candidate, pair: tuple[int, int]) -> Candidate:
    """Another (n_envs, n_steps), with the batch size that keeps the minibatches per epoch."""
    minibatches = (candidate.n_envs * candidate.n_steps) // candidate.batch_size
    n_envs, n_steps = pair
    return replace(
        candidate, n_envs=n_envs, n_steps=n_steps, batch_size=n_envs * n_steps // minibatches
    )
