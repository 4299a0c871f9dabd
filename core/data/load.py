"""Load a dataset folder into one UTC timeline of OHLCV bars per asset, or say exactly what is wrong.

A dataset is a folder with one CSV/Parquet file per asset, or one sub-folder per asset holding a
file per timeframe (the base bar's file is used; higher timeframes are resampled from it so they
are consistent and causal by construction). Timestamps are bar open times. A stock file with an
adjusted-close column is read in adjusted prices (core.data.adjusted), and a move that looks like
an unadjusted split is refused or listed (core.data.splits).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import DataConfig
from core.data.adjusted import adjust, adjusted_column
from core.data.calendar import Closure, Inferred, build_timeline, infer_bar
from core.data.splits import check_splits
from core.data.timestamps import (
    UNNAMED_FIRST_COLUMN,
    find_timestamp_column,
    format_utc,
    parse_duration,
    parse_timestamps,
)
from core.data.validation import RowLocator, check_spacing, validate_bars
from core.errors import UserError
from core.units import format_duration

PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
DATA_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
FORMAT_KEYS = ("data.timestamp_format", "data.timezone")
CLOSURES_LISTED = 20  # closures named one by one in the summary (all are counted)


@dataclass(frozen=True)
class AssetFile:
    name: str
    path: Path
    ignored: tuple[Path, ...] = ()  # other timeframe files next to the base one


@dataclass
class AssetReport:
    """What loading and alignment did to one asset, for the data summary."""

    name: str
    file: str
    rows: int
    first: str
    last: str
    trimmed: int = 0  # rows outside the span every asset covers
    filled: int = 0  # missing bars forward-filled
    missing_dropped: int = 0  # timeline bars dropped because this asset lacked them
    ignored_files: list[str] = field(default_factory=list)
    time_column: str = ""  # the column the timestamps were read from
    adjusted_with: str = ""  # the adjusted-close column its prices were scaled by, if any
    splits: list[str] = field(default_factory=list)  # suspected splits kept (data.splits=accept)


@dataclass
class ClosureSummary:
    """Stretches no asset has that the timeline skips (holidays, outages), for the summary."""

    count: int = 0
    bars: int = 0  # normally open bars skipped, over every closure
    longest: str = ""  # the longest closure's line
    listed: list[str] = field(default_factory=list)  # the first CLOSURES_LISTED, in time order

    @classmethod
    def of(cls, closures: Sequence[Closure]) -> ClosureSummary:
        if not closures:
            return cls()
        longest = max(closures, key=lambda c: (c.bars, c.end - c.start))
        return cls(
            count=len(closures),
            bars=sum(c.bars for c in closures),
            longest=longest.line(),
            listed=[c.line() for c in closures[:CLOSURES_LISTED]],
        )

    def lines(self, first: int = 5) -> list[str]:
        """What the data summary prints: how many, the longest, then the `first` few."""
        if not self.count:
            return []
        what = "1 closure" if self.count == 1 else f"{self.count:,} closures"
        head = (
            f"{what}: the timeline skips {self.bars:,} normally open bars that every asset lacks "
            f"(holidays, outages), as it skips a weekend; the longest: {self.longest}"
        )
        if self.count == 1:
            return [head]
        shown = self.listed[:first]
        more = self.count - len(shown)
        tail = [f"... and {more:,} more (the store's meta.json lists the first {len(self.listed)})"]
        return [head, *shown, *(tail if more > 0 else [])]


@dataclass
class DataSummary:
    source: str
    bar: str
    calendar: str
    missing_bars: str
    bars: int
    first: str
    last: str
    gaps: int  # breaks in the timeline longer than one bar (sessions calendar: nights, weekends)
    assets: list[AssetReport]
    holes: int = 0  # sessions: bars inside a session that no asset has (then per missing_bars)
    inferred: list[Inferred] = field(default_factory=list)  # the `auto` settings, as chosen
    closures: ClosureSummary = field(default_factory=ClosureSummary)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MarketData:
    """Aligned bars: `ohlcv[asset, time, column]` on one timeline of bar open times (UTC ns)."""

    assets: tuple[str, ...]
    timestamps: np.ndarray
    ohlcv: np.ndarray
    bar_ns: int
    summary: DataSummary


@dataclass(frozen=True)
class _AssetBars:
    file: AssetFile
    timestamps: np.ndarray
    ohlcv: np.ndarray
    time_column: str = ""
    adjusted_with: str = ""
    splits: tuple[str, ...] = ()


def discover(dataset: Path, bar: str) -> list[AssetFile]:
    """The asset files of a dataset folder (or a single file), sorted by asset name."""
    if not dataset.exists():
        raise UserError(
            f"dataset not found: {dataset}\n"
            "  fix: pass an existing folder with --data (or set data.path)"
        )
    if dataset.is_file():
        return [AssetFile(_asset_name(dataset), dataset)]
    assets = [AssetFile(_asset_name(p), p) for p in sorted(dataset.iterdir()) if _is_data_file(p)]
    assets += [_timeframe_folder(p, bar) for p in sorted(dataset.iterdir()) if _is_asset_dir(p)]
    if not assets:
        raise UserError(
            f"no data files in {dataset}: expected one .csv or .parquet file per asset, or one "
            "folder per asset with one file per timeframe\n"
            "  fix: point --data at the folder that holds the files"
        )
    names = [asset.name for asset in assets]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UserError(
            f"{dataset}: asset {repeated[0]!r} appears twice (as a file and a folder, or in two "
            "formats)\n  fix: keep one source per asset"
        )
    return sorted(assets, key=lambda asset: asset.name)


def _is_data_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.name.endswith(DATA_SUFFIXES)


def _is_asset_dir(path: Path) -> bool:
    return (
        path.is_dir() and not path.name.startswith(".") and any(map(_is_data_file, path.iterdir()))
    )


def _asset_name(path: Path) -> str:
    name = path.name
    for suffix in DATA_SUFFIXES:
        name = name.removesuffix(suffix)
    return name


def _timeframe_folder(folder: Path, bar: str) -> AssetFile:
    files = sorted(p for p in folder.iterdir() if _is_data_file(p))
    if len(files) == 1:
        return AssetFile(folder.name, files[0])
    if bar == "auto":
        base = _finest_timeframe_file(folder, files)
        return AssetFile(folder.name, base, tuple(p for p in files if p != base))
    wanted = bar.lower()
    matches = [
        p
        for p in files
        if _asset_name(p).lower() == wanted
        or _asset_name(p).lower().endswith((f"_{wanted}", f"-{wanted}", f".{wanted}"))
    ]
    if len(matches) != 1:
        found = ", ".join(p.name for p in files)
        raise UserError(
            f"{folder}: {'no' if not matches else 'more than one'} file for the {bar} base bar "
            f"among: {found}\n"
            f"  fix: name the base file {bar}.csv (or ..._{bar}.csv), or set data.bar to the "
            "timeframe of one of these files"
        )
    return AssetFile(folder.name, matches[0], tuple(p for p in files if p != matches[0]))


def _finest_timeframe_file(folder: Path, files: list[Path]) -> Path:
    """data.bar auto: the file named for the shortest timeframe (1h.csv, BTC_5min.csv, ...)."""
    named = {}
    for path in files:
        label = re.split(r"[_.-]", _asset_name(path))[-1]
        if not re.fullmatch(r"[1-9][0-9]*[A-Za-z]+", label):  # "2021" is a year, not 2021 ns
            continue
        try:
            named[path] = parse_duration(label, "data.bar")
        except UserError:
            continue
    shortest = min(named.values(), default=None)
    finest = [p for p, ns in named.items() if ns == shortest]
    if len(finest) != 1:
        found = ", ".join(p.name for p in files)
        raise UserError(
            f"{folder}: cannot tell which file holds the base bar among: {found} "
            "(data.bar is auto, so the file named for the shortest timeframe is read)\n"
            "  fix: name the files by timeframe (1h.csv, 4h.csv or BTC_1h.csv), or set data.bar "
            "to the timeframe of the file to read"
        )
    return finest[0]


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file; a file that cannot be parsed is a UserError naming it."""
    try:
        if path.name.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(path)
            if isinstance(frame.index, pd.RangeIndex):
                return frame
            if isinstance(frame.index, pd.MultiIndex):
                return frame.reset_index()
            # df.to_parquet() keeps a DatetimeIndex as the index: make it the first column.
            return frame.reset_index(names=frame.index.name or UNNAMED_FIRST_COLUMN)
        return pd.read_csv(path, skipinitialspace=True)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"cannot read {path}: {first}\n  fix: check that it is a CSV or Parquet file of bars"
        ) from None
    except Exception as exc:  # pyarrow raises its own error types for corrupt files
        raise UserError(f"cannot read {path}: {exc}\n  fix: re-export the file") from None


def load_asset(asset: AssetFile, config: DataConfig, bar_ns: int | None) -> _AssetBars:
    """Read and check one asset, in adjusted prices when the file has an adjusted close; `bar_ns`
    None (data.bar auto) leaves the spacing check to the caller, once the bar is inferred from
    every asset."""
    frame = read_table(asset.path)
    where = str(asset.path)
    columns = _price_columns(frame, where)
    time_column = find_timestamp_column(
        list(frame.columns),
        config.timestamp_column,
        where,
        "data.timestamp_column",
        first_values=frame.iloc[:, 0] if len(frame.columns) else None,
    )
    if frame.empty:
        raise UserError(f"{where}: the file has a header but no bars\n  fix: add data or remove it")
    timestamps = parse_timestamps(
        frame[time_column], config.timestamp_format, config.timezone, where, FORMAT_KEYS
    )
    ohlcv = np.column_stack([_numbers(frame[columns[name]], name, where) for name in PRICE_COLUMNS])
    locator = _locator(asset)
    validate_bars(timestamps, ohlcv, bar_ns, locator)
    adjusted = adjusted_column(list(frame.columns), config.adjusted_close, where)
    if adjusted is not None:
        values = _numbers(frame[adjusted], adjusted, where)
        ohlcv = adjust(ohlcv, values, adjusted, timestamps, locator)
    splits = check_splits(asset.name, ohlcv, timestamps, locator, config.splits == "accept")
    return _AssetBars(asset, timestamps, ohlcv, time_column, adjusted or "", tuple(splits))


def _locator(asset: AssetFile) -> RowLocator:
    return RowLocator(str(asset.path), csv=not asset.path.name.endswith((".parquet", ".pq")))


def _price_columns(frame: pd.DataFrame, where: str) -> dict[str, str]:
    by_lower = {str(name).strip().lower(): str(name) for name in frame.columns}
    missing = [name for name in PRICE_COLUMNS if name not in by_lower]
    if missing:
        raise UserError(
            f"{where}: missing column(s) {', '.join(missing)}; the file has: "
            f"{', '.join(map(str, frame.columns))}\n"
            "  fix: name the columns open, high, low, close, volume (any letter case)"
        )
    return {name: by_lower[name] for name in PRICE_COLUMNS}


def _numbers(column: pd.Series, name: str, where: str) -> np.ndarray:
    converted = pd.to_numeric(column, errors="coerce")
    bad = converted.isna() & column.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(
            f"{where}, row {row + 1}: {name} = {column.iloc[row]!r} is not a number\n"
            "  fix: correct that value (decimal point, no thousands separator)"
        )
    return converted.to_numpy(dtype="float64", na_value=np.nan)


def load_dataset(
    config: DataConfig,
    dataset: Path,
    progress: Callable[[int, int], None] | None = None,
) -> MarketData:
    """Discover, read, validate and align every asset of a dataset; `progress(done, total)`.

    `data.bar: auto` is inferred from every asset's spacing, then each file's spacing is checked
    against it; `data.calendar: auto` is inferred in `align`. What was inferred is listed in the
    summary."""
    configured = None if config.bar == "auto" else parse_duration(config.bar, "data.bar")
    assets = discover(dataset, config.bar)
    loaded = []
    for asset in assets:
        loaded.append(load_asset(asset, config, configured))
        if progress:
            progress(len(loaded), len(assets))
    inferred = _inferred_time_column(loaded, config)
    if configured is not None:
        return align(loaded, config, configured, str(dataset), inferred)
    bar_ns, bar = infer_bar([a.timestamps for a in loaded])
    for asset in loaded:
        check_spacing(asset.timestamps, bar_ns, _locator(asset.file), inferred=True)
    return align(loaded, config, bar_ns, str(dataset), [*inferred, bar])


def _inferred_time_column(loaded: Sequence[_AssetBars], config: DataConfig) -> list[Inferred]:
    """The unnamed first column is a guess worth showing; a column named like a time is not."""
    if config.timestamp_column != "auto":
        return []
    unnamed = [a.file.name for a in loaded if a.time_column == UNNAMED_FIRST_COLUMN]
    if not unnamed:
        return []
    files = "every file" if len(unnamed) == len(loaded) else ", ".join(unnamed)
    return [
        Inferred(
            "data.timestamp_column",
            repr(UNNAMED_FIRST_COLUMN),
            f"the unnamed first column of {files} holds dates (pandas' index, as df.to_csv() "
            "writes it)",
            "data.timestamp_column=<column>",
        )
    ]


def align(
    loaded: Sequence[_AssetBars],
    config: DataConfig,
    bar_ns: int,
    source: str,
    inferred: Sequence[Inferred] = (),
) -> MarketData:
    """Put every asset on one timeline, applying the configured missing-bar policy."""
    start = max(int(a.timestamps[0]) for a in loaded)
    end = min(int(a.timestamps[-1]) for a in loaded)
    if start > end:
        late = max(loaded, key=lambda a: a.timestamps[0])
        early = min(loaded, key=lambda a: a.timestamps[-1])
        raise UserError(
            f"assets do not overlap in time: {late.file.name} starts {format_utc(start)} after "
            f"{early.file.name} ends {format_utc(end)}\n  fix: keep assets that share a period"
        )
    union = np.unique(np.concatenate([a.timestamps for a in loaded]))
    # missing_bars=fail refuses every stretch a market normally trades, even one no asset has.
    closure_after = None if config.missing_bars == "fail" else config.ffill_limit
    built = build_timeline(
        config.calendar, union[(union >= start) & (union <= end)], start, end, bar_ns, closure_after
    )
    timeline = built.timestamps
    reports = [_report(a, start, end) for a in loaded]
    present = np.stack([np.isin(timeline, a.timestamps) for a in loaded])
    keep = np.ones(len(timeline), dtype=bool)
    if config.missing_bars == "fail":
        _fail_on_missing(loaded, timeline, present)
    elif config.missing_bars == "drop":
        keep = present.all(axis=0)
        for report, mask in zip(reports, present, strict=True):
            report.missing_dropped = int((~mask).sum())
    else:
        _check_fill_limit(loaded, timeline, present, config.ffill_limit)
        for report, mask in zip(reports, present, strict=True):
            report.filled = int((~mask).sum())
    timeline = timeline[keep]
    ohlcv = np.stack([_on_timeline(a, timeline) for a in loaded])
    if len(timeline) == 0:
        raise UserError(
            f"no bar is present in every asset of {source} (data.missing_bars=drop)\n"
            "  fix: use data.missing_bars=ffill or remove the asset with the fewest bars"
        )
    summary = DataSummary(
        source=source,
        bar=format_duration(bar_ns),
        calendar=built.calendar,
        missing_bars=config.missing_bars,
        bars=len(timeline),
        first=format_utc(int(timeline[0])),
        last=format_utc(int(timeline[-1])),
        gaps=int((np.diff(timeline) > bar_ns).sum()),
        assets=reports,
        holes=built.holes,
        inferred=[*inferred, *([built.inferred] if built.inferred else [])],
        closures=ClosureSummary.of(built.closures),
    )
    return MarketData(tuple(a.file.name for a in loaded), timeline, ohlcv, bar_ns, summary)


def _report(asset: _AssetBars, start: int, end: int) -> AssetReport:
    inside = (asset.timestamps >= start) & (asset.timestamps <= end)
    return AssetReport(
        name=asset.file.name,
        file=str(asset.file.path),
        rows=len(asset.timestamps),
        first=format_utc(int(asset.timestamps[0])),
        last=format_utc(int(asset.timestamps[-1])),
        trimmed=int((~inside).sum()),
        ignored_files=[p.name for p in asset.file.ignored],
        time_column=asset.time_column,
        adjusted_with=asset.adjusted_with,
        splits=list(asset.splits),
    )


def _fail_on_missing(
    loaded: Sequence[_AssetBars], timeline: np.ndarray, present: np.ndarray
) -> None:
    for asset, mask in zip(loaded, present, strict=True):
        if not mask.all():
            first = int(timeline[np.flatnonzero(~mask)[0]])
            raise UserError(
                f"{asset.file.path}: {int((~mask).sum()):,} bar(s) missing on the common timeline, "
                f"the first at {format_utc(first)} (data.missing_bars=fail)\n"
                "  fix: set data.missing_bars=ffill (flat bars, up to data.ffill_limit in a row) or "
                "drop (remove those bars from every asset)"
            )


def _check_fill_limit(
    loaded: Sequence[_AssetBars],
    timeline: np.ndarray,
    present: np.ndarray,
    limit: int,
) -> None:
    positions = np.arange(len(timeline))
    for asset, mask in zip(loaded, present, strict=True):
        if mask.all():
            continue
        last_present = np.maximum.accumulate(np.where(mask, positions, -1))
        run = positions - last_present
        if run.max() > limit:
            end = int(np.argmax(run))
            begin = end - int(run[end]) + 1
            raise UserError(
                f"{asset.file.path}: {int(run[end]):,} bars in a row are missing from "
                f"{format_utc(int(timeline[max(begin, 0)]))} (data.ffill_limit is {limit}) while "
                "other assets trade (a stretch every asset lacks would be a closure, skipped)\n"
                "  fix: raise data.ffill_limit, set data.missing_bars=drop to remove those bars "
                "from every asset, or leave this asset out"
            )


def _on_timeline(asset: _AssetBars, timeline: np.ndarray) -> np.ndarray:
    """Bars at each timeline time; a missing bar is flat at the last close with zero volume."""
    index = np.searchsorted(asset.timestamps, timeline, side="right") - 1
    bars = asset.ohlcv[np.maximum(index, 0)].copy()
    missing = asset.timestamps[np.maximum(index, 0)] != timeline
    if missing.any():
        bars[missing, :4] = bars[missing, 3:4]
        bars[missing, 4] = 0.0
    return bars
