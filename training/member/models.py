"""The SB3 model a run trains: build it, load its checkpoints, let it act in a walk. One place,
so training, resuming, fusing, ensembles and judging all build the network `policy.extractor`
names (PPO, or RecurrentPPO for `lstm`) with the same arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.algorithms import off_policy, stored_transitions
from core.config import Config, risk_profile_config, schedule_start
from core.evaluation.rollout import Policy
from core.features.resolved import with_inferred
from core.features.store import FeatureStore
from core.policies.build import algorithm_class, is_recurrent, policy_arguments
from core.policies.deterministic import fast_actor
from core.policies.layout import ObservationLayout, layout_from_names
from training.member.checkpoint_data import (
    NOT_SAVED,
    checkpoint_data,
    serialized_entries,
    unreadable,
    untrusted,
)
from training.run.folder import run_config
from training.run.job import Job


def store_layout(store: FeatureStore, config: Config) -> ObservationLayout:
    """Where assets, bars and timeframes sit in this store's observations."""
    return layout_from_names(len(store.assets), config.env.window, store.feature_names)


def ppo_arguments(
    config: Config, layout: ObservationLayout, n_steps: int, batch_size: int
) -> dict[str, Any]:
    """Every PPO parameter from the config; rollout and batch sizes from the plan."""
    ppo = config.ppo
    policy, policy_kwargs = policy_arguments(config, layout)
    arguments: dict[str, Any] = {
        "policy": policy,
        "learning_rate": schedule(ppo.learning_rate),
        "n_steps": n_steps,
        "batch_size": batch_size,
        "n_epochs": ppo.n_epochs,
        "gamma": ppo.gamma,
        "gae_lambda": ppo.gae_lambda,
        "clip_range": schedule(ppo.clip_range),
        "clip_range_vf": schedule(ppo.clip_range_vf),
        "normalize_advantage": ppo.normalize_advantage,
        "ent_coef": ppo.ent_coef,
        "vf_coef": ppo.vf_coef,
        "max_grad_norm": ppo.max_grad_norm,
        "use_sde": ppo.use_sde,
        "sde_sample_freq": ppo.sde_sample_freq,
        "target_kl": ppo.target_kl,
        "stats_window_size": ppo.stats_window_size,
        "policy_kwargs": policy_kwargs,
    }
    if not is_recurrent(config):  # RecurrentPPO keeps its own buffer (it stores LSTM states)
        arguments["rollout_buffer_class"] = rollout_buffer_class(config)
    return arguments


def schedule(value: float | str | None) -> Any:
    """A config value as SB3 takes it: a number stays a number; rl-zoo's `lin_X` becomes SB3's
    own LinearSchedule from X (progress_remaining 1) to 0 (progress_remaining 0), which is what
    rl-zoo's linear_schedule computes (X * progress_remaining) and which pickles as a class SB3
    itself defines."""
    if not isinstance(value, str):
        return value
    from stable_baselines3.common.utils import LinearSchedule

    return LinearSchedule(schedule_start(value), 0.0, 1.0)


def rollout_buffer_class(config: Config) -> Any:
    if is_recurrent(config):
        return None
    from training.member.rollout_buffer import FewCopiesDictRolloutBuffer

    return FewCopiesDictRolloutBuffer


def off_policy_arguments(
    config: Config, layout: ObservationLayout, n_envs: int, timesteps: int
) -> dict[str, Any]:
    """Every SAC/TQC parameter from its config section; the buffer no larger than the member
    ever fills (core.algorithms.stored_transitions: what the plan counted in memory)."""
    section = off_policy(config)
    assert section is not None, "an off-policy run's section"
    policy, policy_kwargs = policy_arguments(config, layout)
    arguments: dict[str, Any] = {
        "policy": policy,
        "learning_rate": schedule(section.learning_rate),
        "buffer_size": stored_transitions(section, timesteps, n_envs),
        "learning_starts": section.learning_starts,
        "batch_size": section.batch_size,
        "tau": section.tau,
        "gamma": section.gamma,
        "train_freq": section.train_freq,
        # auto: SB3's -1, as many updates as env steps were just collected (replay ratio 1)
        "gradient_steps": -1 if section.gradient_steps == "auto" else section.gradient_steps,
        "ent_coef": section.ent_coef,
        "target_entropy": section.target_entropy,
        "use_sde": section.use_sde,
        "sde_sample_freq": section.sde_sample_freq,
        "stats_window_size": config.ppo.stats_window_size,
        "policy_kwargs": policy_kwargs,
    }
    if config.training.algorithm == "tqc":
        arguments["top_quantiles_to_drop_per_net"] = config.tqc.top_quantiles_to_drop_per_net
    return arguments


def new_model(
    config: Config,
    env: Any,
    layout: ObservationLayout,
    n_steps: int,
    batch_size: int,
    seed: int,
    device: str,
    timesteps: int,
) -> Any:
    """`n_steps` and `batch_size` are the plan's PPO rollout; `timesteps` the member's budget
    (an off-policy buffer is sized to it)."""
    if off_policy(config) is None:
        arguments = ppo_arguments(config, layout, n_steps, batch_size)
    else:
        arguments = off_policy_arguments(config, layout, env.num_envs, timesteps)
    return algorithm_class(config)(env=env, seed=seed, device=device, verbose=0, **arguments)


def load_model(
    config: Config, path: Path, store: FeatureStore, device: str = "cpu", env: Any = None
) -> Any:
    """A checkpoint of this run (its algorithm follows policy.extractor), read as data: every
    pickled entry of the file is replaced by the run's own value (spaces from the store or env,
    network and schedules from the config), and a file with any other is refused unread."""
    data = checkpoint_data(path)
    trusted = trusted_entries(config, store, env)
    foreign = [name for name in serialized_entries(data) if name not in trusted]
    if foreign:
        raise untrusted(path, foreign)
    absent = [
        name for name in ("policy_class", "observation_space", "action_space") if name not in data
    ]
    if absent:
        raise unreadable(path, f"its data has no {', '.join(absent)}")
    custom = {name: value for name, value in trusted.items() if name in data}
    left_out = {name: trusted[name] for name in NOT_SAVED if name not in data and name in trusted}
    try:  # the file was checked whole; what fails now is a network unlike the run's
        return algorithm_class(config).load(
            path, env=env, device=device, custom_objects=custom, **left_out
        )
    except (RuntimeError, ValueError, KeyError) as exc:
        raise unreadable(path, f"it does not fit this run's network ({exc})") from None


def trusted_entries(config: Config, store: FeatureStore, env: Any = None) -> dict[str, Any]:
    """What SB3 would unpickle from a checkpoint, as this run builds it. Whatever SB3 rebuilds
    on load or at the next learn() (env state, episode statistics, schedules) is None or the
    config's value."""
    from stable_baselines3.common.utils import FloatSchedule

    from core.envs.batch_env import action_space, observation_space

    policy, policy_kwargs = policy_arguments(config, store_layout(store, config))
    if isinstance(policy, str):
        policy = algorithm_class(config).policy_aliases[policy]
    if env is not None:
        spaces = env.observation_space, env.action_space
    else:
        spaces = observation_space(store, config.env.window), action_space(store)
    section = off_policy(config)
    learning_rate = (section or config.ppo).learning_rate
    common = {
        "policy_class": policy,
        "policy_kwargs": policy_kwargs,
        "observation_space": spaces[0],
        "action_space": spaces[1],
        "learning_rate": schedule(learning_rate),  # pickled when a schedule
        "lr_schedule": FloatSchedule(schedule(learning_rate)),
        "action_noise": None,
        "_last_obs": None,
        "_last_episode_starts": None,
        "_last_original_obs": None,
        "ep_info_buffer": None,
        "ep_success_buffer": None,
    }
    if section is None:
        return common | {
            # PPO makes these schedules when it sets up
            "clip_range": schedule(config.ppo.clip_range),
            "clip_range_vf": schedule(config.ppo.clip_range_vf),
            "rollout_buffer_class": rollout_buffer_class(config),
            "rollout_buffer_kwargs": {},
        }
    from stable_baselines3.common.buffers import DictReplayBuffer
    from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit

    target = section.target_entropy
    actions = int(np.prod(spaces[1].shape))
    return common | {
        "replay_buffer_class": DictReplayBuffer,  # what SB3 picks for dict observations
        "replay_buffer_kwargs": {},
        "train_freq": TrainFreq(section.train_freq, TrainFrequencyUnit.STEP),
        "target_entropy": _target_entropy(config, target, actions),
    }


def _target_entropy(config: Config, target: float | str, actions: int) -> Any:
    """The value SAC / TQC set up from the config's: from auto, SAC keeps a float and TQC a
    numpy float32 (which its checkpoints pickle)."""
    if target != "auto":
        return float(target)
    value = -np.prod((actions,)).astype(np.float32)
    return value if config.training.algorithm == "tqc" else float(value)


def recurrent(model: Any) -> bool:
    return hasattr(model.policy, "lstm_actor")


def stackable(model: Any) -> bool:
    """A feed-forward PPO actor-critic, which core.policies.stacked runs G at a time."""
    return not recurrent(model) and hasattr(model.policy, "action_net")


def agent_policy(model: Any) -> Policy:
    """The model's deterministic action per bar; a recurrent model carries its LSTM state from
    bar to bar (fresh at the walk's first bar: each call starts a new walk)."""
    if not recurrent(model):
        actor = fast_actor(model.policy)
        if actor is not None:
            model.policy.set_training_mode(False)  # what predict sets on every call
            return lambda obs, weights, t: actor(obs)

        def decide(obs: dict[str, np.ndarray], weights: np.ndarray, t: int) -> np.ndarray:
            return model.predict(obs, deterministic=True)[0]

        return decide

    memory: dict[str, Any] = {"state": None, "start": np.ones(1, dtype=bool)}

    def decide_recurrent(obs: dict[str, np.ndarray], weights: np.ndarray, t: int) -> np.ndarray:
        action, memory["state"] = model.predict(
            obs, state=memory["state"], episode_start=memory["start"], deterministic=True
        )
        memory["start"] = np.zeros(1, dtype=bool)
        return action

    return decide_recurrent


def member_configs(job: Job, store: FeatureStore) -> tuple[Config, Config]:
    """(the member's config, the run's): a risk profile may set a window as a span, resolved
    for the store after the profile."""
    run = with_inferred(run_config(job.run_dir), store.meta)
    if job.risk_profile is None:
        return run, run
    return with_inferred(risk_profile_config(run, job.risk_profile), store.meta), run
