"""Train one ensemble member on one walk-forward fold, then judge it out of sample.

A `Job` holds paths and small numbers only, so `run_job(job)` runs the same in this process, a
submitit worker or a SLURM array task. Everything it produces lives in its own folder: a job
that finds `result.json` is done; one that finds a checkpoint state resumes from it.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from core.atomic import write_json
from core.config import Config, risk_profile_config
from core.envs.settings import settings_of
from core.evaluation.judge import AGENT, annualisation_of, evaluate_window, score, track_metrics
from core.evaluation.metrics import Annualisation
from core.evaluation.rollout import Policy, Track, rollout
from core.features.store import FeatureStore
from training.callbacks import TrainingState, WalkForwardCallback
from training.job import NO_HOOKS, Hooks, Job
from training.run_files import JobFiles
from training.run_folder import run_config
from training.tracks import save_tracks

EVALUATIONS_PER_FOLD = 10  # training.eval_every_steps: auto


def run_job(job: Job, hooks: Hooks = NO_HOOKS) -> dict[str, Any]:
    """Train (or resume, or skip) the job, test its best checkpoint; return result.json's content."""
    files = job.files
    if files.result.exists():
        result = json.loads(files.result.read_text())
        if hooks.advance:
            hooks.advance(result["timesteps"])
        return result
    import torch

    torch.set_num_threads(job.torch_threads)
    config = run_config(job.run_dir)
    if job.risk_profile is not None:
        config = risk_profile_config(config, job.risk_profile)
    store = FeatureStore.attach(job.store_path)
    annual = annualisation_of(store, config)
    model, state = _train(job, config, store, annual, files, hooks)
    if hooks.phase:
        hooks.phase("testing")
    best = _best_model(model, files, state, job)
    tracks = evaluate_window(
        store, settings_of(config), job.fold.test, agent_policy(best), config, job.seed
    )
    result = _result(job, annual, state, tracks)
    save_tracks(files.tracks, tracks)
    write_json(files.result, result)
    return result


def _train(
    job: Job,
    config: Config,
    store: FeatureStore,
    annual: Annualisation,
    files: JobFiles,
    hooks: Hooks,
) -> tuple[Any, TrainingState]:
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.utils import set_random_seed

    from core.envs.vec_env import vec_env

    settings = settings_of(config)
    vec = vec_env(job.n_envs, job.vec_env, store, settings, job.fold.train, job.seed)
    state = TrainingState.load(files.state) if files.state.exists() else TrainingState()
    if state.last_checkpoint:
        model = PPO.load(files.checkpoints / state.last_checkpoint, env=vec, device=job.device)
        if hooks.advance:
            hooks.advance(model.num_timesteps)
    else:
        set_random_seed(job.seed)
        model = PPO(
            env=vec,
            seed=job.seed,
            device=job.device,
            verbose=0,
            **ppo_arguments(config, job.n_steps, job.batch_size),
        )
    formats = ["csv", "tensorboard"] if config.training.tensorboard else ["csv"]
    model.set_logger(configure(str(files.logs), formats))

    def validate(current: Any) -> dict[str, float]:
        track = rollout(store, settings, job.fold.validation, {AGENT: agent_policy(current)})[AGENT]
        values = track_metrics(track, annual)
        picked = {key: values[key] for key in ("sharpe", "total_return", "max_drawdown", "trades")}
        sharpe_per_bar = values["sharpe"] / np.sqrt(annual.periods_per_year)
        return picked | {
            "score": score(track, annual, config.training.validation_metric),
            "sharpe_per_bar": float(sharpe_per_bar),
        }

    eval_every = _every(config.training.eval_every_steps, job.timesteps)
    checkpoint_every = (
        eval_every
        if config.training.checkpoint_every_steps == "auto"
        else config.training.checkpoint_every_steps
    )
    callback = WalkForwardCallback(
        validate=validate,
        files=files,
        state=state,
        settings=config.training,
        eval_every=eval_every,
        checkpoint_every=checkpoint_every,
        reward_clip=config.reward.reward_clip,
        advance=hooks.advance,
        warn=hooks.warn,
        preemption=hooks.preemption,
    )
    if not state.finished:
        if hooks.phase:
            hooks.phase("training")
        remaining = job.timesteps - model.num_timesteps
        if remaining > 0 and not state.stopped_early:
            model.learn(remaining, callback=callback, reset_num_timesteps=not state.last_checkpoint)
        callback.init_callback(model)
        callback.finish()
    vec.close()
    return model, state


def ppo_arguments(config: Config, n_steps: int, batch_size: int) -> dict[str, Any]:
    """Every PPO parameter from the config; rollout and batch sizes from the plan."""
    ppo = config.ppo
    return {
        "policy": ppo.policy,
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
        "policy_kwargs": {"net_arch": list(ppo.net_arch)},
    }


def _every(setting: int | str, timesteps: int) -> int:
    return max(1, timesteps // EVALUATIONS_PER_FOLD) if setting == "auto" else int(setting)


def agent_policy(model: Any) -> Policy:
    def decide(obs: dict[str, np.ndarray], weights: np.ndarray, t: int) -> np.ndarray:
        return model.predict(obs, deterministic=True)[0]

    return decide


def _best_model(model: Any, files: JobFiles, state: TrainingState, job: Job) -> Any:
    """Early stopping restores the best checkpoint; it is also what the test judges."""
    if not state.best_checkpoint:
        return model
    from stable_baselines3 import PPO

    return PPO.load(files.checkpoints / state.best_checkpoint, device=job.device)


def _result(
    job: Job, annual: Annualisation, state: TrainingState, tracks: dict[str, Track]
) -> dict[str, Any]:
    best = max(state.evaluations, key=lambda e: e["score"], default=None)
    return {
        "fold": job.fold.index,
        "member": job.member,
        "seed": job.seed,
        "risk_profile": job.risk_profile,
        "timesteps": state.timesteps,
        "stopped_early": state.stopped_early,
        "best_timesteps": best["timesteps"] if best else None,
        "evaluations": state.evaluations,
        "warnings": state.warnings,
        "preempted_at": state.preempted_at,
        "periods_per_year": annual.periods_per_year,
        "test": {name: track_metrics(track, annual) for name, track in tracks.items()},
    }
