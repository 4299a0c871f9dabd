"""Which config keys a group's members may differ in, and how a live member takes a new value.

Inside one group every member runs its own copy of these: the update reads ent_coef, vf_coef,
clip ranges, max_grad_norm, target_kl and the learning rate per member (training.population.
update, StackedAdam's lr per member), each member's rollout buffer computes its advantages with
its own gamma and gae_lambda, and each member steps its own envs, so every reward.* key is its
own. Any other key (n_steps, batch_size, n_epochs, the network, env.*, features.*) changes a
shape or the walks all members share: members that differ there train in different groups.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from training.member.models import schedule

PER_MEMBER_PPO = frozenset(
    {
        "ppo.ent_coef",
        "ppo.learning_rate",
        "ppo.clip_range",
        "ppo.clip_range_vf",
        "ppo.vf_coef",
        "ppo.max_grad_norm",
        "ppo.target_kl",
        "ppo.gamma",
        "ppo.gae_lambda",
    }
)
# RewardRules' field for each reward.* key a live member can change (PBT's explore).
LIVE_REWARD = {
    "reward.reward_scale": "scale",
    "reward.reward_clip": "clip",
    "reward.drawdown_penalty": "drawdown_penalty",
    "reward.turnover_penalty": "turnover_penalty",
    "reward.trade_band_penalty": "band_penalty",
}


def varies_per_member(key: str) -> bool:
    """Whether members of one group may hold different values of this config key."""
    return key in PER_MEMBER_PPO or key.startswith("reward.")


def shape_of(values: dict[str, Any]) -> str:
    """The values that must be equal inside a group (the rest may differ per member)."""
    fixed = {key: value for key, value in values.items() if not varies_per_member(key)}
    return json.dumps(fixed, sort_keys=True, default=str)


def live(key: str) -> bool:
    """Whether a training member can take a new value of this key between two iterations."""
    return key in PER_MEMBER_PPO or key in LIVE_REWARD


def set_live_value(model: Any, key: str, value: Any) -> None:
    """The member's SB3 model (and its envs' reward rules) with this key's new value, as if it
    had been built with it; schedules become the constant value."""
    from stable_baselines3.common.utils import FloatSchedule

    name = key.split(".", 1)[1]
    if key in LIVE_REWARD:
        sim = model.env.venv.sim  # VecMonitor over the batch env: its simulator's rules
        sim.reward_rules = replace(sim.reward_rules, **{LIVE_REWARD[key]: float(value)})
        return
    if key not in PER_MEMBER_PPO:
        raise KeyError(f"{key} cannot change inside a training group")
    if name == "learning_rate":
        model.learning_rate = value
        model.lr_schedule = FloatSchedule(schedule(value))
    elif name in ("clip_range", "clip_range_vf"):
        setattr(model, name, None if value is None else FloatSchedule(schedule(value)))
    elif name in ("gamma", "gae_lambda"):
        setattr(model, name, float(value))
        setattr(model.rollout_buffer, name, float(value))
    else:
        setattr(model, name, value)
