"""Walk-forward windows: calendar train / validation / test folds over a feature store's bars.

Months and years are calendar lengths (365.25 days a year), so the windows are the same for
24/7 and exchange-hours data; a boundary time maps to the first bar opening at or after it.
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
from core.units import MONTH_NS, YEAR_NS, format_duration

MIN_PART_BARS = 2  # an episode needs a decision bar and the bar that prices it


@dataclass(frozen=True)
class Need:
    """Time one fold spans (train + validation + test) and the bars around it."""

    span_ns: int
    embargo_bars: int
    warmup_bars: int


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
    wanted = config.walk_forward.embargo_bars
    return lookback_bars(config.features, bar_ns) if wanted == "auto" else int(wanted)


def fold_need(config: Config, bar_ns: int) -> Need:
    span = _span_ns(config.walk_forward)
    return Need(span, embargo_bars(config, bar_ns), lookback_bars(config.features, bar_ns))


def _span_ns(walk: WalkForwardConfig) -> int:
    return int(walk.train_years * YEAR_NS + (walk.validation_months + walk.test_months) * MONTH_NS)


def split(timestamps: np.ndarray, bar_ns: int, config: Config) -> list[Fold]:
    """Walk-forward folds over a store's bar open times (feature warm-up rows already dropped).

    Fold i's train window ends at T0 + i * step + train_years, where T0 is the open of the first
    usable bar (env.window - 1: an observation needs window - 1 rows before it). Rolling train
    windows start at T0 + i * step, expanding ones at T0. Validation and test keep their
    calendar end; the embargo bars come out of their start, so every fold's test window sits on
    the same calendar grid and consecutive test windows never overlap (step >= test).
    Folds are added until one would run past the data or leave a part under 2 bars.
    """
    folds = _fit(timestamps, bar_ns, config, limit=config.walk_forward.max_folds)
    if not folds:
        raise UserError(_no_fold_message(timestamps, bar_ns, config, feature_warmup=0))
    return folds


def check_length(timestamps: np.ndarray, bar_ns: int, config: Config, warmup_bars: int) -> None:
    """Before the store is built: `split` must find one fold once the feature warm-up is dropped."""
    if not _fit(timestamps[warmup_bars:], bar_ns, config, limit=1):
        raise UserError(_no_fold_message(timestamps, bar_ns, config, feature_warmup=warmup_bars))


def _fit(timestamps: np.ndarray, bar_ns: int, config: Config, limit: int | None) -> list[Fold]:
    folds: list[Fold] = []
    embargo = embargo_bars(config, bar_ns)
    while limit is None or len(folds) < limit:
        fold = _fold(timestamps, bar_ns, config, len(folds), embargo)
        if fold is None or not _parts_long_enough(fold):
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
        train=BarRange(max(start, first), train_end),
        validation=BarRange(train_end + embargo, validation_end),
        test=BarRange(validation_end + embargo, test_end),
        embargo_bars=embargo,
    )


def _boundaries(origin: int, index: int, walk: WalkForwardConfig) -> tuple[int, int, int, int]:
    """Times where fold `index`'s train starts and its train, validation and test end."""
    shift = index * walk.step_months * MONTH_NS
    train_start = origin + shift if walk.mode == "rolling" else origin
    train_end = origin + shift + round(walk.train_years * YEAR_NS)
    validation_end = train_end + walk.validation_months * MONTH_NS
    return train_start, train_end, validation_end, validation_end + walk.test_months * MONTH_NS


def _parts_long_enough(fold: Fold) -> bool:
    return _short_part(fold) is None


def _short_part(fold: Fold) -> str | None:
    """The first part under MIN_PART_BARS; an embargo may push a start past its stop."""
    short = [name for name, p in fold.parts().items() if p.stop - p.start < MIN_PART_BARS]
    return short[0] if short else None


def _no_fold_message(
    timestamps: np.ndarray, bar_ns: int, config: Config, feature_warmup: int
) -> str:
    """Why not even fold 0 fits: the data is too short, or the embargo eats a part."""
    embargo = embargo_bars(config, bar_ns)
    fold = _fold(timestamps[feature_warmup:], bar_ns, config, 0, embargo)
    if fold is None:
        return _too_short_message(timestamps, bar_ns, config, feature_warmup)
    return _part_too_short_message(fold, timestamps[feature_warmup:], bar_ns)


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
        f"{walk.test_months} mo test (embargoes of {embargo_bars(config, bar_ns):,} bars come out of the "
        f"start of validation and test), after {warmup:,} warm-up bars ({why}) — about "
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


def _part_too_short_message(fold: Fold, timestamps: np.ndarray, bar_ns: int) -> str:
    name = _short_part(fold) or "train"
    part = fold.parts()[name]
    embargo = 0 if name == "train" else fold.embargo_bars
    bars = part.stop - part.start
    left = f", {max(bars, 0):,} after the embargo of {embargo:,} bars" if embargo else ""
    return (
        f"walk-forward fold 0 does not fit: its {name} window holds {bars + embargo:,} "
        f"bar(s) of {format_duration(bar_ns)}{left}; at least {MIN_PART_BARS} are needed "
        f"(data {_dates(timestamps)})\n"
        "  fix: lower walk_forward.embargo_bars (auto = the longest feature look-back), "
        "lengthen walk_forward.validation_months / walk_forward.test_months, "
        "or fill the gap in the data"
    )


def _years(timestamps: np.ndarray, bar_ns: int) -> float:
    return (int(timestamps[-1]) + bar_ns - int(timestamps[0])) / YEAR_NS if len(timestamps) else 0.0


def _dates(timestamps: np.ndarray) -> str:
    if not len(timestamps):
        return "no bars"
    return f"{format_utc(int(timestamps[0]))} to {format_utc(int(timestamps[-1]))}"
