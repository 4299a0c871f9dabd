"""Walk-forward windows: calendar train / validation / test folds over a feature store's bars.

Test windows tile the timeline: fold k+1's test starts where fold k's ends, so the stitched
out-of-sample record has no holes. Any gap between parts comes out of the end of the part before
it (train, validation), never the start of a test window. Months and years are calendar lengths
(365.25 days a year), so the windows are the same for 24/7 and exchange-hours data; a boundary
time maps to the first bar opening at or after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.bar_range import BarRange
from core.config import Config, WalkForwardConfig
from core.data.timestamps import format_utc
from core.errors import UserError
from core.features.matrix import lookback_bars
from core.fold_sizing import Sized, auto_keys, size_windows, smallest_span_bars
from core.units import MONTH_NS, YEAR_NS, format_duration

MIN_PART_BARS = 2  # an episode needs a decision bar and the bar that prices it
# The gap the contracts need between two parts (walk_forward.embargo_bars: auto). The agent
# decides at the close of bar t and its reward is priced at bar t+1 (the execution horizon, one
# bar); no reward is a forward-looking label. A part [start, stop) decides at start .. stop-2 and
# its last reward reads bar stop-1, inside the part, so the next part may start at stop: no
# reward computed in one part reads a bar of the next. Features are causal, so a part's first
# observations may and should read the bars before it.
CONTRACT_GAP_BARS = 0


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold as bar ranges of the store; embargo bars lie between the parts."""

    index: int
    train: BarRange
    validation: BarRange
    test: BarRange
    embargo_bars: int

    def parts(self) -> dict[str, BarRange]:
        return {"train": self.train, "validation": self.validation, "test": self.test}

    @property
    def test_walk(self) -> BarRange:
        """The bars the test walk reads: its first decision is made at the close of the bar
        before the window, so every test bar carries exactly one return (the windows tile, and
        the stitched record has no hole at a fold boundary). That decision reads nothing later
        than the bar it is made at; the first return is earned over the window's first bar."""
        return BarRange(self.test.start - 1, self.test.stop)

    def to_json(self, timestamps: np.ndarray, bar_ns: int) -> dict:
        """Bars and UTC times per part, so a run folder records exactly what each fold saw.

        `first` / `last` are the open times of the first and last bar; `end` is when the last
        bar closes (the exclusive end of the part).
        """
        parts = {name: _part_json(part, timestamps, bar_ns) for name, part in self.parts().items()}
        return {"index": self.index, **parts, "embargo_bars": self.embargo_bars}


def _part_json(part: BarRange, timestamps: np.ndarray, bar_ns: int) -> dict:
    last = int(timestamps[part.stop - 1])
    return {
        "start": part.start,
        "stop": part.stop,
        "bars": len(part),
        "first": format_utc(int(timestamps[part.start])),
        "last": format_utc(last),
        "end": format_utc(last + bar_ns),
    }


def embargo_bars(config: Config, bar_ns: int) -> int:
    """Bars cut from the end of train and of validation: auto = what the contracts need,
    lookback = the longest feature look-back (a wider, optional purge), or a number."""
    wanted = config.walk_forward.embargo_bars
    if wanted == "auto":
        return CONTRACT_GAP_BARS
    if wanted == "lookback":
        return lookback_bars(config.features, bar_ns)
    return int(wanted)


@dataclass(frozen=True)
class Coverage:
    """How much of the out-of-sample time the test windows cover (the rest is named, not hidden)."""

    tested: int  # bars in the test windows
    available: int  # bars from the first test bar to the end of the data
    untested_first: int | None  # first bar no test window covers (None: every bar is tested)
    why_untested: str

    @property
    def fraction(self) -> float:
        return self.tested / self.available if self.available else 0.0

    def describe(self, timestamps: np.ndarray) -> str:
        text = (
            f"test windows cover {self.tested:,} of {self.available:,} bars after the first "
            f"train + validation ({self.fraction:.1%})"
        )
        if self.untested_first is None:
            return text
        return (
            f"{text}; the last {len(timestamps) - self.untested_first:,} bar(s) from "
            f"{format_utc(int(timestamps[self.untested_first]))} are not tested: {self.why_untested}"
        )


def coverage(folds: list[Fold], timestamps: np.ndarray, config: Config) -> Coverage:
    first, end = folds[0].test.start, folds[-1].test.stop
    tested = sum(len(fold.test) for fold in folds)
    if end >= len(timestamps):
        return Coverage(tested, len(timestamps) - first, None, "")
    limit = config.walk_forward.max_folds
    why = (
        f"walk_forward.max_folds={limit} stops the folds there"
        if limit is not None and len(folds) == limit
        else f"a final window shorter than walk_forward.test_months={_test_months(folds, config)}"
    )
    return Coverage(tested, len(timestamps) - first, end, why)


def _test_months(folds: list[Fold], config: Config) -> str:
    months = config.walk_forward.test_months
    return str(months) if months != "auto" else "auto (the test window the folds have)"


def _span_ns(walk: WalkForwardConfig) -> int:
    return int(walk.train_years * YEAR_NS + (walk.validation_months + walk.test_months) * MONTH_NS)


def split(timestamps: np.ndarray, bar_ns: int, config: Config) -> list[Fold]:
    """Walk-forward folds over a store's bar open times (feature warm-up rows already dropped).

    Fold i's test window starts at T0 + train_years + validation_months + i * test_months, where
    T0 is the open of the first usable bar (env.window - 1: an observation needs window - 1 rows
    before it), and lasts test_months, so the test windows tile. Validation is the
    validation_months before it, train the train_years before that (rolling) or everything since
    T0 (expanding). The gap (embargo_bars) comes out of the end of train and of validation.
    Folds are added until a test window would run past the data or a part is under 2 bars.
    """
    sized = sized_config(timestamps, bar_ns, config)
    folds = _fit(timestamps, bar_ns, sized, limit=config.walk_forward.max_folds)
    if not folds:
        raise UserError(_no_fold_message(timestamps, bar_ns, config, feature_warmup=0))
    return folds


def check_length(timestamps: np.ndarray, bar_ns: int, config: Config, warmup_bars: int) -> None:
    """Before the store is built: `split` must find one fold once the feature warm-up is dropped."""
    usable = timestamps[warmup_bars:]
    if not _fit(usable, bar_ns, sized_config(usable, bar_ns, config), limit=1):
        raise UserError(_no_fold_message(timestamps, bar_ns, config, feature_warmup=warmup_bars))


def sized_windows(timestamps: np.ndarray, bar_ns: int, config: Config) -> Sized:
    """The walk-forward windows for these bars: `auto` keys sized to the data (core.fold_sizing),
    with a note each for the plan."""

    def folds_of(walk: WalkForwardConfig) -> int:
        candidate = config.model_copy(update={"walk_forward": walk})
        return len(_fit(timestamps, bar_ns, candidate, limit=None))

    first = min(config.env.window - 1, len(timestamps))
    return size_windows(
        config.walk_forward, timestamps[first:], bar_ns, config.env.window, folds_of
    )


def sized_config(timestamps: np.ndarray, bar_ns: int, config: Config) -> Config:
    """`config` with its walk-forward windows as numbers (the data's own, where auto)."""
    if not auto_keys(config.walk_forward):
        return config
    return config.model_copy(
        update={"walk_forward": sized_windows(timestamps, bar_ns, config).walk}
    )


def _fit(timestamps: np.ndarray, bar_ns: int, config: Config, limit: int | None) -> list[Fold]:
    folds: list[Fold] = []
    embargo = embargo_bars(config, bar_ns)
    while limit is None or len(folds) < limit:
        fold = _fold(timestamps, bar_ns, config, len(folds), embargo)
        if fold is None or _short_part(fold, part_minimum(config)) is not None:
            break
        folds.append(fold)
    return folds


def _fold(
    timestamps: np.ndarray, bar_ns: int, config: Config, index: int, embargo: int
) -> Fold | None:
    """Fold `index` by the calendar, or None when its test window ends after the data."""
    first = config.env.window - 1
    if first >= len(timestamps):
        return None
    bounds = _boundaries(int(timestamps[first]), index, config.walk_forward)
    if bounds[-1] > int(timestamps[-1]) + bar_ns:
        return None
    start, train_end, validation_end, test_end = (
        int(i) for i in np.searchsorted(timestamps, np.array(bounds, dtype=np.int64))
    )
    return Fold(
        index=index,
        train=BarRange(max(start, first), train_end - embargo),
        validation=BarRange(train_end, validation_end - embargo),
        test=BarRange(validation_end, test_end),
        embargo_bars=embargo,
    )


def _boundaries(origin: int, index: int, walk: WalkForwardConfig) -> tuple[int, int, int, int]:
    """Times where fold `index`'s train starts and its train, validation and test end; test
    windows move by test_months, so each starts where the one before ended."""
    shift = index * walk.test_months * MONTH_NS
    train_start = origin + shift if walk.mode == "rolling" else origin
    train_end = origin + shift + round(walk.train_years * YEAR_NS)
    validation_end = train_end + walk.validation_months * MONTH_NS
    return train_start, train_end, validation_end, validation_end + walk.test_months * MONTH_NS


def part_minimum(config: Config) -> int:
    """The fewest bars a train, validation or test window may hold: an episode's two bars, and
    never fewer than the env's look-back (env.window: the bars one observation spans)."""
    return max(MIN_PART_BARS, config.env.window)


def _short_part(fold: Fold, minimum: int) -> str | None:
    """The first part under `minimum` bars; a gap may pull a stop before its start."""
    short = [name for name, p in fold.parts().items() if p.stop - p.start < minimum]
    return short[0] if short else None


def _no_fold_message(
    timestamps: np.ndarray, bar_ns: int, config: Config, feature_warmup: int
) -> str:
    """Why not even fold 0 fits: the data is too short, or the embargo eats a part."""
    embargo = embargo_bars(config, bar_ns)
    usable = timestamps[feature_warmup:]
    sized = sized_config(usable, bar_ns, config)
    fold = _fold(usable, bar_ns, sized, 0, embargo)
    if fold is None:
        if len(auto_keys(config.walk_forward)) == 3:
            return _too_short_for_auto(timestamps, bar_ns, config, feature_warmup)
        return _too_short_message(timestamps, bar_ns, sized, feature_warmup)
    return _part_too_short_message(fold, usable, bar_ns, part_minimum(config))


def _too_short_for_auto(
    timestamps: np.ndarray, bar_ns: int, config: Config, feature_warmup: int
) -> str:
    """Not even the smallest auto windows fit: the bars needed and given, and what would fit."""
    warmup = feature_warmup + config.env.window - 1
    usable = timestamps[warmup:]
    months = _years(usable, bar_ns) * 12
    span = max(_years(timestamps, bar_ns) * 12, 1e-9)
    per_month = len(timestamps) / span
    needed = warmup + smallest_span_bars(per_month, config.env.window)
    fits = math.floor((months - 2) / 12 * 100) / 100  # 1 mo validation + 1 mo test left over
    fix = (
        f"or, below the auto minimums, --set walk_forward.train_years={fits:g} --set "
        "walk_forward.validation_months=1 --set walk_forward.test_months=1 fits this data"
        if fits >= 0.01
        else "no walk_forward setting fits: its windows are whole months (1 month of "
        "validation and 1 of test at least), longer than this data"
    )
    return (
        f"dataset too short for any walk-forward fold: the smallest auto windows (whole months, "
        f"at least 20 bars per validation and test window and 80 per train window, train 4 test "
        f"windows) need about {needed:,} bars of {format_duration(bar_ns)} with the {warmup:,} "
        f"warm-up bars; the dataset has {len(timestamps):,} ({_dates(timestamps)}, "
        f"{months:.1f} months after warm-up)\n"
        f"  fix: give at least {needed:,} bars of history, {fix}"
    )


def _too_short_message(
    timestamps: np.ndarray, bar_ns: int, config: Config, feature_warmup: int
) -> str:
    walk = config.walk_forward
    window = config.env.window - 1
    warmup = feature_warmup + window
    usable = timestamps[warmup:]
    have_years = _years(usable, bar_ns)
    bars_per_year = len(timestamps) / max(_years(timestamps, bar_ns), 1e-9)
    needed_bars = warmup + math.ceil(_span_ns(walk) / YEAR_NS * bars_per_year)
    why = (
        f"{feature_warmup:,} feature look-back + {window:,} for env.window"
        if feature_warmup
        else "env.window - 1"
    )
    return (
        f"dataset too short for the configured walk-forward windows: one fold needs "
        f"{walk.train_years:g} y train + {walk.validation_months} mo validation + "
        f"{walk.test_months} mo test (gaps of {embargo_bars(config, bar_ns):,} bars come out of the "
        f"end of train and validation), after {warmup:,} warm-up bars ({why}) — about "
        f"{needed_bars:,} bars of {format_duration(bar_ns)}; the dataset has {len(timestamps):,} ({len(usable):,} after "
        f"warm-up; {_dates(timestamps)}, {have_years:.2f} y after warm-up)\n"
        "  fix: give more history, or shorten walk_forward.train_years / "
        f"walk_forward.validation_months / walk_forward.test_months ({_example(walk, have_years)})"
    )


def _example(walk: WalkForwardConfig, have_years: float) -> str:
    """A train length that fits the data, so the fix can be pasted as is."""
    fits = math.floor((have_years - (walk.validation_months + walk.test_months) / 12) * 10) / 10
    if fits >= 0.1:
        return f"e.g. --set walk_forward.train_years={fits:g} fits this data"
    return "validation + test alone are longer than the data after warm-up"


def _part_too_short_message(fold: Fold, timestamps: np.ndarray, bar_ns: int, minimum: int) -> str:
    name = _short_part(fold, minimum) or "train"
    part = fold.parts()[name]
    embargo = 0 if name == "test" else fold.embargo_bars
    bars = part.stop - part.start
    left = f", {max(bars, 0):,} after the embargo of {embargo:,} bars" if embargo else ""
    why = (
        "env.window, the bars one observation looks back"
        if minimum > MIN_PART_BARS
        else "a decision bar and the bar that prices it"
    )
    return (
        f"walk-forward fold 0 does not fit: its {name} window holds {bars + embargo:,} "
        f"bar(s) of {format_duration(bar_ns)}{left}; at least {minimum} are needed ({why}; "
        f"data {_dates(timestamps)})\n"
        "  fix: lower walk_forward.embargo_bars (auto = the gap the contracts need, lookback = "
        "the longest feature look-back), lengthen walk_forward.validation_months / "
        "walk_forward.test_months, lower env.window, or fill the gap in the data"
    )


def _years(timestamps: np.ndarray, bar_ns: int) -> float:
    return (int(timestamps[-1]) + bar_ns - int(timestamps[0])) / YEAR_NS if len(timestamps) else 0.0


def _dates(timestamps: np.ndarray) -> str:
    if not len(timestamps):
        return "no bars"
    return f"{format_utc(int(timestamps[0]))} to {format_utc(int(timestamps[-1]))}"
