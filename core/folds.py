"""Walk-forward windows: how much history one train / validation / test fold needs.

Months and years are calendar lengths (365.25 days a year), so the need is the same for 24/7
and exchange-hours data; the bar count is reported for the user's own bar spacing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.config import Config
from core.errors import UserError
from core.features import lookback_bars
from core.timestamps import format_duration, format_utc

DAY_NS = 86_400 * 1_000_000_000
YEAR_NS = int(365.25 * DAY_NS)
MONTH_NS = YEAR_NS // 12


@dataclass(frozen=True)
class Need:
    """Time one fold spans (train + validation + test) and the bars around it."""

    span_ns: int
    embargo_bars: int
    warmup_bars: int


def embargo_bars(config: Config, bar_ns: int) -> int:
    wanted = config.walk_forward.embargo_bars
    return lookback_bars(config.features, bar_ns) if wanted == "auto" else int(wanted)


def fold_need(config: Config, bar_ns: int) -> Need:
    walk = config.walk_forward
    span = int(walk.train_years * YEAR_NS + (walk.validation_months + walk.test_months) * MONTH_NS)
    return Need(span, embargo_bars(config, bar_ns), lookback_bars(config.features, bar_ns))


def check_length(timestamps: np.ndarray, bar_ns: int, config: Config, warmup_bars: int) -> None:
    """One fold must fit after the feature warm-up; otherwise say what is needed and what to change."""
    need = fold_need(config, bar_ns)
    usable = timestamps[warmup_bars:]
    # Two embargoes: between train and validation, and between validation and test.
    needed_end = (usable[0] if len(usable) else timestamps[-1]) + need.span_ns
    have_span = int(usable[-1] + bar_ns - usable[0]) if len(usable) else 0
    embargo_span = 2 * need.embargo_bars * bar_ns
    if len(usable) and usable[-1] + bar_ns >= needed_end + embargo_span:
        return
    walk = config.walk_forward
    bars_per_year = len(timestamps) / max((timestamps[-1] + bar_ns - timestamps[0]) / YEAR_NS, 1e-9)
    needed_bars = int(warmup_bars + 2 * need.embargo_bars + need.span_ns / YEAR_NS * bars_per_year)
    raise UserError(
        f"dataset too short for the configured walk-forward windows: one fold needs "
        f"{walk.train_years:g} y train + {walk.validation_months} mo validation + "
        f"{walk.test_months} mo test + 2 embargoes of {need.embargo_bars:,} bars, after "
        f"{warmup_bars:,} warm-up bars — about {needed_bars:,} bars of {format_duration(bar_ns)}; "
        f"the dataset has {len(timestamps):,} ({format_utc(int(timestamps[0]))} to "
        f"{format_utc(int(timestamps[-1]))}, {have_span / YEAR_NS:.2f} y after warm-up)\n"
        "  fix: give more history, or shorten walk_forward.train_years / "
        "walk_forward.validation_months / walk_forward.test_months "
        "(e.g. --set walk_forward.train_years=2)"
    )
