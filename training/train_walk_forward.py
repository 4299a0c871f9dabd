"""Command line of Ploutos: plan the machine, then (in later versions) train walk-forward ensembles.

Only the standard library and `core.threads` are imported before the plan exists: the thread
variables must be in the environment before numpy or torch load, here and in every child.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python training/train_walk_forward.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from core import threads
from training.cli_args import positive_int

if TYPE_CHECKING:
    from core.config import Config
    from core.store import FeatureStore

HARDWARE_PROFILES = Path(__file__).resolve().parents[1] / "config" / "hardware"


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
        "--hardware",
        metavar="FILE",
        help="plan for the machine described in this YAML instead of detecting this one",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the detected hardware and the resource plan, then exit without training",
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
    from core.hardware import detect, load_profile
    from core.planner import plan

    overrides = list(args.set)
    if args.ensemble is not None:
        overrides.append(f"ensemble.size={args.ensemble}")
    if args.data is not None:
        overrides.append(f"data.path={_yaml_string(args.data)}")
    config = load_config(args.config, overrides)
    if args.print_config:
        sys.stdout.write(dump_config(config))
        return 0
    hardware = load_profile(args.hardware) if args.hardware else detect()
    resource_plan = plan(hardware, config)
    if not args.hardware:
        # Children inherit these; numpy and torch must not be loaded in this process yet.
        too_late = threads.export_thread_limits(resource_plan.blas_threads)
        if too_late:
            print(f"warning: thread limits set after {', '.join(too_late)} loaded", file=sys.stderr)
    if args.generate_data:
        return _generate_data(config, Path(args.generate_data))
    if args.check_data:
        return _check_data(config, show_progress=not args.no_progress)
    from core.datasets import feature_store
    from training.data_view import print_store, progress_bar, store_document

    # A described machine (--hardware) is planned for, but the features are built here.
    workers = len(os.sched_getaffinity(0)) if args.hardware else hardware.usable_cpus
    with progress_bar(enabled=not args.no_progress and not args.json) as progress:
        store, built = feature_store(config, workers=workers, progress=progress)
    if args.export_features:
        return _export_features(store, Path(args.export_features))
    resource_plan = plan(
        hardware, config, n_assets=len(store.assets), n_features=len(store.feature_names)
    )
    if args.dry_run:
        from training.plan_view import plan_document, print_tables

        if args.json:
            document = plan_document(hardware, resource_plan)
            document["data"] = store_document(store, built)
            print(json.dumps(document, indent=2))
        else:
            print_store(store, built, sys.stdout)
            print_tables(hardware, resource_plan, sys.stdout)
        return 0
    from core.errors import UserError

    print_store(store, built, sys.stdout)
    raise UserError(
        "this version of Ploutos prepares the data and plans but does not train yet: the "
        "walk-forward trainer is not part of it\n  fix: run with --dry-run to see the plan"
    )


def _yaml_string(text: str) -> str:
    """Quote a path for `--set` so YAML reads it as a string whatever it looks like."""
    return json.dumps(text)


def _generate_data(config: Config, folder: Path) -> int:
    from core.synthetic import generate_from_config, write_dataset

    frames = generate_from_config(config.data)
    write_dataset(frames, folder, "csv")
    first = next(iter(frames.values()))
    print(
        f"wrote {len(frames)} asset file(s) of {len(first):,} {config.data.bar} bars "
        f"(planted signal {config.data.synthetic_signal:g}, seed {config.data.seed}) to {folder}\n"
        f"  use it: ./start_training.sh --check-data --data {folder}"
    )
    return 0


def _check_data(config: Config, show_progress: bool) -> int:
    from core.data import load_dataset
    from core.datasets import dataset_path
    from core.features import lookback_bars
    from core.folds import check_length
    from training.data_view import print_summary, progress_bar

    dataset = dataset_path(config)
    with progress_bar(enabled=show_progress) as progress:
        report = (lambda done, total: progress("load bars", done, total)) if progress else None
        market = load_dataset(config.data, dataset, progress=report)
    print_summary(market.summary, sys.stdout)
    warmup = lookback_bars(config.features, market.bar_ns)
    check_length(market.timestamps, market.bar_ns, config, warmup)
    print(f"ok: {dataset} is valid and long enough for one walk-forward fold")
    return 0


def _export_features(store: FeatureStore, out: Path) -> int:
    from core.feature_store import export_parquet

    rows = export_parquet(store, out)
    print(
        f"wrote {rows:,} rows ({len(store.assets)} asset(s) x {len(store.timestamps):,} bars) x "
        f"{len(store.feature_names)} features to {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
