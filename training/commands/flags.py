"""argparse value types and flag checks shared by the command-line scripts."""

from __future__ import annotations

import argparse

MAX_WORKERS = 10_000  # sweep workers on one study: past any cluster's array limit


def positive_int(text: str) -> int:
    """A whole number >= 1, with a message argparse prints next to the flag."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (a fold number)."""
    return _whole_number(text, 0)


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    return value


def replay_problem(args: argparse.Namespace) -> str | None:
    """--evaluate and --predict read a finished run as it is: its own config, no training."""
    evaluate_only = [flag for flag, given in (("--window", args.window), ("--from", args.from_),
                     ("--to", args.to)) if given]  # fmt: skip
    predict_only = [flag for flag, given in (("--holding", args.holding), ("--drawdown",
                    args.drawdown is not None)) if given]  # fmt: skip
    if evaluate_only and not args.evaluate:
        return f"{', '.join(evaluate_only)} only apply to --evaluate"
    if predict_only and not args.predict:
        return f"{', '.join(predict_only)} only apply to --predict"
    if args.fold is not None and not (args.evaluate or args.predict):
        return "--fold only applies to --evaluate and --predict"
    if not (args.evaluate or args.predict):
        return None
    if args.evaluate and args.predict:
        return "--evaluate and --predict are two commands: give one"
    others = [flag for flag, given in (("--resume", args.resume), ("--tune", args.tune),
              ("--dry-run", args.dry_run), ("--config", args.config), ("--set", args.set),
              ("--preset", args.preset), ("--ensemble", args.ensemble),
              ("--timesteps", args.timesteps)) if given]  # fmt: skip
    if others:
        return (
            f"{', '.join(others)} do not apply to --evaluate / --predict: a finished run's "
            "agents are replayed with the run's own settings"
        )
    if args.output and args.predict:
        return "--output only applies to --evaluate (--predict prints)"
    return None


def flag_problem(args: argparse.Namespace) -> str | None:
    """Flags that do not go together, said the way argparse says a usage error."""
    replay = replay_problem(args)
    if replay:
        return replay
    if args.json and not (args.dry_run or args.predict):
        return "--json only applies to --dry-run and --predict"
    tune_only = [flag for flag, given in (("--n-trials", args.n_trials), ("--storage",
                 args.storage), ("--study-name", args.study_name), ("--workers",
                 args.workers != 1), ("--then-train", args.then_train)) if given]  # fmt: skip
    if args.workers > MAX_WORKERS:
        return f"--workers {args.workers:,} is above the {MAX_WORKERS:,} allowed"
    if tune_only and not args.tune:
        return f"{', '.join(tune_only)} only apply to --tune"
    if args.autotune and args.resume:
        return "--autotune does not apply to --resume: a resumed run keeps its plan"
    if args.tune and args.resume:
        return (
            "--tune does not take --resume: join the study again with --tune --study-name NAME "
            "--storage URL"
        )
    if args.resume and (args.config or args.set or args.preset or args.data or args.dry_run):
        return (
            "--resume continues a run with its own saved config: drop --config, "
            "--set, --preset, --data and --dry-run (--cluster and --cluster-profile may change)"
        )
    return None
