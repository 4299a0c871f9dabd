"""Human views of a dataset and its feature store, and the progress bar of long data steps."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.config import Config, risk_profile_config
from core.data.calendar import Inferred
from core.data.load import AssetReport, ClosureSummary, DataSummary
from core.envs.market import min_trade_inferred
from core.envs.simulator import check_band
from core.features.build import Progress as ProgressCallback
from core.features.build import window_inferred
from core.features.store import FeatureStore
from core.features.windows import resolve_windows


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


def run_inferred(
    config: Config,
    bar_ns: int,
    bars_per_year: float,
    n_assets: int,
    sections: tuple[str, ...] = ("env", "evaluation"),
) -> list[Inferred]:
    """The `auto` (or span) settings a run resolves beside the store's: look-backs of `sections`
    in bars and the no-trade band for this many assets."""
    _, notes = resolve_windows(config, bar_ns, bars_per_year)
    lines = [window_inferred(note) for note in notes if note.key.split(".")[0] in sections]
    band = min_trade_inferred(config.env, n_assets)
    return [*lines, *([band] if band else [])]


def check_bands(config: Config, n_assets: int) -> None:
    """Before any job: the no-trade band of the run and of every risk profile can open an
    equal-weight position of this many assets."""
    check_band(config.env, n_assets)
    for name in config.ensemble.risk_profiles:
        check_band(risk_profile_config(config, name).env, n_assets)


def closure_lines(closures: ClosureSummary | dict[str, Any] | None) -> list[str]:
    """The closures the timeline skips (from a summary, or its JSON in a store's meta.json)."""
    if not closures:
        return []
    if isinstance(closures, dict):
        closures = ClosureSummary(**closures)
    head, *spans = closures.lines() or [""]
    return [f"• {head}", *(f"    {line}" for line in spans)] if head else []


def price_lines(assets: Iterable[AssetReport | dict[str, Any]]) -> list[str]:
    """How the prices were read: the adjusted-close column each asset was scaled by, and the
    suspected splits kept under data.splits=accept (from a summary or a store's meta.json)."""
    reports = [a if isinstance(a, AssetReport) else AssetReport(**a) for a in assets]
    by_column: dict[str, list[str]] = {}
    for report in reports:
        if report.adjusted_with:
            by_column.setdefault(report.adjusted_with, []).append(report.name)
    lines = [
        f"• prices adjusted with the {column!r} column ({', '.join(names)}): open, high, low and "
        f"close x {column} / close per row, volume / the same factor (traded value unchanged); "
        "set data.adjusted_close=none for the raw prices"
        for column, names in by_column.items()
    ]
    for report in reports:
        if report.splits:
            lines.append(
                f"• {report.name}: {len(report.splits):,} overnight move(s) that look like an "
                "unadjusted split kept as real moves (data.splits=accept):"
            )
            lines += [f"    {line}" for line in report.splits]
    return lines


def print_summary(
    summary: DataSummary, out: TextIO, also_inferred: Iterable[Inferred] = ()
) -> None:
    """The dataset table, then every value inferred for an `auto` setting (`also_inferred`: those
    decided past loading, such as features.timeframes)."""
    console = _console(out)
    console.print(f"Dataset {summary.source}", highlight=False, soft_wrap=True)
    console.print(summary_table(summary))
    for line in [*closure_lines(summary.closures), *price_lines(summary.assets)]:
        console.print(line, highlight=False, soft_wrap=True)
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


def print_store(
    store: FeatureStore, built: bool, out: TextIO, also_inferred: Iterable[Inferred] = ()
) -> None:
    doc = store_document(store, built)
    how = f"built in {doc['build_seconds']:.1f} s" if built else "reused (inputs unchanged)"
    _console(out).print(
        f"Feature store {doc['path']}: {how}\n"
        f"  {doc['assets']} asset(s) x {doc['bars']:,} bars x {doc['features_per_asset']} features "
        f"(float32, memory-mapped), {doc['first']} to {doc['last']}; "
        f"{doc['warmup_bars_dropped']:,} warm-up bars dropped",
        highlight=False,
    )
    summary = store.meta.get("summary") or {}
    inferred = [*store.meta.get("inferred", []), *also_inferred]
    lines = [
        *closure_lines(summary.get("closures")),
        *price_lines(summary.get("assets") or []),
        *inferred_lines(inferred),
    ]
    for line in lines:
        _console(out).print(line, highlight=False, soft_wrap=True)
