"""Download Binance spot bars into <out>/<SYMBOL>.csv files that Ploutos trains on.

Re-running the same command resumes: only bars missing from the end of each file are fetched.
The public endpoint needs no credentials; BINANCE_API_KEY, when set, is sent but never shown.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python scripts/build_dataset.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import os
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from core.data.providers.binance import (
    API_KEY_ENV,
    DEFAULT_BASE_URL,
    INTERVALS,
    MIRROR_BASE_URL,
    BuildProgress,
    BuildResult,
    DownloadError,
    KlinesClient,
    RateLimits,
    Transport,
    build_symbol,
    check_range,
    check_symbol,
    interval_ms,
    parse_utc,
    transport_from_env,
    utc_now,
)
from core.errors import UserError
from training.commands.flags import positive_int


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="build_dataset.py",
        description=(
            "Download Binance spot klines into one CSV per symbol "
            "(timestamp,open,high,low,close,volume; bar open times in UTC). "
            "Re-running resumes after the last saved bar."
        ),
        epilog=(
            f"{API_KEY_ENV}, when set, is sent as X-MBX-APIKEY (not needed for public klines) "
            "and never printed or saved."
        ),
    )
    parser.add_argument(
        "--symbols",
        nargs="+",
        required=True,
        metavar="SYMBOL",
        help="spot pairs as Binance spells them, e.g. BTCUSDT ETHUSDT",
    )
    parser.add_argument(
        "--start",
        required=True,
        help="first bar of a new file: YYYY-MM-DD or ISO 8601 (UTC if no zone)",
    )
    parser.add_argument(
        "--end", default=None, help="stop before this time (exclusive); default: now"
    )
    parser.add_argument(
        "--interval", default="1h", help=f"bar length, one of {', '.join(INTERVALS)} (default 1h)"
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="folder for the <SYMBOL>.csv files, e.g. data/binance",
    )
    parser.add_argument(
        "--base-url",
        default=DEFAULT_BASE_URL,
        help=f"API origin (default {DEFAULT_BASE_URL}; mirror: {MIRROR_BASE_URL})",
    )
    parser.add_argument(
        "--weight-limit",
        type=positive_int,
        default=RateLimits.weight_limit,
        help="request weight allowed per minute; pauses at 80%% of it (default 6000)",
    )
    return parser


def _summary(result: BuildResult) -> str:
    """One line per symbol: what was added and what the file now spans."""
    if result.first is None or result.last is None:
        return f"{result.symbol}: no closed bars in the range; no file written"
    span = f"{result.first.isoformat()} .. {result.last.isoformat()}"
    return f"{result.symbol}: +{result.rows_added} rows, {span} -> {result.path}"


def _progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[rows]} rows"),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def run(
    args: argparse.Namespace,
    transport: Transport,
    sleep: Callable[[float], None],
    now: Callable[[], datetime],
) -> int:
    """Validate everything first (no request for a typo), then build symbol after symbol."""
    symbols = [check_symbol(symbol) for symbol in args.symbols]
    interval_ms(args.interval)
    start = parse_utc(args.start, "--start")
    end = parse_utc(args.end, "--end") if args.end else now()
    check_range(start, end)
    limits = RateLimits(weight_limit=args.weight_limit)
    client = KlinesClient(transport, args.base_url, limits, sleep=sleep, now=now)
    with _progress_bar(Console(stderr=True)) as bars:
        for symbol in symbols:
            task = bars.add_task(symbol, total=None, rows=0)

            def show(update: BuildProgress, task: int = task) -> None:
                bars.update(
                    task,
                    total=update.bars_total,
                    completed=update.bars_done,
                    rows=update.rows_added,
                )

            try:
                result = build_symbol(
                    symbol,
                    args.out,
                    start,
                    end,
                    client=client,
                    interval=args.interval,
                    progress=show,
                )
            except BaseException:
                bars.remove_task(task)  # no bar left pulsing above the error message
                raise
            bars.update(task, total=1, completed=1)  # done, even when gaps left it short
            print(_summary(result))
    return 0


def main(
    argv: Sequence[str] | None = None,
    *,
    transport: Transport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = utc_now,
) -> int:
    """The command line; tests pass a fake transport, sleep and clock instead of the network."""
    args = build_parser().parse_args(argv)
    try:
        chosen = transport if transport is not None else transport_from_env(os.environ)
        return run(args, chosen, sleep, now)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: bars downloaded so far are saved; re-run to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
