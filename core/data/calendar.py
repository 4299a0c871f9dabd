"""Which bars a market should have: the base bar spacing and the trading calendar, set or inferred.

`data.bar: auto` is the most common spacing between consecutive bars. `data.calendar: auto`
reads the week the data shows: for every slot of the week (a weekday and a time of day, one bar
long) the share of its occurrences between the first and the last bar that have a bar. A slot
that is empty in most of at least two occurrences is *closed*: some time of the week is
regularly without bars (nights, weekends), so the market has sessions; otherwise it is
continuous (24/7), and any missing bar is a hole. With too little data for that (less than two
occurrences of any slot) or a bar that does not divide a week, the share of grid slots that have
a bar decides (`SHORT_DATA_COVERAGE`).

On a sessions calendar the timeline is the bars some asset has, plus the *holes inside a
session*: a break between two bars, shorter than a day, whose every missing slot is normally
open (has a bar in at least half of its occurrences). Such a bar is missing although the market
was open, even when no asset has it; `data.missing_bars` handles it like any missing bar. A
break that crosses a normally closed slot (a night, a weekend) or lasts a day or more (a holiday)
is a closure. Daylight saving moves a session's UTC hours; the slots that move are open in only
part of the year and sit at the session's edges, so they are never inside a hole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.data.timestamps import format_utc
from core.errors import UserError
from core.units import DAY_NS, WEEK_NS, YEAR_NS, format_duration

MONDAY_NS = 4 * DAY_NS  # 1970-01-05 00:00 UTC, the first Monday after the epoch
OPEN_SHARE = 0.5  # a slot of the week is normally open when it has a bar this often or more
MIN_OCCURRENCES = 2  # a slot is called closed only after it was empty this many times (of most)
SHORT_DATA_COVERAGE = 0.75  # without a usable week: continuous when this share of slots has bars
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class Inferred:
    """A setting that was `auto`, the value chosen from the data, why, and how to overrule it."""

    key: str
    value: str
    reason: str
    fix: str

    def line(self) -> str:
        return f"{self.key} = {self.value} (inferred: {self.reason}; set {self.fix} if wrong)"


@dataclass(frozen=True)
class Closure:
    """A stretch every asset lacks that the timeline skips: [start, end) in UTC ns, `bars` of
    them normally open (a holiday's weekend slots are not counted)."""

    start: int
    end: int
    bars: int

    def line(self) -> str:
        plural = "bar" if self.bars == 1 else "bars"
        return (
            f"closed {format_utc(self.start).removesuffix(' UTC')} → {format_utc(self.end)} "
            f"({self.bars:,} {plural}, every asset)"
        )


@dataclass(frozen=True)
class Timeline:
    """The bar open times every asset is aligned to."""

    timestamps: np.ndarray
    calendar: str  # continuous | sessions
    holes: int  # bars inside a session that no asset has (added, then handled per missing_bars)
    inferred: Inferred | None  # set when data.calendar was auto
    closures: tuple[Closure, ...] = ()  # stretches no asset has, skipped like a weekend


@dataclass(frozen=True)
class Week:
    """For each slot of the week (Monday 00:00 UTC + offset + i x bar): occurrences between the
    first and the last bar, and how many of them have a bar."""

    bar_ns: int
    offset_ns: int
    occurrences: np.ndarray
    present: np.ndarray

    @property
    def share(self) -> np.ndarray:
        return self.present / np.maximum(self.occurrences, 1)

    @property
    def open(self) -> np.ndarray:
        return self.share >= OPEN_SHARE

    @property
    def closed(self) -> np.ndarray:
        """Slots seen often enough, and empty most of the time: the market is regularly shut."""
        return (self.occurrences >= MIN_OCCURRENCES) & ~self.open

    @property
    def usable(self) -> bool:
        return bool((self.occurrences >= MIN_OCCURRENCES).any())


def infer_bar(timestamps: Sequence[np.ndarray]) -> tuple[int, Inferred]:
    """The most common positive spacing between consecutive bars over every asset (ties: the
    shorter). Holes and closures are rarer than ordinary steps, so they do not move it."""
    steps = np.concatenate([np.diff(t) for t in timestamps])
    steps = steps[steps > 0]
    if steps.size == 0:
        raise UserError(
            "cannot infer the bar spacing: every file has a single bar\n"
            "  fix: set data.bar (e.g. 1h or 1d), or give more bars"
        )
    values, counts = np.unique(steps, return_counts=True)
    bar_ns = int(values[np.argmax(counts)])  # argmax takes the first maximum: the shorter step
    share = counts.max() / steps.size
    return bar_ns, Inferred(
        "data.bar",
        format_duration(bar_ns),
        f"{_percent(share)} of consecutive bars are {format_duration(bar_ns)} apart",
        "data.bar=<spacing>",
    )


def weekly(union: np.ndarray, start: int, end: int, bar_ns: int) -> Week | None:
    """Occurrences and bars of every slot of the week; None when the bar does not divide a week."""
    if WEEK_NS % bar_ns:
        return None
    slots = WEEK_NS // bar_ns
    n_grid = (end - start) // bar_ns + 1
    first = ((start - MONDAY_NS) // bar_ns) % slots
    # Grid position k is slot (first + k) % slots: whole weeks, then the remainder from `first`.
    occurrences = n_grid // slots + (((np.arange(slots) - first) % slots) < n_grid % slots)
    on_grid = union[(union - start) % bar_ns == 0]
    present = np.bincount((first + (on_grid - start) // bar_ns) % slots, minlength=slots)
    return Week(bar_ns, int((start - MONDAY_NS) % bar_ns), occurrences, present)


def build_timeline(
    setting: str,
    union: np.ndarray,
    start: int,
    end: int,
    bar_ns: int,
    closure_after: int | None = None,
) -> Timeline:
    """The timeline for `data.calendar` = setting (auto, continuous or sessions).

    `union` holds the sorted bar open times that some asset has, between start and end.
    `closure_after` (data.ffill_limit; None under missing_bars=fail): a stretch of normally open
    bars that no asset has and that is longer than this is a closure, skipped like a weekend;
    a shorter one stays on the timeline as missing bars."""
    week = weekly(union, start, end, bar_ns)
    inferred = None
    calendar = setting
    if setting == "auto":
        calendar, inferred = _infer_calendar(union, start, end, bar_ns, week)
    on_grid = union[(union - start) % bar_ns == 0]
    position = (on_grid - start) // bar_ns
    missing = np.diff(position) - 1
    breaks = np.flatnonzero(missing > 0)
    if calendar == "continuous":
        skipped = breaks[:0]
        if closure_after is not None:
            skipped = breaks[missing[breaks] > closure_after]
        counts = missing[skipped]
        # Integer arithmetic: np.arange(start, end + 1, step) computes its length in float64 and
        # drops the last bar at epoch-nanosecond magnitudes.
        keep = np.ones((end - start) // bar_ns + 1, dtype=bool)
        keep[_expand(position[skipped] + 1, counts)] = False
        grid = start + np.flatnonzero(keep).astype(np.int64) * bar_ns
        closures = tuple(
            Closure(int(start + (p + 1) * bar_ns), int(start + (p + 1 + n) * bar_ns), int(n))
            for p, n in zip(position[skipped].tolist(), counts.tolist(), strict=True)
        )
        return Timeline(grid, calendar, 0, inferred, closures)
    if week is None:
        return Timeline(union, calendar, 0, inferred)
    holes, closures = _session_breaks(position, missing, breaks, start, bar_ns, week, closure_after)
    timestamps = np.union1d(union, holes) if holes.size else union
    return Timeline(timestamps, calendar, int(holes.size), inferred, closures)


def _expand(first: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """first[i], first[i] + 1, ..., first[i] + counts[i] - 1 for every i, concatenated."""
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(first, counts) + within


def _session_breaks(
    position: np.ndarray,
    missing: np.ndarray,
    breaks: np.ndarray,
    start: int,
    bar_ns: int,
    week: Week,
    closure_after: int | None,
) -> tuple[np.ndarray, tuple[Closure, ...]]:
    """Holes (bar open times inside a session that no asset has) and closures (see the module
    docstring): a break shorter than a day whose every missing slot is normally open is a hole,
    unless it is longer than `closure_after`; any other break that skips normally open slots
    (a holiday, a half-day) is a closure."""
    if breaks.size == 0:
        return position[:0], ()
    counts = missing[breaks]
    positions = _expand(position[breaks] + 1, counts)
    slots = WEEK_NS // bar_ns
    first = ((start - MONDAY_NS) // bar_ns) % slots
    open_slot = week.open[(first + positions) % slots]
    offsets = np.cumsum(counts) - counts
    open_count = np.add.reduceat(open_slot.astype(np.int64), offsets)
    inside = (open_count == counts) & (counts * bar_ns < DAY_NS)
    hole = inside if closure_after is None else inside & (counts <= closure_after)
    keep = np.repeat(hole, counts)
    holes = start + positions[keep].astype(np.int64) * bar_ns
    closures = []
    for index in np.flatnonzero(~hole & (open_count > 0)).tolist():
        mine = positions[offsets[index] : offsets[index] + counts[index]]
        opened = mine[open_slot[offsets[index] : offsets[index] + counts[index]]]
        closures.append(
            Closure(
                int(start + opened[0] * bar_ns),
                int(start + (opened[-1] + 1) * bar_ns),
                int(open_count[index]),
            )
        )
    return holes, tuple(closures)


def measured_bars_per_year(timestamps: np.ndarray, bar_ns: int) -> float:
    """Bars present divided by the years from the first open to the last bar's close."""
    if timestamps.ndim != 1 or timestamps.size == 0:
        raise ValueError("sessions annualisation needs a non-empty 1-D array of bar open times")
    if timestamps.size > 1 and not np.all(np.diff(timestamps) > 0):
        raise ValueError("bar open times must be strictly increasing")
    span_years = (int(timestamps[-1]) + bar_ns - int(timestamps[0])) / YEAR_NS
    return timestamps.size / span_years


def bars_per_year(timestamps: np.ndarray, bar_ns: int, calendar: str) -> float:
    """A 24/7 calendar has YEAR / bar bars a year whatever its closures; sessions count theirs."""
    if calendar == "continuous":
        return YEAR_NS / bar_ns
    return measured_bars_per_year(np.asarray(timestamps, dtype=np.int64), bar_ns)


def infer_calendar(timestamps: np.ndarray, bar_ns: int) -> tuple[str, Inferred]:
    """data.calendar: auto for sorted bar open times (a store's timeline, say)."""
    start, end = int(timestamps[0]), int(timestamps[-1])
    return _infer_calendar(timestamps, start, end, bar_ns, weekly(timestamps, start, end, bar_ns))


def _infer_calendar(
    union: np.ndarray, start: int, end: int, bar_ns: int, week: Week | None
) -> tuple[str, Inferred]:
    n_grid = (end - start) // bar_ns + 1
    coverage = int(((union - start) % bar_ns == 0).sum()) / n_grid
    filled = f"{_percent(coverage)} of the {format_duration(bar_ns)} slots from the first to the last bar have one"
    if week is not None and week.usable:
        if week.closed.any():
            reason = (
                f"closed at regular times of the week, open {describe_sessions(week)}; {filled}"
            )
            return "sessions", Inferred(
                "data.calendar", "sessions", reason, "data.calendar=continuous"
            )
        reason = f"no time of the week is regularly without bars; {filled}"
        return "continuous", Inferred(
            "data.calendar", "continuous", reason, "data.calendar=sessions"
        )
    why = "less than two weeks of bars" if week is not None else "the bar does not divide a week"
    calendar = "continuous" if coverage >= SHORT_DATA_COVERAGE else "sessions"
    other = "sessions" if calendar == "continuous" else "continuous"
    reason = (
        f"{filled} ({why} to read a weekly pattern; {_percent(SHORT_DATA_COVERAGE)} or more "
        "means continuous)"
    )
    return calendar, Inferred("data.calendar", calendar, reason, f"data.calendar={other}")


def describe_sessions(week: Week) -> str:
    """Open hours per weekday in UTC, equal days grouped: 'Mon-Fri 14:30-21:00 UTC'."""
    slots_per_day = DAY_NS // week.bar_ns if DAY_NS % week.bar_ns == 0 else 0
    if slots_per_day <= 1:  # daily (or longer) bars: the weekdays that have them
        days = sorted(
            {
                int((week.offset_ns + i * week.bar_ns) // DAY_NS) % 7
                for i in np.flatnonzero(week.open)
            }
        )
        return _group([(day, "") for day in days]) or "never"
    by_day: list[tuple[int, str]] = []
    for day in range(7):
        opened = week.open[day * slots_per_day : (day + 1) * slots_per_day]
        runs = _runs(opened)
        if runs:
            text = ", ".join(
                f"{_clock(week.offset_ns + a * week.bar_ns)}-{_clock(week.offset_ns + b * week.bar_ns)}"
                for a, b in runs
            )
            by_day.append((day, text))
    return (_group(by_day) + " UTC") if by_day else "never"


def _runs(opened: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], opened.astype(np.int8), [0]]))
    return list(
        zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True)
    )


def _clock(ns: int) -> str:
    minutes = ns // 60_000_000_000
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _group(days: list[tuple[int, str]]) -> str:
    """Consecutive weekdays with the same hours become one 'Mon-Thu 00:00-24:00' entry; the
    week is told from the first open day after a closed one (forex: Sun 22:00-24:00, ...)."""
    open_days = {day for day, _ in days}
    after_closed = [day for day, _ in days if (day - 1) % 7 not in open_days]
    if after_closed:
        first = after_closed[0]
        days = sorted(days, key=lambda item: (item[0] - first) % 7)
        days = [((day - first) % 7 + first, hours) for day, hours in days]
    parts: list[str] = []
    index = 0
    while index < len(days):
        last = index
        while (
            last + 1 < len(days)
            and days[last + 1][0] == days[last][0] + 1
            and days[last + 1][1] == days[index][1]
        ):
            last += 1
        first_day, hours = days[index]
        name = (
            WEEKDAYS[first_day % 7]
            if last == index
            else f"{WEEKDAYS[first_day % 7]}-{WEEKDAYS[days[last][0] % 7]}"
        )
        parts.append(f"{name} {hours}".strip())
        index = last + 1
    return ", ".join(parts)


def _percent(share: float) -> str:
    text = f"{100 * share:.1f}"
    if text == "100.0" and share < 1:
        text = f"{100 * share:.3f}".rstrip("0")
    return f"{text} %"
