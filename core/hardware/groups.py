"""Which learner trains an ensemble, and how a fold's members are cut into groups.

`population` trains a group of one fold's members in one process (one batched forward per
rollout step, one batched PPO update, one validation walk for all); `separate` is one SB3 process
per member. A group pays the interpreter and torch start-up once instead of per member, so it
wins most where a member's own work is small; the rules below keep `separate` where a group has
nothing to batch or does not exist yet (measured in bench/bench_population.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.config import Config, LearnerName
from core.policies.registry import EXTRACTORS

# flat's first layer at a large observation is one large matmul that batching members does not
# speed up: measured on 2 CPUs (bench_population.py, 8 members x 3 folds), population / separate
# 1.69x at obs_dim 145 but 0.97x at 4,361; above this size (between the two) flat stays separate.
FLAT_GROUP_MAX_OBS = 1024


@dataclass(frozen=True)
class LearnerChoice:
    learner: LearnerName
    learner_why: str
    group_size: int  # the most members one group holds (1 for separate)
    group_why: str
    group_chosen: str  # auto | config


def separate_because(config: Config, ensemble: int, obs_dim: int) -> str | None:
    """Why this run cannot train in groups, or None when it can."""
    if config.training.algorithm != "ppo":
        name = config.training.algorithm
        return (
            f"training.algorithm={name}: the population learner batches PPO's update only, so "
            f"{name.upper()} members train separate (one SB3 learn() each)"
        )
    if config.ensemble.learner == "separate":
        return "ensemble.learner=separate in the config"
    if ensemble < 2:
        return "one member per fold: nothing to batch"
    if config.ensemble.mode == "fedavg" and config.ensemble.sync_optimizer == "reset":
        return "ensemble.sync_optimizer=reset: a group's stacked Adam keeps its moments"
    if EXTRACTORS[config.policy.extractor].recurrent:
        return f"policy.extractor={config.policy.extractor} trains with RecurrentPPO (its update is not batched yet)"
    automatic = config.ensemble.learner == "auto"
    if automatic and config.training.callbacks:
        return "training.callbacks: a user's SB3 callbacks run in SB3's own learn loop"
    if automatic and config.ppo.use_sde:
        return "ppo.use_sde: state-dependent exploration is not in the batched update"
    if automatic and config.policy.extractor == "flat" and obs_dim > FLAT_GROUP_MAX_OBS:
        return (
            f"policy.extractor=flat at obs_dim {obs_dim:,} > {FLAT_GROUP_MAX_OBS:,}: its first layer is "
            "one large matmul already, and a group measured no faster (0.97x at 4,361 on 2 CPUs, "
            "bench_population.py); ensemble.learner=population groups it anyway"
        )
    if config.hardware.vec_env != "batch":
        return f"hardware.vec_env={config.hardware.vec_env}: a group steps its members' envs in its own process"
    return None


def choose_learner(
    config: Config,
    ensemble: int,
    obs_dim: int,
    slots: int,
    member_memory_gb: float,
    budget_gb: float,
) -> LearnerChoice:
    """The learner and the largest group: every slot holds one group, whose members share one
    process's fixed memory (hardware.learner_memory_gb) and add their rollout buffers and models."""
    why_not = separate_because(config, ensemble, obs_dim)
    if why_not is not None:
        return LearnerChoice("separate", why_not, 1, "ensemble.learner separate", "auto")
    learner_why = (
        f"ensemble.learner={config.ensemble.learner}: a fold's members train in groups, batched"
    )
    configured = config.hardware.group_size
    if configured != "auto":
        size = min(configured, ensemble)
        return LearnerChoice("population", learner_why, size, "hardware.group_size", "config")
    fixed = config.hardware.learner_memory_gb
    per_member = max(member_memory_gb - fixed, 1e-6)
    per_slot = budget_gb / max(slots, 1)
    by_memory = max(1, math.floor((per_slot - fixed) / per_member))
    size = min(ensemble, by_memory)
    why = (
        f"the smallest of: ensemble size {ensemble}; memory: ({per_slot:.1f} GB per slot - "
        f"{fixed:g} GB for the process) / {per_member:.2f} GB per member = {by_memory}; "
        "a run's folds are then cut into groups that fill the slots evenly"
    )
    return LearnerChoice("population", learner_why, size, why, "auto")


def groups_per_fold(members: int, folds: int, slots: int, largest: int) -> int:
    """How many groups a fold's members form: the count that finishes soonest when a group's
    time grows with its members and `slots` groups run at once (waves x members per group);
    on a tie, fewer groups (each pays start-up once)."""
    fewest = math.ceil(members / max(largest, 1))

    def makespan(count: int) -> int:
        return math.ceil(folds * count / max(slots, 1)) * math.ceil(members / count)

    return min(range(fewest, members + 1), key=lambda count: (makespan(count), count))


def group_sizes(members: int, groups: int) -> list[int]:
    """`members` cut into `groups` near-equal runs (the larger first)."""
    base, extra = divmod(members, groups)
    return [base + (1 if k < extra else 0) for k in range(groups)]
