"""--evaluate and --predict: a finished run's agents on FOLDER's bars (training.replay), printed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.hardware import threads
from training.commands.flags import non_negative_int

# One decision per bar through networks of a few thousand weights: one thread is the fastest
# (more only contend), and numpy and torch read the limit when they load, after this.
REPLAY_THREADS = 1


def add_replay_flags(parser: argparse.ArgumentParser) -> None:
    """After the report: a finished run's agents on new bars."""
    parser.add_argument(
        "--evaluate",
        metavar="RUN_DIR",
        help="trade --data's bars (default: the run's own data) with a finished run's agent "
        "(ensemble or fused model, and each member), through the same market model, costs and "
        "baselines; writes metrics.json, oos_returns.csv, plots and report.md to an "
        "evaluation folder (see --window, --output)",
    )
    parser.add_argument(
        "--window",
        choices=("forward", "test"),
        help="with --evaluate: forward (default) = every bar after the run's last test bar, "
        "traded by the last fold's models; test = each fold's own test window with its models "
        "(on the run's data: the run's numbers)",
    )
    parser.add_argument(
        "--from", dest="from_", metavar="TIME", help="with --evaluate: first bar (UTC)"
    )
    parser.add_argument("--to", metavar="TIME", help="with --evaluate: last bar (UTC)")
    parser.add_argument(
        "--fold",
        type=non_negative_int,
        metavar="K",
        help="with --evaluate or --predict: fold K's models (default: the last fold's; "
        "--predict: the fold whose test window holds the bar)",
    )
    parser.add_argument(
        "--predict",
        metavar="RUN_DIR",
        help="the target weights a finished run's agent decides at the close of --data's "
        "last bar, per asset, with the members' spread (--json: one JSON object)",
    )
    parser.add_argument(
        "--holding",
        nargs="+",
        action="extend",
        metavar="ASSET=WEIGHT[@BARS]",
        help="with --predict: the portfolio held at that close (weights as fractions of equity, "
        "@BARS: bars held, default 1); default flat",
    )
    parser.add_argument(
        "--drawdown",
        type=float,
        metavar="FRACTION",
        help="with --predict: how far the account is below its peak (default 0)",
    )


def evaluate_command(args: argparse.Namespace) -> int:
    threads.export_thread_limits(REPLAY_THREADS)
    from training.post.report import print_summary
    from training.replay.evaluate import Request, evaluate
    from training.replay.report import seen_lines
    from training.replay.windows import parse_time

    request = Request(
        run_dir=Path(args.evaluate),
        data=Path(args.data) if args.data else None,
        window=args.window or "forward",
        start=parse_time(args.from_, "--from") if args.from_ else None,
        end=parse_time(args.to, "--to") if args.to else None,
        fold=args.fold,
        output=Path(args.output) if args.output else None,
        show_progress=not args.no_progress,
    )
    done = evaluate(request)
    for line in seen_lines(done.record):
        if line:
            print(line.removeprefix("> "), file=sys.stderr if "WARNING" in line else sys.stdout)
    for fold in done.record["folds"]:
        print(
            f"Fold {fold['fold']}'s models ({fold['agent']}): {fold['bars']:,} bars from "
            f"{fold['first']} to {fold['last']}"
        )
    print_summary(done.results.summary, done.folder, sys.stdout)
    return 0


def predict_command(args: argparse.Namespace) -> int:
    threads.export_thread_limits(REPLAY_THREADS)
    from training.replay.predict import predict

    decision = predict(
        Path(args.predict),
        Path(args.data) if args.data else None,
        args.holding or [],
        args.drawdown or 0.0,
        args.fold,
        show_progress=not args.no_progress and not args.json,
    )
    if args.json:
        print(json.dumps(decision, indent=2))
    else:
        print_decision(decision)
    return 0


def print_decision(decision: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Target weights at the close of the bar {decision['timestamp']} "
        f"(decided {decision['decided_at']})",
        title_justify="left",
        caption=f"{decision['agent']}, {decision['fold_choice']}; orders fill at the next "
        "bar's open",
        caption_justify="left",
    )
    for column in ("asset", "agent", "members min", "median", "max", "held now"):
        table.add_column(column, justify="left" if column == "asset" else "right")
    held = decision["portfolio"]["weights"]
    for asset, weight in decision["weights"].items():
        spread = decision["members"][asset]
        table.add_row(
            asset,
            f"{weight:+.4f}",
            *(f"{spread[key]:+.4f}" for key in ("min", "median", "max")),
            f"{held[asset]:+.4f}",
        )
    console = Console(width=max(100, Console().width))
    console.print(table)
    flat = not any(held.values())
    console.print(
        "Portfolio assumed: "
        + ("flat (pass --holding ASSET=WEIGHT[@BARS] for yours)" if flat else "as --holding gave")
        + f", drawdown {decision['portfolio']['drawdown']:.2%}",
        highlight=False,
    )
