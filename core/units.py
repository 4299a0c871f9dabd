"""Time and size units, defined once so every layer counts a year (or a GiB) the same way.

Standard library only: the planner and the thread limits import it before numpy may load.
"""

from __future__ import annotations

import re

SECOND_NS = 1_000_000_000
MINUTE_NS = 60 * SECOND_NS
HOUR_NS = 60 * MINUTE_NS
DAY_NS = 24 * HOUR_NS
WEEK_NS = 7 * DAY_NS
YEAR_NS = 1461 * DAY_NS // 4  # 365.25 days: calendar years averaged over the leap cycle
MONTH_NS = YEAR_NS // 12
GIB = 2**30

_DURATION_UNITS = (("d", DAY_NS), ("h", HOUR_NS), ("min", MINUTE_NS), ("s", SECOND_NS))
# A span of time in a config (30d, 2w, 12h, 90min): read here with a regular expression rather
# than pandas' Timedelta, because config validation runs before numpy or pandas may load.
SPAN_PATTERN = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(w|d|h|min)")
_SPAN_UNITS = {"w": WEEK_NS, "d": DAY_NS, "h": HOUR_NS, "min": MINUTE_NS}


def span_ns(text: str) -> int | None:
    """'30d' -> nanoseconds; None when `text` is not a positive span (weeks to minutes)."""
    match = SPAN_PATTERN.fullmatch(text.strip())
    if match is None:
        return None
    ns = round(float(match.group(1)) * _SPAN_UNITS[match.group(2)])
    return ns if ns > 0 else None


def format_duration(ns: int) -> str:
    """The largest whole unit (1d, 4h, 30min, 5s, else ns), in the syntax parse_duration reads,
    so a message can suggest a value the user pastes into a config."""
    for suffix, size in _DURATION_UNITS:
        if ns and ns % size == 0:
            return f"{ns // size}{suffix}"
    return f"{ns}ns"
