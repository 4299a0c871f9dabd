"""Train one ensemble member on one walk-forward fold, then judge it out of sample.

A `Job` holds paths and small numbers only, so `run_job(job)` runs the same in this process, a
submitit worker or a SLURM array task. Everything it produces lives in its own folder: a job
that finds `result.json` is done; one that finds a checkpoint state resumes from it.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from core.config import Config
from core.envs.settings import env_settings
from core.evaluation.judge import annualisation_of, evaluate_window, track_metrics
from core.evaluation.metrics import Annualisation
from core.evaluation.rollout import Track
from core.features.store import FeatureStore
from training.member.callbacks import WalkForwardCallback
from training.member.checkpoints import TrainingState, load_tested
from training.member.divergence import said_when_nonfinite
from training.member.member_build import build_member, every_steps
from training.member.models import agent_policy, member_configs
from training.member.user_callbacks import learn_callback
from training.member.validation import validation_metrics
from training.run.files import JobFiles, RunFiles
from training.run.folder import run_config
from training.run.job import NO_HOOKS, Hooks, Job
from training.run.records import JobResult, read_job_result, write_job_result
from training.run.tracks import save_tracks

ROUND_POLL_S = 0.2  # debug mode: a member waiting for its fold's others in this process
T = TypeVar("T")

if TYPE_CHECKING:
    from training.fedavg.meeting import Meeting


def run_job(job: Job, hooks: Hooks = NO_HOOKS, meeting: Meeting | None = None) -> dict[str, Any]:
    """Train (or resume, or skip) the job, test its best checkpoint; return result.json's content.
    `meeting`: where a fedavg member meets its fold (default: the members of this process)."""
    return run_to_end(job_steps(job, hooks, meeting))


def train_only(job: Job, hooks: Hooks = NO_HOOKS) -> TrainingState:
    """Train with validation checkpoints and stop there: a sweep's trial never reads the test
    window (its members are scored on validation only)."""
    import torch

    torch.set_num_threads(job.torch_threads)
    config = run_config(job.run_dir)
    store = FeatureStore.attach(job.store_path)
    annual = annualisation_of(store, config)
    _, state = run_to_end(_train(job, config, config, store, annual, job.files, hooks))
    return state


def run_to_end(steps: Generator[None, None, T]) -> T:
    """Drive a job's steps in this process: between yields it waits for a fedavg round."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
        time.sleep(ROUND_POLL_S)


def job_steps(
    job: Job, hooks: Hooks = NO_HOOKS, meeting: Meeting | None = None
) -> Generator[None, None, dict[str, Any]]:
    """`run_job` as a generator that yields whenever it waits for the fold's other members (never
    in ensemble.mode independent), so one process can train a whole fold in turns (debug mode)."""
    files = job.files
    if files.result.exists():
        result = read_job_result(files)
        if hooks.advance:
            hooks.advance(result["timesteps"])
        return result
    import torch

    torch.set_num_threads(job.torch_threads)
    store = FeatureStore.attach(job.store_path)
    config, run = member_configs(job, store)
    annual = annualisation_of(store, config)
    model, state = yield from _train(job, config, run, store, annual, files, hooks, meeting)
    if hooks.phase:
        hooks.phase("testing")
    best = _best_model(model, state, job) if config.training.select == "best" else model
    tracks = evaluate_window(
        store, env_settings(config), job.fold.test_walk, agent_policy(best), config, job.seed
    )
    result = job_result(job, annual, state, tracks)
    save_tracks(files.tracks, tracks)
    write_job_result(files, result)
    return result


def _train(
    job: Job,
    config: Config,
    run: Config,
    store: FeatureStore,
    annual: Annualisation,
    files: JobFiles,
    hooks: Hooks,
    meeting: Meeting | None = None,
) -> Generator[None, None, tuple[Any, TrainingState]]:
    """`config` is the member's (its risk profile applied), `run` the run's."""
    settings = env_settings(config)

    def validate(current: Any) -> dict[str, float]:
        return validation_metrics(current, store, settings, job.fold.validation, annual, config)

    built = build_member(job, config, settings, store, hooks, validate)
    vec, state, model, callback = built.vec, built.state, built.model, built.callback
    rounds = config.ensemble.mode == "fedavg"
    if not state.finished:
        if hooks.phase:
            hooks.phase("training")
        learning = learn_callback(callback, config)  # the user's training.callbacks after ours
        if rounds:
            yield from _train_rounds(
                model, job, run, store, annual, (callback, learning), state, hooks, meeting
            )
        else:
            remaining = job.timesteps - model.num_timesteps
            if remaining > 0 and not state.stopped_early:
                with said_when_nonfinite(model, job.name, config):
                    model.learn(
                        remaining, callback=learning, reset_num_timesteps=not state.last_checkpoint
                    )
        callback.init_callback(model)
        callback.finish()
    vec.close()
    return model, state


def _train_rounds(
    model: Any,
    job: Job,
    run: Config,
    store: FeatureStore,
    annual: Annualisation,
    callbacks: tuple[WalkForwardCallback, Any],
    state: TrainingState,
    hooks: Hooks,
    meeting: Meeting | None,
) -> Generator[None, None, None]:
    """`callbacks`: the member's own, and what learn() runs (it with the user's)."""
    from training.fedavg.meeting import in_process_meeting
    from training.member.rounds import round_ends, train_rounds

    callback, learning = callbacks
    ensemble = run.ensemble
    if meeting is None:
        meeting = in_process_meeting(
            RunFiles(Path(job.run_dir)).fedavg(job.fold.index),
            list(range(ensemble.size)),
            ensemble.sync_weighting,
            ensemble.sync_temperature,
        )
    sync = every_steps(ensemble.sync_steps, job.timesteps)
    ends = round_ends(job.timesteps, sync, job.n_envs * job.n_steps)
    if state.rounds_done == 0 and model.num_timesteps:  # recovered without its state.json:
        state.rounds_done = sum(end <= model.num_timesteps for end in ends)  # a commit a round
    run_settings = env_settings(run)  # the fused model is judged with the run's, not a profile's

    def validate_fused(current: Any) -> dict[str, float]:
        return validation_metrics(current, store, run_settings, job.fold.validation, annual, run)

    callback.init_callback(model)
    reset = ensemble.sync_optimizer == "reset"
    yield from train_rounds(
        model, job, callback, meeting, ends, state, hooks, validate_fused, reset, learning
    )


def _best_model(model: Any, state: TrainingState, job: Job) -> Any:
    """Early stopping restores the best checkpoint; it is also what the test judges (without
    one, the model in memory is the last)."""
    return load_tested(job, "best", job.device, state) if state.best_checkpoint else model


def job_result(
    job: Job, annual: Annualisation, state: TrainingState, tracks: dict[str, Track]
) -> JobResult:
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
        "rounds": {
            "done": state.rounds_done,
            "wait_s": float(sum(state.round_wait_s)),
            "wall_s": float(sum(state.round_wall_s)),
        }
        if state.rounds_done
        else None,
        "periods_per_year": annual.periods_per_year,
        "test": {name: track_metrics(track, annual) for name, track in tracks.items()},
    }
