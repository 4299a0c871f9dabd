"""core.units: one definition of each unit, and durations printed as configs spell them."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import folds, units
from core.data.timestamps import parse_duration
from core.envs import market, reward
from core.evaluation import metrics
from core.features import matrix
from core.hardware import gpus
from core.units import (
    DAY_NS,
    GIB,
    HOUR_NS,
    MINUTE_NS,
    MONTH_NS,
    SECOND_NS,
    WEEK_NS,
    YEAR_NS,
    format_duration,
)

UNITS = {"s": SECOND_NS, "min": MINUTE_NS, "h": HOUR_NS, "d": DAY_NS}


def test_constants_match_parse_duration_and_the_calendar() -> None:
    for text, ns in {**UNITS, "7d": WEEK_NS}.items():
        assert parse_duration(f"1{text}" if text in UNITS else text, "unit") == ns
    assert YEAR_NS == int(365.25 * 86_400e9) == 31_557_600_000_000_000
    assert MONTH_NS == YEAR_NS // 12 == 2_629_800_000_000_000
    assert GIB == 1024**3
    assert all(isinstance(value, int) for value in (*UNITS.values(), WEEK_NS, YEAR_NS, MONTH_NS))


def test_every_layer_uses_the_same_constants() -> None:
    assert folds.YEAR_NS is units.YEAR_NS and folds.MONTH_NS is units.MONTH_NS
    assert market.YEAR_NS is metrics.YEAR_NS is units.YEAR_NS
    assert reward.DAY_NS is matrix.DAY_NS is units.DAY_NS and matrix.WEEK_NS is units.WEEK_NS
    assert gpus.GIB is units.GIB


@given(st.sampled_from(sorted(UNITS)), st.integers(1, 10**5))
def test_whole_units_print_in_the_largest_unit_and_parse_back(suffix: str, count: int) -> None:
    ns = count * UNITS[suffix]
    text = format_duration(ns)
    assert parse_duration(text, "data.bar") == ns
    number, unit = re.fullmatch(r"(\d+)([a-z]+)", text).groups()
    assert int(number) * UNITS[unit] == ns and UNITS[unit] >= UNITS[suffix]
    assert not any(size > UNITS[unit] and ns % size == 0 for size in UNITS.values())


@given(st.integers(1, 2**53))  # beyond 2**53 (104 days in ns) pandas parses through a float
def test_any_positive_duration_round_trips(ns: int) -> None:
    assert parse_duration(format_duration(ns), "data.bar") == ns


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (SECOND_NS, "1s"),
        (90 * SECOND_NS, "90s"),
        (60 * SECOND_NS, "1min"),
        (15 * MINUTE_NS, "15min"),
        (4 * HOUR_NS, "4h"),
        (36 * HOUR_NS, "36h"),
        (DAY_NS, "1d"),
        (WEEK_NS, "7d"),
        (1_500_000_000, "1500000000ns"),
        (0, "0ns"),
    ],
)
def test_format_duration_examples(ns: int, text: str) -> None:
    assert format_duration(ns) == text
    assert parse_duration(text, "data.bar", allow_zero=True) == ns


def test_annualisation_labels_bars_with_format_duration() -> None:
    result = metrics.annualisation(np.array([], dtype=np.int64), 4 * HOUR_NS, "continuous")
    assert "4h bars" in result.description
    assert result.periods_per_year == YEAR_NS / (4 * HOUR_NS) == 2191.5
