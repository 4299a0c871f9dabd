"""Command line of Ploutos: plan the machine, train PPO on walk-forward folds, write the report.

Only the standard library and `core.hardware.threads` are imported before the plan exists: the thread
variables must be in the environment before numpy or torch load, here and in every child.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python training/train_walk_forward.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from core.hardware import threads
from training.cli_args import positive_int

if TYPE_CHECKING:
    from core.config import Config
    from core.features.store import FeatureStore
    from core.hardware.planner import Plan
    from training.job import Job
    from training.launcher.profile import ClusterProfile

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
HARDWARE_PROFILES = CONFIG_DIR / "hardware"
PRESETS = CONFIG_DIR / "presets"


def build_parser() -> argparse.ArgumentParser:
    profiles = ", ".join(sorted(p.name for p in HARDWARE_PROFILES.glob("*.yaml")))
    parser = argparse.ArgumentParser(
        prog="start_training.sh",
        description="Ploutos: fit PPO trading-agent training to this machine (or a described one).",
        epilog=(
            "start_training.sh also reads: PLOUTOS_VENV (environment folder, default .venv), "
            "PLOUTOS_SKIP_BOOTSTRAP=1 (use the current python as is). "
            f"Shipped hardware profiles (config/hardware/): {profiles}."
        ),
    )
    presets = sorted(p.stem for p in PRESETS.glob("*.yaml"))
    parser.add_argument(
        "--preset",
        choices=presets,
        help="a shipped config/presets/NAME.yaml under your --config files: quick (the whole "
        "pipeline on the sample in minutes) or full (the defaults: 5 y train, every fold)",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML file layered over config/default.yaml (repeatable; later files win)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set ppo.ent_coef=0.01 (repeatable; wins over files)",
    )
    parser.add_argument(
        "--ensemble",
        type=positive_int,
        metavar="N",
        help="number of ensemble members (seeds); overrides ensemble.size",
    )
    parser.add_argument(
        "--cluster",
        choices=("local", "slurm", "debug"),
        help="local: jobs as processes here, as many at once as the plan says (default); "
        "slurm: one job array per run (needs --cluster-profile); debug: in this process; "
        "overrides launcher.cluster",
    )
    parser.add_argument(
        "--cluster-profile",
        metavar="NAME",
        help="config/cluster/NAME.yaml (or a path): partition, time, CPUs and memory per "
        "SLURM task; the jobs are planned for that allocation; overrides launcher.cluster_profile",
    )
    parser.add_argument(
        "--hardware",
        metavar="FILE",
        help="plan for the machine described in this YAML instead of detecting this one",
    )
    parser.add_argument(
        "--timesteps",
        type=positive_int,
        metavar="N",
        help="PPO steps per member and fold; overrides ppo.total_timesteps",
    )
    parser.add_argument(
        "--folds",
        type=positive_int,
        metavar="N",
        help="train at most the first N walk-forward folds; overrides walk_forward.max_folds",
    )
    parser.add_argument(
        "--vec-env",
        choices=("batch", "subproc"),
        help="batch: numpy-batched envs in the learner (default); subproc: SB3 SubprocVecEnv",
    )
    parser.add_argument(
        "--output",
        metavar="DIR",
        default="runs",
        help="where run folders are created (default: runs/)",
    )
    parser.add_argument("--name", metavar="NAME", help="run folder suffix (default: the preset)")
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a run: finished fold jobs are skipped, unfinished ones continue from "
        "their last checkpoint, then the report is written",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the hardware plan, the walk-forward folds and the jobs, then exit",
    )
    parser.add_argument("--json", action="store_true", help="with --dry-run: print one JSON object")
    parser.add_argument(
        "--data",
        metavar="PATH",
        help="dataset folder (one CSV/Parquet file per asset); overrides data.path. "
        "Without it the synthetic sample is generated and used",
    )
    parser.add_argument(
        "--check-data",
        action="store_true",
        help="load and validate the dataset, print its summary, then exit",
    )
    parser.add_argument(
        "--export-features",
        metavar="OUT.parquet",
        help="compute (or reuse) the feature store and write its matrix with timestamps and "
        "asset names to this Parquet file, then exit",
    )
    parser.add_argument(
        "--generate-data",
        metavar="DIR",
        help="write a synthetic dataset (CSV, one file per asset; see data.synthetic_* keys) "
        "to DIR, then exit",
    )
    parser.add_argument(
        "--tune",
        action="store_true",
        help="run an Optuna sweep over tuning.space, scored on the folds' validation windows "
        "(the test windows are not read); writes trials, best params and a summary to "
        "RUN/tuning/",
    )
    parser.add_argument(
        "--n-trials",
        type=positive_int,
        metavar="N",
        help="with --tune: the study's trial budget across all workers; overrides tuning.n_trials",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="with --tune: workers on one study, launched like ensemble members (--cluster)",
    )
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="with --tune: an SQLAlchemy URL (postgresql://...) for workers on several machines "
        "(default: a journal file in the run folder)",
    )
    parser.add_argument(
        "--study-name", metavar="NAME", help="with --tune: join or create this study"
    )
    parser.add_argument(
        "--then-train",
        action="store_true",
        help="with --tune: then train the ensemble (--ensemble, ensemble.size) with the best "
        "params on each fold's train + validation windows and test it on the untouched test "
        "windows; its report counts the sweep's trials",
    )
    parser.add_argument(
        "--autotune",
        action="store_true",
        help="time PPO training on this machine for a few thread / n_envs / batch settings "
        "(seconds each) and cache the result: this run and later ones plan with the fastest",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved configuration as YAML and exit",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.json and not args.dry_run:
        parser.error("--json only applies to --dry-run")
    tune_only = [flag for flag, given in (("--n-trials", args.n_trials), ("--storage",
                 args.storage), ("--study-name", args.study_name), ("--workers",
                 args.workers != 1), ("--then-train", args.then_train)) if given]  # fmt: skip
    if tune_only and not args.tune:
        parser.error(f"{', '.join(tune_only)} only apply to --tune")
    if args.autotune and args.resume:
        parser.error("--autotune does not apply to --resume: a resumed run keeps its plan")
    if args.tune and args.resume:
        parser.error(
            "--tune does not take --resume: join the study again with --tune --study-name NAME "
            "--storage URL"
        )
    if args.resume and (args.config or args.set or args.preset or args.data or args.dry_run):
        parser.error(
            "--resume continues a run with its own saved config: drop --config, "
            "--set, --preset, --data and --dry-run (--cluster and --cluster-profile may change)"
        )
    from core.errors import UserError

    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` or a closed pager: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def run(args: argparse.Namespace) -> int:
    from core.config import dump_config, load_config
    from core.hardware.machine import detect, load_profile
    from core.hardware.planner import plan

    if args.resume:
        return _resume(Path(args.resume), args)
    overrides = []
    if args.ensemble is not None:
        overrides.append(f"ensemble.size={args.ensemble}")
    if args.data is not None:
        overrides.append(f"data.path={_yaml_string(args.data)}")
    if args.timesteps is not None:
        overrides.append(f"ppo.total_timesteps={args.timesteps}")
    if args.n_trials is not None:
        overrides.append(f"tuning.n_trials={args.n_trials}")
    if args.folds is not None:
        overrides.append(f"walk_forward.max_folds={args.folds}")
    if args.vec_env is not None:
        overrides.append(f"hardware.vec_env={args.vec_env}")
    overrides += _launcher_overrides(args)
    overrides += args.set  # --set wins over the dedicated flags
    files = ([PRESETS / f"{args.preset}.yaml"] if args.preset else []) + list(args.config)
    config = load_config(files, overrides)
    if args.print_config:
        sys.stdout.write(dump_config(config))
        return 0
    from training.launcher.profile import cluster_profile

    profile = cluster_profile(config)
    detected = load_profile(args.hardware) if args.hardware else detect()
    # A SLURM task is planned for its allocation, one member per task, not for this login node.
    hardware = profile.allocation() if profile else detected
    members = 1 if profile else None
    resource_plan = plan(hardware, config, members)
    if not args.hardware:
        # Children inherit these; numpy and torch must not be loaded in this process yet.
        too_late = threads.export_thread_limits(resource_plan.blas_threads)
        if too_late:
            print(f"warning: thread limits set after {', '.join(too_late)} loaded", file=sys.stderr)
    if args.generate_data:
        return _generate_data(config, Path(args.generate_data))
    if args.check_data:
        return _check_data(config, show_progress=not args.no_progress)
    from core.features.build import feature_store
    from training.data_view import print_store, progress_bar, store_document

    # A described machine (--hardware) is planned for, but the features are built here.
    workers = len(os.sched_getaffinity(0)) if args.hardware else detected.usable_cpus
    with progress_bar(enabled=not args.no_progress and not args.json) as progress:
        store, built = feature_store(config, workers=workers, progress=progress)
    if args.export_features:
        return _export_features(store, Path(args.export_features))
    resource_plan = plan(
        hardware, config, members, n_assets=len(store.assets), feature_names=store.feature_names
    )
    measured = _measurements(args, config, hardware, store, bool(profile), resource_plan)
    if measured is not None:
        resource_plan = plan(
            hardware, config, members, len(store.assets), store.feature_names, measured
        )
    from core.features.resolved import with_inferred
    from core.folds import coverage, split
    from training.data_view import check_bands, run_inferred

    check_bands(config, len(store.assets))  # a band that cannot work fails here, not in a job
    also = run_inferred(
        config, store.bar_ns, store.meta["resolved"]["bars_per_year"], len(store.assets)
    )
    folds = split(store.timestamps, store.bar_ns, with_inferred(config, store.meta))
    if args.dry_run:
        from training.fold_view import coverage_document, folds_document, folds_table
        from training.plan_view import plan_document, print_tables

        jobs = _jobs_line(config, len(folds), resource_plan)
        tested = coverage(folds, store.timestamps, with_inferred(config, store.meta))
        if args.json:
            document = plan_document(hardware, resource_plan)
            document["data"] = store_document(store, built)
            document["folds"] = folds_document(folds, store.timestamps, store.bar_ns)
            document["coverage"] = coverage_document(tested, store.timestamps)
            document["jobs"] = {
                "count": len(folds) * config.ensemble.size,
                "timesteps_each": config.ppo.total_timesteps,
                "summary": jobs,
            }
            print(json.dumps(document, indent=2))
        else:
            print_store(store, built, sys.stdout, also)
            print_tables(hardware, resource_plan, sys.stdout)
            _console().print(folds_table(folds, store.timestamps, store.bar_ns, tested))
            print(jobs)
        return 0
    from training.run_folder import create_run

    if profile:
        from training.launcher.profile import check_shared

        check_shared(
            store.path,
            "the feature store",
            "set data.cache_dir to a folder on a filesystem every node shares",
        )
        from training.launcher.settings import log_root

        check_shared(
            log_root(config, profile) or Path(args.output),
            "the launcher's job pickles and logs folder",
            "pass --output (or set launcher.log_dir) a folder on a filesystem every node shares",
        )
    print_store(store, built, sys.stdout, also)
    if args.tune:
        return _tune(args, config, hardware, store, folds, profile, measured)
    name = args.name or args.preset or "run"
    argv = sys.argv if sys.argv and sys.argv[0] else ["train_walk_forward.py"]
    run_dir, jobs = create_run(
        Path(args.output), name, config, resource_plan, hardware.to_json(), store, folds, argv
    )
    print(f"Run folder {run_dir} ({_jobs_line(config, len(folds), resource_plan)})", flush=True)
    return _train_and_report(run_dir, jobs, config, resource_plan, profile, not args.no_progress)


def _measurements(
    args: argparse.Namespace,
    config: Config,
    hardware: Any,
    store: FeatureStore,
    cluster: bool,
    rule: Any,
) -> Any:
    """The cached --autotune probe for this machine, config and observation (None if there is
    none); with --autotune, a fresh probe first."""
    from core.errors import UserError

    if args.hardware or cluster:
        if args.autotune:
            raise UserError(
                "--autotune times training on this machine, but the plan is for "
                + ("--hardware " + str(args.hardware) if args.hardware else "a SLURM allocation")
                + "\n  fix: run --autotune on the machine itself (on SLURM: inside a job on a "
                "node of the partition), or drop --autotune"
            )
        return None
    if not args.autotune:
        return _cached_probe(config, hardware, store)
    if config.hardware.vec_env != "batch" or rule.device != "cpu":
        raise UserError(
            "--autotune times CPU learners with the batch env, but this plan has "
            f"hardware.vec_env={config.hardware.vec_env}, device {rule.device}\n"
            "  fix: drop --autotune, or set hardware.vec_env=batch and hardware.device=cpu"
        )
    from core.hardware.autotune import load_autotune, save_autotune
    from training.autotune import probe

    path, _, key, machine = _probe_identity(config, hardware, store)
    cpus = max(1, hardware.usable_cpus // rule.members_concurrent)
    print(
        f"Autotune: timing PPO training ({config.policy.extractor}) for a few settings, "
        f"{cpus} CPU(s) per member; seconds each",
        flush=True,
    )

    def report(candidate: Any, steps_per_s: float) -> None:
        print(
            f"  {candidate.torch_threads} torch thread(s), n_envs {candidate.n_envs} x n_steps "
            f"{candidate.n_steps}, batch {candidate.batch_size}: {steps_per_s:,.0f} env-steps/s",
            flush=True,
        )

    save_autotune(path, probe(config, store, rule, cpus, key, machine, report))
    print(f"Autotune: cached in {path}; plans on this machine use it from now on")
    return load_autotune(path)


def _probe_identity(
    config: Config, hardware: Any, store: FeatureStore
) -> tuple[Path, Any, str, str]:
    from core.hardware.autotune import autotune_key, cache_file, machine_name
    from core.hardware.planner import estimate_policy_shape

    machine = machine_name(hardware.usable_cpus)
    shape = estimate_policy_shape(config, len(store.assets), store.feature_names)
    key = autotune_key(config, machine, shape.obs_dim, len(store.assets))
    return cache_file(config, key), shape, key, machine


def _cached_probe(config: Config, hardware: Any, store: FeatureStore) -> Any:
    from core.hardware.autotune import load_autotune

    return load_autotune(_probe_identity(config, hardware, store)[0])


def _tune(
    args: argparse.Namespace,
    config: Config,
    hardware: Any,
    store: FeatureStore,
    folds: list[Any],
    profile: ClusterProfile | None,
    measured: Any = None,
) -> int:
    """A sweep: a run folder whose jobs are one trial's members (folds x seeds), N workers on one
    study through the launcher, then the sweep's results in RUN/tuning/."""
    from dataclasses import replace

    from core.config import load_config
    from core.hardware.planner import plan
    from training.launcher.board import JobBoard
    from training.launcher.launch import launch
    from training.launcher.settings import launch_settings
    from training.run_files import RunFiles
    from training.run_folder import create_run
    from training.tuning.results import write_results
    from training.tuning.space import check_space
    from training.tuning.study import open_storage, open_study
    from training.tuning.worker import TuneWorker

    seeds = config.tuning.seeds_per_trial
    chosen = config  # the run the user asked for: --then-train trains it with the best params
    config = config.model_copy(
        update={
            "ensemble": config.ensemble.model_copy(update={"size": seeds, "mode": "independent"})
        }
    )
    workers = args.workers
    shape = {"n_assets": len(store.assets), "feature_names": store.feature_names}
    # One worker per SLURM task (planned for its allocation); locally the workers share the machine.
    resource_plan = plan(
        hardware, config, 1 if profile else args.workers, **shape, autotune=measured
    )
    argv = sys.argv if sys.argv and sys.argv[0] else ["train_walk_forward.py"]
    run_dir, jobs = create_run(
        Path(args.output), args.name or "tune", config, resource_plan, hardware.to_json(), store,
        folds, argv,
    )  # fmt: skip
    files = RunFiles(run_dir)
    check_space([files.config], [], load_config([files.config]).tuning.space)
    study_name = args.study_name or run_dir.name
    tuning = config.tuning
    storage = open_storage(
        args.storage, files.tuning_journal, workers, tuning.heartbeat_s, tuning.grace_s
    )
    study = open_study(study_name, storage, config.tuning, 0)  # created once, joined by workers
    n_trials = config.tuning.n_trials
    steps = n_trials * len(jobs) * config.ppo.total_timesteps
    team = [
        TuneWorker(str(run_dir), i, workers, n_trials, study_name, args.storage,
                   config.launcher.dead_after_s, resource_plan.torch_threads,
                   resource_plan.blas_threads, -(-steps // workers))
        for i in range(workers)
    ]  # fmt: skip
    print(
        f"Run folder {run_dir}: study {study_name}, {n_trials} trial(s) of {len(folds)} fold(s) x "
        f"{seeds} seed(s), {workers} worker(s), "
        f"up to {resource_plan.members_concurrent} at once",
        flush=True,
    )
    settings = replace(launch_settings(config, resource_plan, run_dir, profile), rounds=False)
    try:
        with JobBoard(
            f"sweep {study_name}", live=not args.no_progress and sys.stderr.isatty()
        ) as b:
            outcome = launch(team, settings, b)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        print(f"interrupted: the sweep's workers were cancelled ({run_dir})", file=sys.stderr)
        return 130
    from core.evaluation.judge import annualisation_of

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
        )
        print(f"Best params: {files.best_params} (use with --config)")
    print(f"Summary: {files.tuning_summary}")
    if outcome.failures:
        print(
            f"error: {len(outcome.failures)} worker(s) failed: {outcome.failures}", file=sys.stderr
        )
        return 1
    if not best:
        return 1
    if args.then_train:
        return _train_best(args, chosen, hardware, store, folds, profile, summary, files)
    return 0


def _train_best(
    args: argparse.Namespace,
    chosen: Config,
    hardware: Any,
    store: FeatureStore,
    folds: list[Any],
    profile: ClusterProfile | None,
    summary: dict[str, Any],
    sweep_files: Any,
) -> int:
    """--then-train: the best params over the run's config, trained on train + validation (there
    is nothing left to pick checkpoints on: the final weights are tested), tested on the test
    windows the sweep never read."""
    from dataclasses import replace

    from core.atomic import write_json
    from core.bar_range import BarRange
    from core.config import load_config
    from core.hardware.planner import plan
    from training.run_files import RunFiles
    from training.run_folder import create_run
    from training.tuning.space import overrides

    best = summary["best"]
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
    merged = [replace(f, train=BarRange(f.train.start, f.validation.stop)) for f in folds]
    shape = {"n_assets": len(store.assets), "feature_names": store.feature_names}
    resource_plan = plan(hardware, final, 1 if profile else None, **shape)
    cached = None if profile or args.hardware else _cached_probe(final, hardware, store)
    if cached is not None:  # the best params may change the network: its own probe, if any
        resource_plan = plan(hardware, final, None, **shape, autotune=cached)
    argv = sys.argv if sys.argv and sys.argv[0] else ["train_walk_forward.py"]
    run_dir, jobs = create_run(
        Path(args.output), f"{args.name or 'tune'}-final", final, resource_plan,
        hardware.to_json(), store, merged, argv,
    )  # fmt: skip
    write_json(
        RunFiles(run_dir).sweep,
        {"study": summary["study"], "trials": summary["trials"], "folder": str(sweep_files.root)},
    )
    print(
        f"Training the best params of trial {best['trial']} on train + validation: run folder "
        f"{run_dir} ({_jobs_line(final, len(merged), resource_plan)})",
        flush=True,
    )
    return _train_and_report(run_dir, jobs, final, resource_plan, profile, not args.no_progress)


def _resume(run_dir: Path, args: argparse.Namespace) -> int:
    from core.config import load_config
    from core.errors import UserError
    from core.hardware.machine import detect
    from core.hardware.planner import plan
    from training.run_files import RunFiles

    config_file = RunFiles(run_dir).config
    if not config_file.exists():
        raise UserError(
            f"{run_dir} is not a Ploutos run folder (no {config_file.name})\n"
            "  fix: pass the folder the run printed, e.g. --resume runs/20261122-101500-quick"
        )
    if RunFiles(run_dir).tuning.exists():
        raise UserError(
            f"{run_dir} is a sweep's folder (--tune): --resume continues training runs only\n"
            "  fix: to add trials to a study, start it with --storage postgresql://... and join it "
            "again with --tune --study-name NAME --storage URL; to train its best params, pass "
            f"--config {RunFiles(run_dir).best_params}"
        )
    config = load_config([config_file], _launcher_overrides(args))
    from training.launcher.profile import cluster_profile

    profile = cluster_profile(config)
    hardware = profile.allocation() if profile else detect()
    resource_plan = plan(hardware, config, 1 if profile else None)
    threads.export_thread_limits(resource_plan.blas_threads)
    from training.run_folder import load_run

    jobs = load_run(run_dir)
    done = sum(job.files.result.exists() for job in jobs)
    print(f"Resuming {run_dir}: {done} of {len(jobs)} job(s) already finished", flush=True)
    return _train_and_report(run_dir, jobs, config, resource_plan, profile, not args.no_progress)


def _launcher_overrides(args: argparse.Namespace) -> list[str]:
    overrides = []
    if args.cluster is not None:
        overrides.append(f"launcher.cluster={args.cluster}")
    if args.cluster_profile is not None:
        overrides.append(f"launcher.cluster_profile={_yaml_string(args.cluster_profile)}")
    return overrides


def _train_and_report(
    run_dir: Path,
    jobs: list[Job],
    config: Config,
    resource_plan: Plan,
    profile: ClusterProfile | None,
    show_progress: bool,
) -> int:
    from core.atomic import write_json
    from training.ensemble import aggregate_run
    from training.launcher.board import JobBoard
    from training.launcher.launch import launch
    from training.launcher.settings import launch_settings
    from training.report import build_report, print_summary
    from training.run_files import RunFiles

    files = RunFiles(run_dir)
    settings = launch_settings(config, resource_plan, run_dir, profile)
    title = f"{len(jobs)} job(s) on {settings.cluster}"
    try:
        with JobBoard(title, live=show_progress and sys.stderr.isatty()) as board:
            outcome = launch(jobs, settings, board)
    except KeyboardInterrupt:
        print(
            f"interrupted: the run's jobs were cancelled; continue with --resume {run_dir}",
            file=sys.stderr,
        )
        return 130
    failures = outcome.failures
    if failures:
        write_json(files.failures, failures)
    elif files.failures.exists():
        files.failures.unlink()
    if len(failures) == len(jobs):
        print(f"error: every job failed; see {files.failures}", file=sys.stderr)
        return 1
    print("Combining the members into the ensemble's test tracks", flush=True)
    aggregate_run(run_dir)
    if config.ensemble.mode == "fedavg":
        from training.fedavg.fuse import fuse_run

        print("Testing each fold's fused model (its best round on validation)", flush=True)
        fuse_run(run_dir)
    summary = build_report(run_dir)
    print_summary(summary, run_dir, sys.stdout)
    if failures:
        print(
            f"error: {len(failures)} of {len(jobs)} job(s) failed after every retry "
            f"(launcher.max_retries={config.launcher.max_retries}): "
            + "; ".join(failures)
            + f". The report covers the others. Retry them with --resume {run_dir}",
            file=sys.stderr,
        )
        return 1
    return 0


def _jobs_line(config: Config, n_folds: int, resource_plan: Plan) -> str:
    members = config.ensemble.size
    count = n_folds * members
    how = {
        "local": f"up to {resource_plan.members_concurrent} at once on this machine",
        "slurm": "as one SLURM job array",
        "debug": "one after another in this process (debug)",
    }[config.launcher.cluster]
    return (
        f"{n_folds} fold(s) x {members} member(s) = {count} job(s) of "
        f"{config.ppo.total_timesteps:,} PPO steps each, run {how}"
    )


def _console() -> Any:
    """rich is imported late: the thread limits are set before anything loads numpy."""
    from rich.console import Console

    return Console(width=max(100, Console().width), soft_wrap=False)


@contextlib.contextmanager
def _writing(target: Path, flag: str) -> Iterator[None]:
    """An output path the OS refuses (no such folder, read-only, /proc) is a user's mistake."""
    from core.errors import UserError

    try:
        yield
    except OSError as error:
        raise UserError(
            f"cannot write {target}: {error.strerror or error}\n"
            f"  fix: pass {flag} a path in a folder you can write to"
        ) from None


def _yaml_string(text: str) -> str:
    """Quote a path for `--set` so YAML reads it as a string whatever it looks like."""
    return json.dumps(text)


def _generate_data(config: Config, folder: Path) -> int:
    from core.data.source import sample_config
    from core.data.synthetic import generate_from_config, write_dataset

    data = sample_config(config.data)
    frames = generate_from_config(data)
    with _writing(folder, "--generate-data"):
        write_dataset(frames, folder, "csv")
    first = next(iter(frames.values()))
    print(
        f"wrote {len(frames)} asset file(s) of {len(first):,} {data.bar} bars "
        f"(planted signal {data.synthetic_signal:g}, seed {data.seed}) to {folder}\n"
        f"  use it: ./start_training.sh --check-data --data {folder}"
    )
    return 0


def _check_data(config: Config, show_progress: bool) -> int:
    from core.data.calendar import bars_per_year
    from core.data.load import load_dataset
    from core.data.source import dataset_path
    from core.features.matrix import inferred_timeframes, lookback_bars
    from core.features.windows import resolve_windows
    from core.folds import check_length
    from training.data_view import check_bands, print_summary, progress_bar, run_inferred

    dataset = dataset_path(config)
    with progress_bar(enabled=show_progress) as progress:
        report = (lambda done, total: progress("load bars", done, total)) if progress else None
        market = load_dataset(config.data, dataset, progress=report)
    per_year = bars_per_year(market.timestamps, market.bar_ns, market.summary.calendar)
    resolved, _ = resolve_windows(config, market.bar_ns, per_year)
    timeframes = inferred_timeframes(config.features, market.bar_ns)
    windows = run_inferred(
        config, market.bar_ns, per_year, len(market.assets), ("features", "env", "evaluation")
    )
    print_summary(market.summary, sys.stdout, [*([timeframes] if timeframes else []), *windows])
    check_bands(config, len(market.assets))
    warmup = lookback_bars(resolved.features, market.bar_ns)
    check_length(market.timestamps, market.bar_ns, resolved, warmup)
    print(f"ok: {dataset} is valid and long enough for one walk-forward fold")
    return 0


def _export_features(store: FeatureStore, out: Path) -> int:
    from core.features.build import export_parquet

    with _writing(out, "--export-features"):
        rows = export_parquet(store, out)
    print(
        f"wrote {rows:,} rows ({len(store.assets)} asset(s) x {len(store.timestamps):,} bars) x "
        f"{len(store.feature_names)} features to {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
