"""Which bars a replay walks, located in FOLDER's store by time (FOLDER's bar numbers are not the
run's), and how they relate to what the fold's models trained, validated and were tested on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.bar_range import BarRange
from core.data.timestamps import format_utc
from core.errors import UserError
from core.features.store import FeatureStore
from training.replay.agents import run_rows
from training.run.files import RunFiles
from training.run.records import read_record


@dataclass(frozen=True)
class Window:
    """The bars one fold's models walk: decisions at the closes of bars.start .. stop-2, returns
    over bars.start+1 .. stop-1 (the rows)."""

    fold: int
    bars: BarRange


def test_window(
    run_dir: Path, fold: int, store: FeatureStore, window: int, start: int | None,
    end: int | None,
) -> Window:  # fmt: skip
    """The fold's own test window (the rows the run tested it on), cut to [start, end] (UTC
    ns, either open); FOLDER must hold those bars exactly."""
    rows = run_rows(run_dir, fold)["timestamp"]
    rows = rows[(rows >= (start or rows[0])) & (rows <= (end if end is not None else rows[-1]))]
    if len(rows) == 0:
        raise UserError(
            f"fold {fold}'s test window has no bar between --from and --to\n"
            "  fix: widen --from / --to, or drop them to replay every test bar"
        )
    times = np.asarray(store.timestamps)
    first = int(np.searchsorted(times, rows[0]))
    last = first + len(rows) - 1
    if last >= len(times) or not np.array_equal(times[first : last + 1], rows):
        raise UserError(
            f"the data does not hold fold {fold}'s test bars as the run had them "
            f"({len(rows):,} bars from {format_utc(int(rows[0]))} to "
            f"{format_utc(int(rows[-1]))})\n  fix: --window test replays the run's own test "
            "windows: pass the run's data (or a copy with the same bars); for newer bars use "
            "--window forward"
        )
    if first - 1 < window - 1:
        raise UserError(
            f"the data starts too late for fold {fold}'s first test decision: an observation "
            f"needs {window} bar(s) of features up to it\n  fix: give the run's data from its start"
        )
    return Window(fold, BarRange(first - 1, last + 1))


def forward_window(
    run_dir: Path, fold: int, folds: list[int], store: FeatureStore, window: int,
    start: int | None, end: int | None,
) -> Window:  # fmt: skip
    """Every bar of FOLDER after the run's last test bar (or from `start`), to `end`."""
    times = np.asarray(store.timestamps)
    last_tested = max(int(run_rows(run_dir, f)["timestamp"][-1]) for f in folds)
    first = (
        int(np.searchsorted(times, start, "left"))
        if start is not None
        else int(np.searchsorted(times, last_tested, "right"))
    )
    stop = int(np.searchsorted(times, end, "right")) if end is not None else len(times)
    if stop - max(first, window) < 1:
        since = format_utc(start if start is not None else last_tested)
        until = f" and up to {format_utc(end)}" if end is not None else ""
        raise UserError(
            f"the forward window has no bar: the data runs from {format_utc(int(times[0]))} to "
            f"{format_utc(int(times[-1]))}, the run's last test bar is {format_utc(last_tested)}; "
            f"no bar comes {'at or ' if start is not None else ''}after {since}{until}\n"
            "  fix: give data with bars after the run's last test bar, or pass --from an "
            "earlier time (the report then says which bars the run had seen)"
        )
    return Window(fold, _walk_range(first - 1, stop, window))


def _walk_range(start: int, stop: int, window: int) -> BarRange:
    """[start, stop) with the first decision bar late enough for an observation's window."""
    return BarRange(max(start, window - 1), stop)


def parse_time(text: str, flag: str) -> int:
    """A --from / --to time as UTC ns (naive times are UTC)."""
    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        raise UserError(
            f"{flag} {text!r} is not a time\n  fix: e.g. {flag} 2024-01-01 or {flag} "
            "'2024-01-01 09:00' (UTC unless an offset is given)"
        ) from None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value)


@dataclass(frozen=True)
class Overlap:
    """Rows of a window that the fold's models trained or validated on, or that the run tested."""

    train: int
    validation: int
    tested: int  # rows inside any of the run's test windows

    @property
    def in_sample(self) -> bool:
        return bool(self.train or self.validation)


def overlap(run_dir: Path, fold: int, rows: np.ndarray, folds: list[int]) -> Overlap:
    """Counted on the fold's train / validation spans as folds.json recorded them."""
    windows = read_record(RunFiles(run_dir).fold_windows, "the run's fold windows")
    spans = next(w for w in windows if w["index"] == fold)

    def inside(part: str) -> int:
        low, high = (_utc_ns(spans[part][key]) for key in ("first", "end"))
        return int(((rows >= low) & (rows < high)).sum())

    tested = np.concatenate([run_rows(run_dir, f)["timestamp"] for f in folds])
    return Overlap(inside("train"), inside("validation"), int(np.isin(rows, tested).sum()))


def _utc_ns(text: str) -> int:
    return int(pd.Timestamp(text.removesuffix(" UTC"), tz="UTC").value)
