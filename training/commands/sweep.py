"""--tune: a sweep's run folder, N workers on one Optuna study through the launcher, the sweep's
results in RUN/tuning/, and with --then-train the best params trained and tested."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.commands.pipeline import (
    RUNS,
    Prepared,
    command_argv,
    jobs_line,
    train_and_report,
)

AUTO_TRIALS_PER_GROUP = 8

if TYPE_CHECKING:
    import argparse

    from core.config import Config
    from training.run.files import RunFiles


def tune(prepared: Prepared, args: argparse.Namespace) -> int:
    """A run folder whose jobs are one trial's members (folds x seeds), the workers, the results."""
    from core.hardware.planner import plan
    from training.commands.planning import job_feature_names
    from training.run.folder import create_run
    from training.run.lock import RunLock

    seeds = prepared.config.tuning.seeds_per_trial
    config = prepared.config.model_copy(
        update={
            "ensemble": prepared.config.ensemble.model_copy(
                update={"size": seeds, "mode": "independent"}
            )
        }
    )
    store = prepared.store
    shape = {"n_assets": len(store.assets), "feature_names": job_feature_names(config, store)}
    # One worker per SLURM task (planned for its allocation); locally the workers share the machine.
    workers = 1 if prepared.profile else args.workers
    # The plan is for the members a worker trains at once: a batch of trials x seeds (one group
    # with the population learner), so the learner and the group size follow from it.
    asked = _trials_per_group(config.tuning, args.workers)
    sized = config.model_copy(
        update={"ensemble": config.ensemble.model_copy(update={"size": seeds * asked})}
    )
    resource_plan = plan(prepared.hardware, sized, workers, **shape, autotune=prepared.measured)
    run_dir, jobs = create_run(
        Path(args.output or RUNS), args.name or "tune", config, resource_plan,
        prepared.hardware.to_json(), store, prepared.folds, command_argv(),
    )  # fmt: skip
    with RunLock(run_dir):  # one command at a time writes a run folder
        outcome, study, files = _run_workers(
            prepared, args, config, resource_plan, run_dir, len(jobs)
        )
        if outcome is None:
            return 130
        summary = _print_results(run_dir, study, store, config, files)
    if outcome.failures:
        print(
            f"error: {len(outcome.failures)} worker(s) failed: {outcome.failures}", file=sys.stderr
        )
        return 1
    if not summary["best"]:
        return 1
    if args.then_train:
        return train_best(prepared, args, summary, files)
    return 0


def _run_workers(
    prepared: Prepared,
    args: argparse.Namespace,
    config: Config,
    resource_plan: Any,
    run_dir: Path,
    n_jobs: int,
) -> tuple[Any, Any, RunFiles]:
    """Open the study once, then launch the workers that join it; (None, ...) if interrupted."""
    from core.config import load_config
    from training.launcher.board import JobBoard
    from training.launcher.launch import launch
    from training.launcher.settings import launch_settings
    from training.learners.registry import LEARNERS
    from training.run.files import RunFiles
    from training.tuning.pbt import check_pbt
    from training.tuning.space import check_space
    from training.tuning.study import open_storage, open_study
    from training.tuning.worker import TuneWorker

    files = RunFiles(run_dir)
    check_space([files.config], [], load_config([files.config]).tuning.space)
    study_name = args.study_name or run_dir.name
    tuning, workers = config.tuning, args.workers
    storage = open_storage(
        args.storage, files.tuning_journal, workers, tuning.heartbeat_s, tuning.grace_s
    )
    study = open_study(study_name, storage, tuning, 0)  # created once, joined by workers
    steps = tuning.n_trials * n_jobs * config.ppo.total_timesteps
    secret = _storage_file(files, args.storage)
    learner = LEARNERS[resource_plan.learner]
    learner.refuse(config)
    at_once = learner.trials_at_once(resource_plan.group_size, tuning.seeds_per_trial)
    check_pbt(tuning, at_once, learner.name)
    team = [
        TuneWorker(str(run_dir), i, workers, tuning.n_trials, study_name, secret,
                   config.launcher.dead_after_s, resource_plan.torch_threads,
                   resource_plan.blas_threads, -(-steps // workers), learner.name, at_once)
        for i in range(workers)
    ]  # fmt: skip
    print(
        f"Run folder {run_dir}: study {study_name}, {tuning.n_trials} trial(s) of "
        f"{len(prepared.folds)} fold(s) x {tuning.seeds_per_trial} seed(s), {workers} worker(s), "
        f"up to {resource_plan.members_concurrent} at once; {_learner_line(learner.name, at_once, tuning)}",
        flush=True,
    )
    settings = replace(
        launch_settings(config, resource_plan, run_dir, prepared.profile), rounds=False
    )
    live = not args.no_progress and sys.stderr.isatty()
    try:
        with JobBoard(f"sweep {study_name}", live=live) as board:
            return launch(team, settings, board), study, files
    except KeyboardInterrupt:
        print(f"interrupted: the sweep's workers were cancelled ({run_dir})", file=sys.stderr)
        return None, study, files
    finally:  # the workers are done or cancelled: the password leaves the disk
        files.storage_url.unlink(missing_ok=True)


def _trials_per_group(tuning: Any, workers: int) -> int:
    """tuning.trials_per_group; auto: a worker's share of the budget, at most 8 (a batch asked
    at once is proposed from fewer results: more than this would make TPE a random search)."""
    if tuning.trials_per_group != "auto":
        return int(tuning.trials_per_group)
    return max(1, min(AUTO_TRIALS_PER_GROUP, -(-tuning.n_trials // max(workers, 1))))


def _learner_line(learner: str, at_once: int, tuning: Any) -> str:
    """How the trials train, said once; and which searched keys split a batch into groups."""
    from training.population.member_values import varies_per_member

    if learner != "population":
        return "one trial at a time, one SB3 learner per member (ensemble.learner separate)"
    line = (
        f"{at_once} trial(s) at a time as one population group of up to "
        f"{at_once * tuning.seeds_per_trial} members"
    )
    splitting = [key for key in tuning.space if not varies_per_member(key)]
    if splitting:
        line += (
            f"; {', '.join(splitting)} change(s) a group's shape: trials that differ there "
            "train in separate groups"
        )
    if tuning.schedule == "pbt":
        every = tuning.pbt.interval_steps
        line += "; PBT at every validation" if every == "auto" else f"; PBT every {every:,} steps"
    return line


def _storage_file(files: RunFiles, url: str | None) -> str | None:
    """--storage URL in a 0600 file of the run folder (which SLURM tasks share): submitit
    pickles the workers into the launcher folder, so they carry only the file's path."""
    from core.atomic import write_private_text

    if url is None:
        return None
    write_private_text(files.storage_url, url)
    return str(files.storage_url)


def _print_results(
    run_dir: Path, study: Any, store: Any, config: Config, files: RunFiles
) -> dict[str, Any]:
    from core.evaluation.judge import annualisation_of
    from training.tuning.results import write_results

    summary = write_results(run_dir, study, annualisation_of(store, config).periods_per_year)
    best = summary["best"]
    print(
        f"{summary['trials']} trial(s): {summary['complete']} complete, {summary['pruned']} "
        f"pruned, {len(summary['failed'])} failed",
        flush=True,
    )
    if best:
        values = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in best["params"].items())  # fmt: skip
        print(
            f"Best trial {best['trial']}: validation Sharpe {best['value']:.3f} with {values}; "
            f"Deflated Sharpe Ratio {best['dsr']:.3f} after {summary['trials']} trial(s)"
            + (f" and {summary['pbt_copies']} PBT copies" if summary["pbt_copies"] else "")
        )
        print(f"Best params: {files.best_params} (use with --config)")
    elif summary["collapsed"]:
        print(
            f"error: no winner: all {summary['complete']} complete trial(s) collapsed (no member "
            "traded in its validation window); no best params were written. Widen the space "
            f"towards exploration or train longer: see {files.tuning_summary}",
            file=sys.stderr,
        )
    print(f"Summary: {files.tuning_summary}")
    return summary


def train_best(
    prepared: Prepared, args: argparse.Namespace, summary: dict[str, Any], sweep_files: RunFiles
) -> int:
    """--then-train: the best params over the run's config, trained on train + validation (there
    is nothing left to pick checkpoints on: the final weights are tested), tested on the test
    windows the sweep never read."""
    from core.atomic import write_json
    from core.bar_range import BarRange
    from core.config import load_config
    from core.hardware.planner import plan
    from training.commands.planning import cached_probe, job_feature_names
    from training.run.files import RunFiles
    from training.run.folder import create_run
    from training.tuning.space import overrides

    best, chosen, store = summary["best"], prepared.config, prepared.store
    final = load_config(
        [sweep_files.config],
        [
            *overrides(best["params"]),
            f"ensemble.size={chosen.ensemble.size}",
            f"ensemble.mode={chosen.ensemble.mode}",
            "training.select=last",
            "training.patience=null",
        ],
    )
    merged = [replace(f, train=BarRange(f.train.start, f.validation.stop)) for f in prepared.folds]
    shape = {"n_assets": len(store.assets), "feature_names": job_feature_names(final, store)}
    hardware, profile = prepared.hardware, prepared.profile
    resource_plan = plan(hardware, final, 1 if profile else None, **shape)
    cached = None if profile or args.hardware else cached_probe(final, hardware, store)
    if cached is not None:  # the best params may change the network: its own probe, if any
        resource_plan = plan(hardware, final, None, **shape, autotune=cached)
    run_dir, jobs = create_run(
        Path(args.output or RUNS), f"{args.name or 'tune'}-final", final, resource_plan,
        hardware.to_json(), store, merged, command_argv(),
    )  # fmt: skip
    write_json(
        RunFiles(run_dir).sweep,
        {"study": summary["study"], "trials": summary["trials"], "folder": str(sweep_files.root)},
    )
    print(
        f"Training the best params of trial {best['trial']} on train + validation: run folder "
        f"{run_dir} ({jobs_line(final, len(merged), resource_plan)})",
        flush=True,
    )
    return train_and_report(run_dir, jobs, final, resource_plan, profile, not args.no_progress)
