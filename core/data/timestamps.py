"""Timestamps in, UTC nanoseconds out: format detection that refuses to guess, and durations.

Every series in Ploutos is indexed by int64 nanoseconds since the epoch, UTC. Naive inputs are
read in a configured timezone; aware ones keep their own offset. Day-first vs month-first is
never guessed: when every value fits both, the user is asked to say which.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from core.errors import UserError

TIMESTAMP_COLUMN_NAMES = (
    "timestamp",
    "datetime",
    "date_time",
    "time",
    "date",
    "open_time",
    "opentime",
    "gmt time",
    "local time",
    "ts",
)
UNNAMED_FIRST_COLUMN = "Unnamed: 0"  # how pandas reads the empty header df.to_csv() gives the index
EPOCH_UNITS = {"epoch_s": "s", "epoch_ms": "ms", "epoch_us": "us", "epoch_ns": "ns"}
FORMAT_CHOICES = "auto, iso, epoch_s, epoch_ms, epoch_us, epoch_ns or a strftime pattern"

# Epoch magnitudes that put the value between 1973 and 2286 in exactly one unit.
_EPOCH_RANGES = (("s", 1e8, 1e10), ("ms", 1e11, 1e13), ("us", 1e14, 1e16), ("ns", 1e17, 1e19))
_ISO = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}(:?\d{2})?)?$"
)
_NUMERIC_DATE = re.compile(r"^(\d{1,2})([./-])(\d{1,2})\2(\d{4})(?P<time>.*)$")
_YEAR_FIRST = re.compile(r"^(\d{4})([./])(\d{1,2})\2(\d{1,2})(?P<time>.*)$")
_TIME_PATTERNS = (
    (re.compile(r"^$"), ""),
    (re.compile(r"^[ T]\d{1,2}:\d{2}$"), " %H:%M"),
    (re.compile(r"^[ T]\d{1,2}:\d{2}:\d{2}$"), " %H:%M:%S"),
    (re.compile(r"^[ T]\d{1,2}:\d{2}:\d{2}\.\d{1,9}$"), " %H:%M:%S.%f"),
)


def find_timestamp_column(
    columns: Sequence[str],
    configured: str,
    where: str,
    key: str,
    first_values: pd.Series | None = None,
) -> str:
    """The timestamp column: the configured one, or the first well-known name (any case), or an
    unnamed first column whose values (`first_values`) look like times: pandas' index, as
    `df.to_csv()` writes it."""
    by_lower = {str(name).strip().lower(): str(name) for name in columns}
    if configured != "auto":
        return configured_column(
            columns, configured, where, key, f"set {key} to the column that holds the bar time"
        )
    for name in TIMESTAMP_COLUMN_NAMES:
        if name in by_lower:
            return by_lower[name]
    unnamed = bool(columns) and str(columns[0]) in (UNNAMED_FIRST_COLUMN, "")
    if unnamed and first_values is not None and _looks_like_times(first_values):
        return str(columns[0])
    index_note = (
        " (the unnamed first column holds no dates: a row number index, saved by df.to_csv() "
        "without the dates as index?)"
        if unnamed
        else ""
    )
    raise UserError(
        f"{where}: no timestamp column found among: {', '.join(map(str, columns))}{index_note}\n"
        f"  fix: set {key} to the column that holds the bar time "
        f"(auto looks for {', '.join(TIMESTAMP_COLUMN_NAMES)}, then an unnamed first column of "
        "dates)"
    )


def _looks_like_times(values: pd.Series) -> bool:
    """Dates or date-times as text, datetimes, or epoch numbers; not a row counter 0, 1, 2, ..."""
    if values.empty:
        return False
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values):
        return True
    if pd.api.types.is_numeric_dtype(values):
        try:
            _epoch_unit(values.to_numpy(dtype="float64"), "", "")
        except UserError:
            return False
        return True
    first = str(values.iloc[0]).strip()
    if not re.search(r"\d", first) or re.fullmatch(r"-?\d+(\.\d+)?", first):
        return False
    try:
        pd.Timestamp(first)
    except (ValueError, TypeError, OverflowError):
        return bool(_NUMERIC_DATE.match(first) or _YEAR_FIRST.match(first))
    return True


def check_timezone(name: str, key: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(
            f"{key} = {name!r} is not a known timezone\n"
            "  fix: use an IANA name such as UTC, Europe/London or America/New_York"
        ) from None
    return name


def parse_timestamps(
    values: pd.Series, fmt: str, timezone: str, where: str, keys: tuple[str, str]
) -> np.ndarray:
    """Parse a column to int64 UTC nanoseconds; `keys` name the format and timezone settings."""
    format_key, timezone_key = keys
    check_timezone(timezone, timezone_key)
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise UserError(
            f"{where}, row {row + 1}: the timestamp is empty\n  fix: fill or remove that row"
        )
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values):
        parsed = pd.DatetimeIndex(values)
    else:
        chosen = detect_format(values, where, format_key) if fmt == "auto" else fmt
        parsed = _parse_with(values, chosen, where, format_key)
    if parsed.tz is None:
        parsed = _localize(parsed, timezone, where, timezone_key)
    return parsed.tz_convert("UTC").as_unit("ns").asi8.copy()


def detect_format(values: pd.Series, where: str, key: str) -> str:
    """Name the one format every value fits, or refuse with the choices."""
    if pd.api.types.is_numeric_dtype(values):
        return _epoch_unit(values.to_numpy(dtype="float64"), where, key)
    text = values.astype(str).str.strip()
    sample = str(text.iloc[0])
    if text.str.fullmatch(r"-?\d+(\.\d+)?").all():
        return _epoch_unit(text.astype("float64").to_numpy(), where, key)
    if text.map(lambda s: bool(_ISO.match(s))).all():
        return "iso"
    year_first = text.str.extract(_YEAR_FIRST)
    if year_first.notna().all(axis=None):
        separator = year_first[1].iloc[0]
        return f"%Y{separator}%m{separator}%d" + _time_pattern(year_first["time"], where, key)
    parts = text.str.extract(_NUMERIC_DATE)
    if parts.notna().all(axis=None):
        return _day_or_month_first(parts, where, key)
    raise UserError(
        f"{where}: cannot recognise the timestamp format of values such as {sample!r}\n"
        f"  fix: set {key} to one of {FORMAT_CHOICES}"
    )


def _epoch_unit(numbers: np.ndarray, where: str, key: str) -> str:
    magnitude = np.abs(numbers)
    for unit, low, high in _EPOCH_RANGES:
        if ((magnitude >= low) & (magnitude < high)).all():
            return f"epoch_{unit}"
    raise UserError(
        f"{where}: numeric timestamps from {numbers.min():.0f} to {numbers.max():.0f} do not fit one "
        "epoch unit (seconds, milliseconds, microseconds or nanoseconds since 1970)\n"
        f"  fix: set {key} to epoch_s, epoch_ms, epoch_us or epoch_ns"
    )


def _day_or_month_first(parts: pd.DataFrame, where: str, key: str) -> str:
    first, separator, second = parts[0].astype(int), parts[1].iloc[0], parts[2].astype(int)
    time_part = _time_pattern(parts["time"], where, key)
    day_first = f"%d{separator}%m{separator}%Y{time_part}"
    month_first = f"%m{separator}%d{separator}%Y{time_part}"
    if (first > 12).any() and (second > 12).any():
        raise UserError(
            f"{where}: dates such as {_example(parts, first > 12)} and "
            f"{_example(parts, second > 12)} cannot share one day/month order\n"
            f"  fix: correct the file, or set {key} to the pattern of most rows"
        )
    if (first > 12).any():
        return day_first
    if (second > 12).any():
        return month_first
    raise UserError(
        f"{where}: dates such as {_example(parts, first > 0)} could be day-first or month-first, "
        "and no value settles it\n"
        f"  fix: set {key} to {day_first!r} (day first) or {month_first!r} (month first)"
    )


def _example(parts: pd.DataFrame, mask: pd.Series) -> str:
    row = parts[mask].iloc[0]
    return repr(f"{row[0]}{row[1]}{row[2]}{row[1]}{row[3]}{row['time']}")


def _time_pattern(times: pd.Series, where: str, key: str) -> str:
    for pattern, strftime in _TIME_PATTERNS:
        if times.map(lambda s, p=pattern: bool(p.match(s))).all():
            return strftime.replace(" ", "T", 1) if str(times.iloc[0]).startswith("T") else strftime
    raise UserError(
        f"{where}: the time of day in values such as {str(times.iloc[0]).strip()!r} has no single "
        f"format\n  fix: set {key} to a strftime pattern, e.g. '%d.%m.%Y %H:%M:%S.%f'"
    )


def _parse_with(values: pd.Series, fmt: str, where: str, key: str) -> pd.DatetimeIndex:
    try:
        if fmt in EPOCH_UNITS:
            numbers = pd.to_numeric(values, errors="raise")
            return pd.DatetimeIndex(pd.to_datetime(numbers, unit=EPOCH_UNITS[fmt], utc=True))
        if fmt == "iso":
            return _iso(values, where)
        if "%" not in fmt:
            raise UserError(
                f"{key} = {fmt!r} is not a timestamp format\n  fix: use one of {FORMAT_CHOICES}"
            )
        # An offset is part of a strftime pattern (%z) or absent: the pattern says which.
        return pd.DatetimeIndex(pd.to_datetime(values.astype(str).str.strip(), format=fmt))
    except (ValueError, TypeError, OverflowError) as exc:
        raise UserError(
            f"{where}: timestamps do not match the format {fmt!r}: {_first_line(exc)}\n"
            f"  fix: correct the values or set {key} (one of {FORMAT_CHOICES})"
        ) from None


def _iso(values: pd.Series, where: str) -> pd.DatetimeIndex:
    """ISO 8601, all with a UTC offset or all without: a mix would be aligned by accident."""
    text = values.astype(str).str.strip()
    aware = text.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True)
    if aware.any() and not aware.all():
        row = int(np.flatnonzero(~aware.to_numpy())[0])
        raise UserError(
            f"{where}, row {row + 1}: {text.iloc[row]!r} has no UTC offset while other rows do\n"
            "  fix: give every row an offset (or none, and set the timezone)"
        )
    if aware.all():
        return pd.DatetimeIndex(pd.to_datetime(text, format="ISO8601", utc=True))
    return pd.DatetimeIndex(pd.to_datetime(text, format="ISO8601"))


def _localize(parsed: pd.DatetimeIndex, timezone: str, where: str, key: str) -> pd.DatetimeIndex:
    try:
        return parsed.tz_localize(timezone, ambiguous="infer", nonexistent="raise")
    except (ValueError, TypeError) as exc:  # pytz/zoneinfo DST errors subclass ValueError
        raise UserError(
            f"{where}: naive timestamps read as {timezone} ({key}) do not exist or repeat at a "
            f"daylight-saving change: {_first_line(exc)}\n"
            f"  fix: set {key} to the timezone the file was written in (often UTC)"
        ) from None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def parse_duration(text: str, key: str, allow_zero: bool = False) -> int:
    """'1h', '4h', '1d', '15min' -> nanoseconds (pandas Timedelta syntax)."""
    try:
        value = pd.Timedelta(re.sub(r"(?<=\d)d$", "D", str(text).strip()))
    except ValueError:
        value = None
    if value is None or value < pd.Timedelta(0) or (value == pd.Timedelta(0) and not allow_zero):
        raise UserError(
            f"{key} = {text!r} is not a positive duration\n  fix: use e.g. 15min, 1h, 4h or 1d"
        )
    return int(value.value)


def format_utc(ns: int) -> str:
    return pd.Timestamp(int(ns), tz="UTC").strftime("%Y-%m-%d %H:%M UTC")


def configured_column(
    columns: Sequence[object], configured: str, where: str, key: str, fix: str
) -> str:
    """The column a setting names, matched without case or surrounding spaces; a name the file
    lacks is one message listing the file's columns."""
    by_lower = {str(name).strip().lower(): str(name) for name in columns}
    found = by_lower.get(configured.strip().lower())
    if found is None:
        raise UserError(
            f"{where}: no column named {configured!r} (from {key}); "
            f"columns are: {', '.join(map(str, columns))}\n  fix: {fix}"
        )
    return found
