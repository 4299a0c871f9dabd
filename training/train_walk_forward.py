"""Command line of Ploutos: parse the flags, check how they combine, hand them to the pipeline.

Only the standard library and `core.hardware.threads` are imported before the plan exists: the thread
variables must be in the environment before numpy or torch load, here and in every child
(training.commands.pipeline sets them first).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python training/train_walk_forward.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import os
from collections.abc import Sequence

from training.commands.flags import flag_problem, positive_int
from training.commands.replay import add_replay_flags

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
MACHINE_FILES = CONFIG_DIR / "hardware"
PRESETS = CONFIG_DIR / "presets"


def build_parser() -> argparse.ArgumentParser:
    machines = ", ".join(sorted(p.name for p in MACHINE_FILES.glob("*.yaml")))
    parser = argparse.ArgumentParser(
        prog="start_training.sh",
        description="Ploutos: fit PPO trading-agent training to this machine (or a described one).",
        epilog=(
            "start_training.sh also reads: PLOUTOS_VENV (environment folder, default .venv), "
            "PLOUTOS_SKIP_BOOTSTRAP=1 (use the current python as is). "
            f"Shipped hardware profiles (config/hardware/): {machines}."
        ),
    )
    for add in (
        _config_flags,
        _machine_flags,
        _run_flags,
        _data_flags,
        _sweep_flags,
        add_replay_flags,
        _other_flags,
    ):
        add(parser)
    return parser


def _config_flags(parser: argparse.ArgumentParser) -> None:
    """Config files, overrides and the ensemble size."""
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


def _machine_flags(parser: argparse.ArgumentParser) -> None:
    """Where and how big: cluster, machine, steps, folds, env kind."""
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


def _run_flags(parser: argparse.ArgumentParser) -> None:
    """Run folders: where, named how, resumed, or only planned."""
    parser.add_argument(
        "--output",
        metavar="DIR",
        help="where run folders are created (default: runs/); with --evaluate, the evaluation "
        "folder (default: RUN_DIR/evaluations/<UTC time>-<window>)",
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
    parser.add_argument(
        "--json", action="store_true", help="with --dry-run or --predict: print one JSON object"
    )


def _data_flags(parser: argparse.ArgumentParser) -> None:
    """Dataset commands."""
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


def _sweep_flags(parser: argparse.ArgumentParser) -> None:
    """Optuna sweeps."""
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


def _other_flags(parser: argparse.ArgumentParser) -> None:
    """Autotune, output and config printing."""
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = flag_problem(args)
    if problem:
        parser.error(problem)
    from core.errors import UserError
    from core.redact import keep_secret, redact
    from training.launcher import signals

    if args.storage:
        keep_secret(args.storage)
    with signals.installed():  # SIGTERM and SIGHUP: as Ctrl-C (cancel the jobs, say --resume)
        try:
            return signals.exit_status(run(args))
        except UserError as exc:
            print(f"error: {redact(str(exc))}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return signals.exit_status(130)
        except BrokenPipeError:  # output piped into `head` or a closed pager: not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141


def run(args: argparse.Namespace) -> int:
    """Dispatch a parsed command line to the pipeline."""
    from training.commands import data as data_commands
    from training.commands import pipeline

    if args.evaluate or args.predict:
        from training.commands import replay

        return replay.evaluate_command(args) if args.evaluate else replay.predict_command(args)
    if args.resume:
        return pipeline.resume(Path(args.resume), args)
    config = pipeline.config_of(args)
    if args.print_config:
        from core.config import dump_config

        sys.stdout.write(dump_config(config))
        return 0
    profile, hardware, detected = pipeline.machine(args, config)
    if args.generate_data:
        return data_commands.generate_data(config, Path(args.generate_data))
    if args.check_data:
        return data_commands.check_data(config, show_progress=not args.no_progress)
    if args.export_features:
        store, _ = pipeline.store_of(args, config, detected)
        return data_commands.export_features(store, Path(args.export_features))
    prepared = pipeline.prepare(args, config, profile, hardware, detected)
    if args.dry_run:
        return pipeline.dry_run(prepared, args)
    pipeline.check_shared(prepared, args)
    pipeline.print_store(prepared)
    if args.tune:
        from training.commands.sweep import tune

        return tune(prepared, args)
    return pipeline.train_new(prepared, args)


if __name__ == "__main__":
    sys.exit(main())
