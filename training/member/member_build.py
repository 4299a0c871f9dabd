"""One member's parts as both learners build them: its training envs, its SB3 model (a new network
or its last checkpoint), and the callback that validates, checkpoints and stops it. The separate
learner hands them to SB3's learn(); the population learner stacks many and drives them itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import Config
from core.envs.settings import EnvSettings
from core.features.store import FeatureStore
from training.member.callbacks import WalkForwardCallback
from training.member.checkpoints import TrainingState
from training.member.divergence import check_finite
from training.member.models import load_model, new_model, store_layout
from training.member.recovery import job_state, resumed_model
from training.run.files import JobFiles
from training.run.folder import fold_seed
from training.run.job import Hooks, Job

EVALUATIONS_PER_FOLD = 10  # training.eval_every_steps and ensemble.sync_steps: auto
NEVER = 2**62  # an evaluation or checkpoint interval no run reaches


@dataclass
class BuiltMember:
    """What one member trains with: `vec` is its VecMonitor'd training envs."""

    vec: Any
    state: TrainingState
    model: Any
    callback: WalkForwardCallback


def build_member(
    job: Job,
    config: Config,
    settings: EnvSettings,
    store: FeatureStore,
    hooks: Hooks,
    validate: Callable[[Any], dict[str, float]],
) -> BuiltMember:
    """`config` is the member's (its risk profile and, in a sweep, its trial's values applied)."""
    vec = member_vec_env(job, store, settings)
    state = job_state(job.files, hooks.warn)
    model = member_model(job, config, store, vec, state, hooks)
    callback = member_callback(job, config, job.files, state, hooks, validate)
    return BuiltMember(vec, state, model, callback)


def member_vec_env(job: Job, store: FeatureStore, settings: EnvSettings) -> Any:
    """The member's training envs, in SB3's VecMonitor: it puts `episode` (return, length) in
    the info of an env's last step, from which SB3 logs rollout/ep_rew_mean and ep_len_mean
    (the mean of the last ppo.stats_window_size episodes), as it does for Monitor-wrapped envs."""
    from stable_baselines3.common.vec_env import VecMonitor

    from core.envs.vec_env import vec_env

    return VecMonitor(vec_env(job.n_envs, job.vec_env, store, settings, job.fold.train, job.seed))


def member_model(
    job: Job, config: Config, store: FeatureStore, vec: Any, state: TrainingState, hooks: Hooks
) -> Any:
    """The member's SB3 model: its last checkpoint, or a new network (its logger attached)."""
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.utils import set_random_seed

    if state.last_checkpoint:

        def load(path: Path) -> Any:
            return load_model(config, path, store, job.device, vec)

        model = resumed_model(load, job.files, state, hooks.warn)
        if hooks.advance:
            hooks.advance(model.num_timesteps)
    else:
        # fedavg: one initial network per fold (averaging unrelated networks mixes neurons that
        # mean different things); each member's own seed takes over at its first round.
        init = fold_seed(config, job.fold.index) if config.ensemble.mode == "fedavg" else job.seed
        set_random_seed(init)
        layout = store_layout(store, config)
        model = new_model(
            config, vec, layout, job.n_steps, job.batch_size, init, job.device, job.timesteps
        )
    formats = ["csv", "tensorboard"] if config.training.tensorboard else ["csv"]
    model.set_logger(configure(str(job.files.logs), formats))
    return model


def member_callback(
    job: Job,
    config: Config,
    files: JobFiles,
    state: TrainingState,
    hooks: Hooks,
    validate: Callable[[Any], dict[str, float]],
) -> WalkForwardCallback:
    """Validation, checkpoints, alarms and early stopping around the member's PPO updates."""
    rounds = config.ensemble.mode == "fedavg"
    eval_every = every_steps(config.training.eval_every_steps, job.timesteps)
    checkpoint_every = (
        eval_every
        if config.training.checkpoint_every_steps == "auto"
        else config.training.checkpoint_every_steps
    )
    return WalkForwardCallback(
        validate=validate,
        files=files,
        state=state,
        # fedavg: members validate and commit at the end of each round, and none stops early
        # (the others would wait for it); the fused model's best round is what is kept.
        settings=config.training.model_copy(update={"patience": None})
        if rounds
        else config.training,
        eval_every=NEVER if rounds else eval_every,
        checkpoint_every=NEVER if rounds else checkpoint_every,
        reward_clip=config.reward.reward_clip,
        advance=hooks.advance,
        warn=hooks.warn,
        # fedavg: a stop waits for the round's commit (training.member.rounds, group_rounds)
        preemption=None if rounds else hooks.preemption,
        validated=hooks.validated,
        check=lambda model: check_finite(model, job.name, config),
    )


def every_steps(setting: int | str, timesteps: int) -> int:
    return max(1, timesteps // EVALUATIONS_PER_FOLD) if setting == "auto" else int(setting)
