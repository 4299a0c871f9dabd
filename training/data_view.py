"""Human views of a dataset and its feature store, and the progress bar of long data steps."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.data.calendar import Inferred
from core.data.load import DataSummary
from core.features.build import Progress as ProgressCallback
from core.features.store import FeatureStore


@contextlib.contextmanager
def progress_bar(enabled: bool = True) -> Iterator[ProgressCallback | None]:
    """A rich progress bar on stderr (stdout stays clean for --json), one task per step."""
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(file=sys.stderr), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done, total=total)

        yield update


def _console(out: TextIO) -> Console:
    return Console(file=out, width=max(100, Console(file=out).width), soft_wrap=False)


def summary_table(summary: DataSummary) -> Table:
    table = Table(
        title=(
            f"{len(summary.assets)} asset(s), {summary.bars:,} bars of {summary.bar}, "
            f"{summary.first} to {summary.last}"
        ),
        title_justify="left",
        caption=(
            f"calendar {summary.calendar}; missing bars: {summary.missing_bars}; "
            f"timeline breaks longer than one bar: {summary.gaps:,}"
            + (
                f"; bars missing in every asset inside a session: {summary.holes:,}"
                if summary.calendar == "sessions"
                else ""
            )
            + "\n"
            "trimmed: rows outside the span all assets share; filled: missing bars made flat at "
            "the last close; dropped: timeline bars removed because this asset lacked them"
        ),
        caption_justify="left",
    )
    for name in (
        "asset",
        "rows",
        "first (UTC)",
        "last (UTC)",
        "trimmed",
        "filled",
        "dropped",
    ):
        table.add_column(name, justify="left" if name == "asset" else "right", no_wrap=True)
    for asset in summary.assets:
        table.add_row(
            asset.name,
            f"{asset.rows:,}",
            asset.first.removesuffix(" UTC"),
            asset.last.removesuffix(" UTC"),
            f"{asset.trimmed:,}",
            f"{asset.filled:,}",
            f"{asset.missing_dropped:,}",
        )
    return table


def inferred_lines(items: Iterable[Inferred | dict[str, str]]) -> list[str]:
    """One line per setting left on auto: the value chosen, why, and the key to set instead."""
    return [
        "• " + (item if isinstance(item, Inferred) else Inferred(**item)).line() for item in items
    ]


def print_summary(
    summary: DataSummary, out: TextIO, also_inferred: Iterable[Inferred] = ()
) -> None:
    """The dataset table, then every value inferred for an `auto` setting (`also_inferred`: those
    decided past loading, such as features.timeframes)."""
    console = _console(out)
    console.print(f"Dataset {summary.source}", highlight=False, soft_wrap=True)
    console.print(summary_table(summary))
    for line in inferred_lines([*summary.inferred, *also_inferred]):
        console.print(line, highlight=False, soft_wrap=True)
    for asset in summary.assets:
        if asset.ignored_files:
            console.print(
                f"• {asset.name}: {', '.join(asset.ignored_files)} not read — higher timeframes "
                f"are resampled from the {summary.bar} bars",
                highlight=False,
            )


def store_document(store: FeatureStore, built: bool) -> dict[str, Any]:
    meta = store.meta
    return {
        "path": str(store.path),
        "built_now": built,
        "assets": len(meta["assets"]),
        "bars": meta["bars"],
        "features_per_asset": len(meta["feature_names"]),
        "warmup_bars_dropped": meta["warmup_bars"],
        "first": meta["first"],
        "last": meta["last"],
        "build_seconds": meta["build_seconds"],
        "resolved": meta.get("resolved", {}),  # bar, calendar, timeframes the store was built with
        "inferred": meta.get("inferred", []),  # those chosen for `auto` settings, and why
    }


def print_store(store: FeatureStore, built: bool, out: TextIO) -> None:
    doc = store_document(store, built)
    how = f"built in {doc['build_seconds']:.1f} s" if built else "reused (inputs unchanged)"
    _console(out).print(
        f"Feature store {doc['path']}: {how}\n"
        f"  {doc['assets']} asset(s) x {doc['bars']:,} bars x {doc['features_per_asset']} features "
        f"(float32, memory-mapped), {doc['first']} to {doc['last']}; "
        f"{doc['warmup_bars_dropped']:,} warm-up bars dropped",
        highlight=False,
    )
    for line in inferred_lines(store.meta.get("inferred", [])):
        _console(out).print(line, highlight=False, soft_wrap=True)
