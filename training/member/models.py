"""The SB3 model a run trains: build it, load its checkpoints, let it act in a walk. One place,
so training, resuming, fusing, ensembles and judging all build the network `policy.extractor`
names (PPO, or RecurrentPPO for `lstm`) with the same arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.config import Config
from core.evaluation.rollout import Policy
from core.features.store import FeatureStore
from core.policies.build import algorithm_class, is_recurrent, policy_arguments
from core.policies.layout import ObservationLayout, layout_from_names


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
        "learning_rate": ppo.learning_rate,
        "n_steps": n_steps,
        "batch_size": batch_size,
        "n_epochs": ppo.n_epochs,
        "gamma": ppo.gamma,
        "gae_lambda": ppo.gae_lambda,
        "clip_range": ppo.clip_range,
        "ent_coef": ppo.ent_coef,
        "vf_coef": ppo.vf_coef,
        "max_grad_norm": ppo.max_grad_norm,
        "policy_kwargs": policy_kwargs,
    }
    if not is_recurrent(config):  # RecurrentPPO keeps its own buffer (it stores LSTM states)
        from training.member.rollout_buffer import FewCopiesDictRolloutBuffer

        arguments["rollout_buffer_class"] = FewCopiesDictRolloutBuffer
    return arguments


def new_model(
    config: Config,
    env: Any,
    layout: ObservationLayout,
    n_steps: int,
    batch_size: int,
    seed: int,
    device: str,
) -> Any:
    return algorithm_class(config)(
        env=env,
        seed=seed,
        device=device,
        verbose=0,
        **ppo_arguments(config, layout, n_steps, batch_size),
    )


def load_model(config: Config, path: Path, device: str = "cpu", env: Any = None) -> Any:
    """A checkpoint of this run (its algorithm follows policy.extractor). The rollout buffer's
    class comes from here, not from the file: checkpoints saved before it moved
    (training/rollout_buffer.py) load as well."""
    custom = {}
    if not is_recurrent(config):
        from training.member.rollout_buffer import FewCopiesDictRolloutBuffer

        custom["rollout_buffer_class"] = FewCopiesDictRolloutBuffer
    return algorithm_class(config).load(path, env=env, device=device, custom_objects=custom)


def recurrent(model: Any) -> bool:
    return hasattr(model.policy, "lstm_actor")


def agent_policy(model: Any) -> Policy:
    """The model's deterministic action per bar; a recurrent model carries its LSTM state from
    bar to bar (fresh at the walk's first bar: each call starts a new walk)."""
    if not recurrent(model):

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
