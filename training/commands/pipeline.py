"""One command's chain: config, machine and plan, feature store and folds, then train and report.

`prepare` does the shared part once per command (the plan is made before numpy loads, so the
thread limits reach every process, then again with the store's exact shape and any autotune
probe); `train_new`, `resume`, `dry_run` and the sweep (training.commands.sweep) run on what it prepared.
The command line (training/train_walk_forward.py) only parses flags and dispatches to these.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.algorithms import algorithm_label, off_policy
from core.hardware import threads

if TYPE_CHECKING:
    import argparse

    from core.config import Config
    from core.data.calendar import Inferred
    from core.features.store import FeatureStore
    from core.folds import Fold
    from core.hardware.machine import Hardware
    from core.hardware.planner import Plan
    from training.launcher.profile import ClusterProfile
    from training.run.job import Job

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
PRESETS = CONFIG_DIR / "presets"
RUNS = "runs"  # where run folders go without --output


@dataclass(frozen=True)
class Prepared:
    """What every training command starts from, made once."""

    config: Config
    hardware: Hardware  # the machine planned for (a SLURM task's allocation on a cluster)
    profile: ClusterProfile | None
    store: FeatureStore
    built: bool  # the store was built by this command
    folds: list[Fold]
    plan: Plan
    measured: Any  # the autotune probe the plan used, or None
    inferred: list[Inferred]  # the run's `auto` values beside the store's (look-backs, band)


def config_of(args: argparse.Namespace) -> Config:
    """The config the flags describe: preset and --config files, then the dedicated flags, then
    --set (which wins)."""
    from core.config import load_config

    overrides = []
    flags = (
        ("ensemble.size", args.ensemble),
        ("data.path", None if args.data is None else _yaml_string(args.data)),
        ("ppo.total_timesteps", args.timesteps),
        ("tuning.n_trials", args.n_trials),
        ("walk_forward.max_folds", args.folds),
        ("hardware.vec_env", args.vec_env),
    )
    overrides += [f"{key}={value}" for key, value in flags if value is not None]
    overrides += launcher_overrides(args)
    overrides += args.set  # --set wins over the dedicated flags
    files = ([PRESETS / f"{args.preset}.yaml"] if args.preset else []) + list(args.config)
    return load_config(files, overrides)


def launcher_overrides(args: argparse.Namespace) -> list[str]:
    overrides = []
    if args.cluster is not None:
        overrides.append(f"launcher.cluster={args.cluster}")
    if args.cluster_profile is not None:
        overrides.append(f"launcher.cluster_profile={_yaml_string(args.cluster_profile)}")
    return overrides


def machine(args: argparse.Namespace, config: Config) -> tuple[Any, Hardware, Hardware]:
    """Cluster profile, the machine to plan for, and this one; the thread limits are exported
    from a config-only plan before anything loads numpy."""
    from core.hardware.machine import detect, load_machine_file
    from core.hardware.planner import plan
    from training.launcher import slurm_queue
    from training.launcher.profile import cluster_profile

    profile = cluster_profile(config)
    launches = not (args.dry_run or args.check_data or args.generate_data or args.export_features)
    if profile and launches:
        slurm_queue.require_commands()  # before the store is built and the run folder written
    detected = load_machine_file(args.hardware) if args.hardware else detect()
    # A SLURM task is planned for its allocation, one member per task, not for this login node.
    hardware = profile.allocation() if profile else detected
    if not args.hardware:
        estimate = plan(hardware, config, 1 if profile else None)
        # Children inherit these; numpy and torch must not be loaded in this process yet.
        too_late = threads.export_thread_limits(estimate.blas_threads)
        if too_late:
            print(f"warning: thread limits set after {', '.join(too_late)} loaded", file=sys.stderr)
    return profile, hardware, detected


def store_of(args: argparse.Namespace, config: Config, detected: Hardware) -> tuple[Any, bool]:
    import os

    from core.features.build import feature_store
    from core.hardware.machine import detect
    from training.views.data import progress_bar

    # A described machine (--hardware) is planned for, but the features are built here.
    workers = len(os.sched_getaffinity(0)) if args.hardware else detected.usable_cpus
    memory_gb = (detect() if args.hardware else detected).memory_available_gb
    with progress_bar(enabled=not args.no_progress and not args.json) as progress:
        return feature_store(config, workers=workers, progress=progress, memory_gb=memory_gb)


def prepare(
    args: argparse.Namespace,
    config: Config,
    profile: ClusterProfile | None,
    hardware: Hardware,
    detected: Hardware,
) -> Prepared:
    """Store, folds and the plan (with the store's exact shape and any autotune probe), once."""
    from core.features.resolved import with_inferred
    from core.folds import sized_windows, split
    from training.commands.planning import plan_for_store
    from training.views.data import check_bands, run_inferred

    store, built = store_of(args, config, detected)
    check_bands(config, len(store.assets))  # a band that cannot work fails here, not in a job
    inferred = run_inferred(
        config, store.bar_ns, store.meta["resolved"]["bars_per_year"], len(store.assets)
    )
    resolved = with_inferred(config, store.meta)
    inferred += sized_windows(store.timestamps, store.bar_ns, resolved).notes
    folds = split(store.timestamps, store.bar_ns, resolved)
    check_regime(config, folds)  # --dry-run refuses what the run's regime fit would
    members = 1 if profile else None
    resource_plan, measured = plan_for_store(args, config, hardware, store, profile, members)
    return Prepared(
        config, hardware, profile, store, built, folds, resource_plan, measured, inferred
    )


def check_regime(config: Config, folds: list[Fold]) -> None:
    """features.regime=hmm: each fold's training bars must fit features.regime_states."""
    if config.features.regime == "none":
        return
    from core.features.regime import check_regime_bars

    for fold in folds:
        check_regime_bars(config.features.regime_states, len(fold.train), fold.index)


def dry_run(prepared: Prepared, args: argparse.Namespace) -> int:
    """The plan, the folds and the jobs, as tables or one JSON object; nothing is written."""
    from core.features.resolved import with_inferred
    from core.folds import coverage
    from training.views.data import store_document
    from training.views.folds import coverage_document, folds_document, folds_table
    from training.views.plan import plan_document, print_tables

    config, store, folds = prepared.config, prepared.store, prepared.folds
    jobs = jobs_line(config, len(folds), prepared.plan)
    tested = coverage(folds, store.timestamps, with_inferred(config, store.meta))
    if args.json:
        document = plan_document(prepared.hardware, prepared.plan)
        document["data"] = store_document(store, prepared.built)
        document["folds"] = folds_document(folds, store.timestamps, store.bar_ns)
        document["coverage"] = coverage_document(tested, store.timestamps)
        document["jobs"] = {
            "count": len(folds) * config.ensemble.size,
            "timesteps_each": config.ppo.total_timesteps,
            "summary": jobs,
        }
        print(json.dumps(document, indent=2))
        return 0
    print_store(prepared)
    print_tables(prepared.hardware, prepared.plan, sys.stdout)
    console().print(folds_table(folds, store.timestamps, store.bar_ns, tested))
    print(jobs)
    return 0


def print_store(prepared: Prepared) -> None:
    from training.views.data import print_store

    print_store(prepared.store, prepared.built, sys.stdout, prepared.inferred)


def check_shared(prepared: Prepared, args: argparse.Namespace) -> None:
    """On SLURM the store and the launcher's folder must be on a filesystem every node sees."""
    if not prepared.profile:
        return
    from training.launcher.profile import check_shared
    from training.launcher.settings import log_root

    check_shared(
        prepared.store.path,
        "the feature store",
        "set data.cache_dir to a folder on a filesystem every node shares",
    )
    check_shared(
        log_root(prepared.config, prepared.profile) or Path(args.output or RUNS),
        "the launcher's job pickles and logs folder",
        "pass --output (or set launcher.log_dir) a folder on a filesystem every node shares",
    )


def train_new(prepared: Prepared, args: argparse.Namespace) -> int:
    """A new run folder, its jobs through the launcher, then the report."""
    from training.run.folder import create_run

    name = args.name or args.preset or "run"
    run_dir, jobs = create_run(
        Path(args.output or RUNS),
        name,
        prepared.config,
        prepared.plan,
        prepared.hardware.to_json(),
        prepared.store,
        prepared.folds,
        command_argv(),
    )
    line = jobs_line(prepared.config, len(prepared.folds), prepared.plan)
    print(f"Run folder {run_dir} ({line})", flush=True)
    return train_and_report(
        run_dir, jobs, prepared.config, prepared.plan, prepared.profile, not args.no_progress
    )


def resume(run_dir: Path, args: argparse.Namespace) -> int:
    """Finish a run folder: its own config, its saved plan when this is the machine it was made
    for (else a new plan with its store's shape, said so), finished jobs skipped."""
    from core.config import load_config
    from core.hardware.machine import detect
    from core.hardware.planner import plan
    from training.commands.planning import replan, saved_plan
    from training.launcher import slurm_queue
    from training.launcher.profile import cluster_profile
    from training.run.files import checked_run_files

    files = checked_run_files(run_dir)
    config = load_config([files.config], launcher_overrides(args))
    profile = cluster_profile(config)
    if profile:
        slurm_queue.require_commands()
    hardware = profile.allocation() if profile else detect()
    kept = saved_plan(files, hardware)
    estimate = kept or plan(hardware, config, 1 if profile else None)  # before numpy loads
    threads.export_thread_limits(estimate.blas_threads)
    from training.population.group_run import reopen_groups
    from training.run.folder import load_run
    from training.run.records import check_job_results

    jobs = load_run(run_dir)
    check_job_results([job.files for job in jobs])
    for line in reopen_groups(run_dir):
        print(line, flush=True)
    if kept is not None:
        resource_plan, why = kept, f"it keeps its plan ({files.plan.name}: this machine)"
    else:
        resource_plan, why = replan(files, config, hardware, profile)
        threads.export_thread_limits(resource_plan.blas_threads)
    done = sum(job.files.result.exists() for job in jobs)
    print(f"Resuming {run_dir}: {done} of {len(jobs)} job(s) already finished; {why}", flush=True)
    return train_and_report(run_dir, jobs, config, resource_plan, profile, not args.no_progress)


def train_and_report(
    run_dir: Path,
    jobs: list[Job],
    config: Config,
    resource_plan: Plan,
    profile: ClusterProfile | None,
    show_progress: bool,
) -> int:
    """Launch the jobs, record failures, then the post-run chain and the printed summary; one
    command at a time writes a run folder (training.run.lock)."""
    from training.run.lock import RunLock

    with RunLock(run_dir):
        return _train_and_report(run_dir, jobs, config, resource_plan, profile, show_progress)


def _train_and_report(
    run_dir: Path,
    jobs: list[Job],
    config: Config,
    resource_plan: Plan,
    profile: ClusterProfile | None,
    show_progress: bool,
) -> int:
    from training.launcher.board import JobBoard
    from training.launcher.settings import launch_settings
    from training.learners.ensemble_launch import launch_ensemble

    settings = launch_settings(config, resource_plan, run_dir, profile)
    title = f"{len(jobs)} job(s) on {settings.cluster}"
    try:
        with JobBoard(title, live=show_progress and sys.stderr.isatty()) as board:
            outcome = launch_ensemble(
                jobs, settings, board, resource_plan.learner, resource_plan.group_size
            )
    except KeyboardInterrupt:
        print(
            f"interrupted: the run's jobs were cancelled; continue with --resume {run_dir}",
            file=sys.stderr,
        )
        return 130
    return _report(run_dir, jobs, config, outcome.failures)


def _report(run_dir: Path, jobs: list[Job], config: Config, failures: dict[str, str]) -> int:
    """The post-run chain; a full disk on the way is said with how to finish it."""
    from core.atomic import DiskFullError

    try:
        return _post_run(run_dir, jobs, config, failures)
    except DiskFullError as full:
        where = full.path.parent
        raise full.with_fix(
            f"free space on the filesystem of {where} (df -h {where}) or raise your quota, "
            f"then --resume {run_dir} finishes the report (the jobs' results are kept)"
        ) from None


def _post_run(run_dir: Path, jobs: list[Job], config: Config, failures: dict[str, str]) -> int:
    from core.atomic import write_json
    from training.post.ensemble import aggregate_run
    from training.post.report import build_report, print_summary
    from training.run.files import RunFiles

    files = RunFiles(run_dir)
    if failures:
        write_json(files.failures, failures)
    elif files.failures.exists():
        files.failures.unlink()
    unfinished = [job for job in jobs if not job.files.result.exists()]
    if failures and len(unfinished) == len(jobs):
        print(f"error: every job failed; see {files.failures}", file=sys.stderr)
        return 1
    print("Combining the members into the ensemble's test tracks", flush=True)
    aggregate_run(run_dir, say=lambda line: print(line, flush=True))
    if config.ensemble.mode == "fedavg":
        from training.post.fuse import fuse_run

        print("Testing each fold's fused model (its best round on validation)", flush=True)
        fuse_run(run_dir)
    summary = build_report(run_dir)
    print_summary(summary, run_dir, sys.stdout)
    if failures:
        print(
            f"error: {len(unfinished)} of {len(jobs)} job(s) failed after every retry "
            f"(launcher.max_retries={config.launcher.max_retries}): "
            + "; ".join(failures)
            + f". The report covers the others. Retry them with --resume {run_dir}",
            file=sys.stderr,
        )
        return 1
    return 0


def jobs_line(config: Config, n_folds: int, resource_plan: Plan) -> str:
    from core.hardware.groups import group_sizes, groups_per_fold

    members = config.ensemble.size
    count = n_folds * members
    how = {
        "local": f"up to {resource_plan.members_concurrent} at once on this machine",
        "slurm": "as one SLURM job array",
        "debug": "one after another in this process (debug)",
    }[config.launcher.cluster]
    line = (
        f"{n_folds} fold(s) x {members} member(s) = {count} job(s) of "
        f"{config.ppo.total_timesteps:,} {algorithm_label(config)} steps each"
        f"{_whole_rollouts(config, resource_plan)}"
    )
    if resource_plan.learner != "population":
        return f"{line}, run {how}{_estimate(config, resource_plan)}"
    cluster = config.launcher.cluster
    slots = resource_plan.members_concurrent if cluster == "local" else 1
    groups = groups_per_fold(members, n_folds, slots, resource_plan.group_size)
    largest = group_sizes(members, groups)[0]
    where = {
        "local": f"up to {resource_plan.members_concurrent} group(s) at once on this machine",
        "slurm": "one SLURM array task per group",
        "debug": "one group after another in this process (debug)",
    }[cluster]
    return (
        f"{line}, trained in {n_folds * groups} group(s) of up to {largest} member(s) "
        f"(ensemble.learner population), {where}"
    )


def _estimate(config: Config, resource_plan: Plan) -> str:
    """Training's wall time at the pace --autotune measured here (the probe times one member's
    learner with the batch env, so only such plans get one); the walks add to it."""
    pace = resource_plan.measured_steps_per_s
    if off_policy(config) is not None:
        return f"; no wall-time estimate: --autotune times PPO, not {algorithm_label(config)}"
    if not pace:
        return (
            "; no wall-time estimate: --autotune measures this machine's pace once (seconds), "
            "then plans give one"
        )
    rollout = resource_plan.n_envs * resource_plan.n_steps
    trained = -(-config.ppo.total_timesteps // rollout) * rollout
    seconds = resource_plan.waves * trained / pace
    minutes = round(seconds / 60)
    about = "under a minute" if minutes < 1 else (
        f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
    )  # fmt: skip
    return (
        f"; training takes about {about} at the pace --autotune measured ({pace:,.0f} steps/s "
        f"a member, {resource_plan.waves} wave(s)), plus the validation and test walks"
    )


def _whole_rollouts(config: Config, resource_plan: Plan) -> str:
    """PPO stops after a whole rollout: say how many steps a member really trains."""
    rollout = resource_plan.n_envs * resource_plan.n_steps
    trained = -(-config.ppo.total_timesteps // rollout) * rollout
    if trained == config.ppo.total_timesteps:
        return ""
    if off_policy(config) is not None:
        return (
            f" (trained as {trained:,}: {algorithm_label(config)} collects n_envs "
            f"{resource_plan.n_envs} x {config.training.algorithm}.train_freq "
            f"{resource_plan.n_steps} = {rollout:,} steps between updates)"
        )
    return (
        f" (trained as {trained:,}: PPO collects whole rollouts of n_envs {resource_plan.n_envs}"
        f" x n_steps {resource_plan.n_steps} = {rollout:,} steps)"
    )


def command_argv() -> list[str]:
    """The command line as typed, for the run folder's command.txt."""
    return sys.argv if sys.argv and sys.argv[0] else ["train_walk_forward.py"]


def console() -> Any:
    """rich is imported late: the thread limits are set before anything loads numpy."""
    from rich.console import Console

    return Console(width=max(100, Console().width), soft_wrap=False)


def _yaml_string(text: str) -> str:
    """Quote a path for `--set` so YAML reads it as a string whatever it looks like."""
    return json.dumps(text)
