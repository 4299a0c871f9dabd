"""The plan of an off-policy member (training.algorithm sac or tqc): SB3 collects `train_freq`
steps per env, then makes `gradient_steps` updates of `batch_size` transitions drawn from a
replay buffer that lives in the member's RAM. There is no PPO rollout and no minibatch split;
what binds is the buffer's memory, so the plan counts it and refuses one that does not fit.
"""

from __future__ import annotations

from core.algorithms import stored_transitions, transition_bytes
from core.config import Config, OffPolicyConfig
from core.units import GIB


def replay_gb(obs_dim: int, action_dim: int, transitions: int) -> float:
    return transitions * transition_bytes(obs_dim, action_dim) / GIB


def collect_steps(config: Config, section: OffPolicyConfig) -> tuple[int, str]:
    name = config.training.algorithm
    return section.train_freq, (
        f"{name}.train_freq: steps per env collected between updates (an off-policy learner "
        "has no PPO rollout)"
    )


def update_batch(config: Config, section: OffPolicyConfig) -> tuple[int, str]:
    name = config.training.algorithm
    return section.batch_size, f"{name}.batch_size: transitions per gradient step, from the replay"


def gradient_steps(config: Config, section: OffPolicyConfig, n_envs: int) -> tuple[int, str, bool]:
    """(updates after each collection, why, whether auto)."""
    name = config.training.algorithm
    collected = n_envs * section.train_freq
    if section.gradient_steps != "auto":
        ratio = section.gradient_steps / collected
        return (
            section.gradient_steps,
            f"{name}.gradient_steps: {ratio:.2g} updates per env step collected "
            f"(n_envs {n_envs} x train_freq {section.train_freq})",
            False,
        )
    return (
        collected,
        f"one update per env step collected (n_envs {n_envs} x {name}.train_freq "
        f"{section.train_freq}): replay ratio 1, SB3's gradient_steps=-1",
        True,
    )


def replay_buffer(
    config: Config, section: OffPolicyConfig, n_envs: int, obs_dim: int, action_dim: int
) -> tuple[int, str]:
    """(transitions the member's buffer holds, why with its size in memory)."""
    name = config.training.algorithm
    budget = config.ppo.total_timesteps
    transitions = stored_transitions(section, budget, n_envs)
    per = transition_bytes(obs_dim, action_dim)
    capped = (
        f"capped at the member's ppo.total_timesteps ({budget:,}), in rows of n_envs {n_envs}"
        if transitions < section.buffer_size
        else f"in rows of n_envs {n_envs}"
    )
    return transitions, (
        f"{name}.buffer_size={section.buffer_size:,} {capped}: {transitions:,} transitions x "
        f"{per:,} bytes (observation and next observation of {obs_dim:,} floats, action, reward, "
        f"done) = {replay_gb(obs_dim, action_dim, transitions):.2f} GB per member"
    )
