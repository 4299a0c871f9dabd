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
from collections.abc import Sequence

from core import threads

HARDWARE_PROFILES = Path(__file__).resolve().parents[1] / "config" / "hardware"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


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
        type=_positive_int,
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


def run(args: argparse.Namespace) -> int:
    from core.config import dump_config, load_config
    from core.errors import UserError
    from core.hardware import detect, load_profile
    from core.planner import plan

    overrides = list(args.set)
    if args.ensemble is not None:
        overrides.append(f"ensemble.size={args.ensemble}")
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
    if args.dry_run:
        from training.plan_view import print_json, print_tables

        (print_json if args.json else print_tables)(hardware, resource_plan, sys.stdout)
        return 0
    raise UserError(
        "this version of Ploutos plans but does not train yet: the walk-forward trainer is not "
        "part of it\n  fix: run with --dry-run to see the hardware plan"
    )


if __name__ == "__main__":
    sys.exit(main())
