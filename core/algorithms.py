"""Which learning algorithm a run trains (training.algorithm), and the settings that only make
sense with one of them: refused together, before any job, rather than silently ignored.

PPO (stable-baselines3, or sb3-contrib's RecurrentPPO for a recurrent extractor) learns from
fresh rollouts; SAC (stable-baselines3) and TQC (sb3-contrib) learn off-policy from a replay
buffer. The config refuses the settings an algorithm would ignore; this module sizes and names
what the chosen one trains.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.policies.registry import EXTRACTORS

if TYPE_CHECKING:
    from core.config import Config, OffPolicyConfig

FLOAT_BYTES = 4
# What SB3's DictReplayBuffer keeps per transition besides observations and actions: reward,
# done and timeout, one float32 each (float32 rewards; dones and timeouts are float32 arrays).
REPLAY_SCALARS = 3


def off_policy(config: Config) -> OffPolicyConfig | None:
    """The sac: or tqc: section of an off-policy run; None for PPO."""
    algorithm = config.training.algorithm
    return None if algorithm == "ppo" else getattr(config, algorithm)


def algorithm_label(config: Config) -> str:
    """How messages name the learner: PPO, RecurrentPPO, SAC or TQC."""
    if config.training.algorithm != "ppo":
        return config.training.algorithm.upper()
    return "RecurrentPPO" if EXTRACTORS[config.policy.extractor].recurrent else "PPO"


def stored_transitions(section: OffPolicyConfig, timesteps: int, n_envs: int) -> int:
    """Transitions the replay buffer holds at most: its size, or every step the member takes when
    that is fewer (SB3 allocates the whole buffer; nothing beyond the budget is ever written).
    SB3 keeps buffer_size // n_envs rows of n_envs transitions each."""
    rows = max(1, min(section.buffer_size, timesteps + n_envs - 1) // n_envs)
    return rows * n_envs


def transition_bytes(obs_dim: int, action_dim: int) -> int:
    """One transition of SB3's DictReplayBuffer: the observation and the next one are both kept
    (its optimize_memory_usage is not available for dict observations)."""
    return (2 * obs_dim + action_dim + REPLAY_SCALARS) * FLOAT_BYTES
