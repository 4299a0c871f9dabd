"""Spot bars from Binance's public klines endpoint, saved as resumable per-symbol CSV files.

Why this shape: the one HTTP call sits behind a one-argument `Transport`, and the clock (`now`)
and waiting (`sleep`) are injected, so tests replay recorded answers with no network and no real
waiting. Files are only ever replaced whole (core.atomic), so a killed download leaves the last
flushed state on disk, never a half-written CSV.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import re
import shutil
import time

# The standard library is enough for one unauthenticated GET endpoint: no extra dependency.
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

from core.atomic import replacing, temp_files
from core.errors import UserError

DEFAULT_BASE_URL = "https://api.binance.com"
MIRROR_BASE_URL = "https://data-api.binance.vision"
KLINES_PATH = "/api/v3/klines"
MAX_PAGE = 1000  # the largest `limit` Binance accepts for klines
CSV_HEADER = ("timestamp", "open", "high", "low", "close", "volume")
API_KEY_ENV = "BINANCE_API_KEY"
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
INVALID_SYMBOL_CODE = -1121
BAD_KEY_CODES = (-2014, -2015)

_SECOND = 1000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
# Fixed-length Binance intervals, in milliseconds; "1M" (calendar months) cannot be paged by +step.
INTERVALS: dict[str, int] = {
    "1s": _SECOND,
    "1m": _MINUTE,
    "3m": 3 * _MINUTE,
    "5m": 5 * _MINUTE,
    "15m": 15 * _MINUTE,
    "30m": 30 * _MINUTE,
    "1h": _HOUR,
    "2h": 2 * _HOUR,
    "4h": 4 * _HOUR,
    "6h": 6 * _HOUR,
    "8h": 8 * _HOUR,
    "12h": 12 * _HOUR,
    "1d": _DAY,
    "3d": 3 * _DAY,
    "1w": 7 * _DAY,
}

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SYMBOL = re.compile(r"[A-Z0-9]{2,30}")
_DECIMAL = re.compile(r"\d+(\.\d+)?")
_TAIL_BYTES = 4096  # enough for the last few rows of a CSV this module wrote


# --------------------------------------------------------------------------- values and checks


def utc_now() -> datetime:
    """The default clock; injected elsewhere so tests pin time."""
    return datetime.now(timezone.utc)


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, exact (no float rounding), as Binance counts time."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    """The UTC moment `ms` milliseconds after the epoch."""
    return EPOCH + timedelta(milliseconds=ms)


def format_ms(ms: int) -> str:
    """The CSV timestamp: ISO 8601 in UTC, e.g. 2020-01-01T00:00:00+00:00."""
    return from_ms(ms).isoformat()


def parse_utc(text: str, what: str = "date") -> datetime:
    """A user-written date or time as an aware UTC datetime; naive input is taken as UTC."""
    cleaned = text.strip()
    if cleaned.endswith(("Z", "z")):  # Python 3.10's fromisoformat does not read "Z"
        cleaned = cleaned[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(cleaned)
    except ValueError:
        raise UserError(
            f"{what} {text!r} is not a date\n"
            "  fix: write YYYY-MM-DD (midnight UTC) or an ISO 8601 time such as "
            "2017-08-17T00:00:00+00:00"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def interval_ms(interval: str) -> int:
    """The length of one bar; rejects intervals that cannot be paged by a fixed step."""
    try:
        return INTERVALS[interval]
    except KeyError:
        raise UserError(
            f"unknown interval {interval!r}\n"
            f"  fix: use one of {', '.join(INTERVALS)} (1M is not supported: months differ "
            "in length)"
        ) from None


def check_symbol(symbol: str) -> str:
    """The symbol as Binance spells it; it also names a file, so nothing but letters and digits."""
    cleaned = symbol.strip().upper()
    if not _SYMBOL.fullmatch(cleaned):
        raise UserError(
            f"{symbol!r} is not a Binance symbol\n"
            "  fix: write the spot pair as Binance does, base then quote with no separator, "
            "e.g. BTCUSDT or ETHBTC"
        )
    return cleaned


def check_base_url(base_url: str) -> str:
    """An http(s) origin without the trailing slash, so URLs join cleanly."""
    parts = urllib.parse.urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserError(
            f"base URL {base_url!r} is not an http(s) address\n"
            f"  fix: use {DEFAULT_BASE_URL} or the market-data mirror {MIRROR_BASE_URL}"
        )
    return base_url.strip().rstrip("/")


def check_range(start: datetime, end: datetime) -> tuple[int, int]:
    """Start and (exclusive) end in milliseconds, after checking they make a window."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware datetimes")
    start_ms, end_ms = to_ms(start), to_ms(end)
    if start_ms < 0:
        raise UserError(f"start {start.isoformat()} is before 1970\n  fix: use a later --start")
    if start_ms >= end_ms:
        raise UserError(
            f"start {start.isoformat()} is not before end {end.isoformat()}\n"
            "  fix: pick a --start earlier than --end (which defaults to now)"
        )
    return start_ms, end_ms


# --------------------------------------------------------------------------- transport


@dataclass(frozen=True)
class Response:
    """What a transport got back; HTTP error statuses are responses too, not exceptions."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """A header value, matching the name without case, as HTTP does."""
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), None)


class Transport(Protocol):
    """One GET: return the answer for any HTTP status; raise OSError when the network fails."""

    def __call__(self, url: str) -> Response: ...


def _header_safe(value: str) -> bool:
    """Visible ASCII only: anything else would make http.client echo the value in its error."""
    return all(33 <= ord(char) < 127 for char in value)


class UrllibTransport:
    """The real transport. It alone holds the API key, so the key goes nowhere but the header."""

    def __init__(self, api_key: str | None = None, timeout_s: float = 30.0) -> None:
        if api_key and not _header_safe(api_key):
            raise UserError(
                f"{API_KEY_ENV} holds characters an HTTP header cannot carry (spaces, newlines "
                "or non-ASCII)\n"
                "  fix: set it to the key exactly as Binance shows it, or unset it: the public "
                "klines endpoint needs no key"
            )
        self._api_key = api_key or None
        self._timeout_s = timeout_s

    def __repr__(self) -> str:
        key = "set" if self._api_key else "unset"
        return f"UrllibTransport(api_key={key}, timeout_s={self._timeout_s})"

    def __call__(self, url: str) -> Response:
        headers = {"User-Agent": "ploutos-dataset-builder", "Accept": "application/json"}
        if self._api_key:
            headers["X-MBX-APIKEY"] = self._api_key
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as reply:
                return Response(reply.status, dict(reply.headers.items()), reply.read())
        except urllib.error.HTTPError as exc:
            headers_back = dict(exc.headers.items()) if exc.headers else {}
            return Response(exc.code, headers_back, exc.read())
        except http.client.HTTPException as exc:  # e.g. a truncated answer: retry like a reset
            raise ConnectionError(f"broken HTTP answer ({type(exc).__name__})") from exc


def transport_from_env(environ: Mapping[str, str] | None = None) -> UrllibTransport:
    """The real transport, sending BINANCE_API_KEY when set (never needed for public klines)."""
    source = os.environ if environ is None else environ
    return UrllibTransport(api_key=source.get(API_KEY_ENV, "").strip() or None)


# --------------------------------------------------------------------------- client


class DownloadError(Exception):
    """Binance kept failing (network, 5xx, a rate-limit ban): re-running later resumes."""


@dataclass(frozen=True)
class RateLimits:
    """How hard to push Binance: pause before the minute's weight runs out, retry blips."""

    weight_limit: int = 6000  # request weight per minute per IP (Binance spot's default)
    weight_fraction: float = 0.8  # pause for the next minute once this share is used
    max_attempts: int = 5  # per request, counting the first
    backoff_s: float = 1.0  # first wait after a 5xx or network error; doubles each time
    max_backoff_s: float = 60.0
    max_retry_after_s: float = 900.0  # a longer ban (HTTP 418) stops the run instead

    def __post_init__(self) -> None:
        if self.weight_limit < 1 or self.max_attempts < 1:
            raise ValueError(f"weight_limit and max_attempts must be at least 1: {self}")


@dataclass(frozen=True)
class Bar:
    """One kline, prices and volume kept as Binance's decimal strings (no float rounding)."""

    open_time_ms: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    close_time_ms: int

    def row(self) -> tuple[str, str, str, str, str, str]:
        """The CSV fields, in CSV_HEADER order."""
        return (
            format_ms(self.open_time_ms),
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
        )


def _bar(row: object, url: str) -> Bar:
    """One kline array checked field by field, so bad data fails here, not in training."""
    if not isinstance(row, list) or len(row) < 7:
        raise DownloadError(f"unexpected kline from {url}: {str(row)[:120]}")
    open_time, *values, close_time = row[:7]
    times_ok = all(type(t) is int for t in (open_time, close_time))
    values_ok = all(isinstance(v, str) and _DECIMAL.fullmatch(v) for v in values)
    if not (times_ok and values_ok):
        raise DownloadError(f"unexpected kline from {url}: {str(row)[:120]}")
    return Bar(open_time, *values, close_time)


def parse_klines(body: bytes, url: str) -> list[Bar]:
    """A klines answer as bars, checked to be strictly ascending."""
    try:
        rows = json.loads(body)
    except ValueError:
        raise DownloadError(f"unexpected answer from {url}: not JSON: {body[:120]!r}") from None
    if not isinstance(rows, list):
        raise DownloadError(f"unexpected answer from {url}: {body[:120]!r}")
    bars = [_bar(row, url) for row in rows]
    if any(a.open_time_ms >= b.open_time_ms for a, b in itertools.pairwise(bars)):
        raise DownloadError(f"unexpected answer from {url}: bars out of order")
    return bars


def _error_fields(body: bytes) -> tuple[int | None, str]:
    """Binance's {"code": ..., "msg": ...} error body, or the start of whatever came instead."""
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict) and "msg" in document:
        code = document.get("code")
        return (code if isinstance(code, int) else None), str(document["msg"])
    return None, body[:200].decode("utf-8", errors="replace").strip()


def _retry_after_s(response: Response) -> float | None:
    """Retry-After in seconds (Binance sends seconds); None when absent or unreadable."""
    raw = response.header("Retry-After")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


class KlinesClient:
    """Pages through /api/v3/klines politely: weight-aware pauses, retries, clear failures."""

    def __init__(
        self,
        transport: Transport,
        base_url: str = DEFAULT_BASE_URL,
        limits: RateLimits | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = utc_now,
        page_limit: int = MAX_PAGE,
    ) -> None:
        if not 1 <= page_limit <= MAX_PAGE:
            raise ValueError(f"page_limit must be 1..{MAX_PAGE}, got {page_limit}")
        self.transport = transport
        self.base_url = check_base_url(base_url)
        self.limits = limits or RateLimits()
        self.sleep = sleep
        self.now = now
        self.page_limit = page_limit

    def url(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> str:
        """The klines URL for bars opening in [start_ms, end_ms]; it carries no secret."""
        query = urllib.parse.urlencode(
            {
                "symbol": symbol,
                "interval": interval,
                "startTime": start_ms,
                "endTime": end_ms,
                "limit": self.page_limit,
            }
        )
        return f"{self.base_url}{KLINES_PATH}?{query}"

    def iter_pages(
        self, symbol: str, interval: str, start_ms: int, end_ms: int
    ) -> Iterator[list[Bar]]:
        """Closed bars opening in [start_ms, end_ms], one list per request, ascending, no repeats.

        Paging moves startTime to the bar after the last one received, so exchange outages
        (missing bars) are skipped, not retried; it stops at end_ms, an empty page or an open bar.
        """
        step = interval_ms(interval)
        cursor = start_ms
        while cursor <= end_ms:
            now_ms = to_ms(self.now())
            url = self.url(symbol, interval, cursor, end_ms)
            page = parse_klines(self.get(url, symbol).body, url)
            fresh = [bar for bar in page if cursor <= bar.open_time_ms <= end_ms]
            if page and not fresh:
                raise DownloadError(f"unexpected answer from {url}: bars outside the range asked")
            closed = [bar for bar in fresh if bar.close_time_ms < now_ms]
            if closed:
                yield closed
            if not closed or len(closed) < len(fresh):
                return  # empty page, or the still-open bar: nothing more is final yet
            cursor = closed[-1].open_time_ms + step

    def get(self, url: str, symbol: str) -> Response:
        """A 2xx answer for url, after waiting out rate limits and retrying transient failures."""
        attempts = self.limits.max_attempts
        failure = "nothing tried"
        for attempt in range(1, attempts + 1):
            try:
                response = self.transport(url)
            except OSError as exc:
                failure, wait = f"network error: {exc}", self._backoff_s(attempt)
            else:
                if 200 <= response.status < 300:
                    self._pause_if_heavy(response)
                    return response
                failure, wait = self._retry_plan(response, url, symbol, attempt)
            if attempt < attempts:
                self.sleep(wait)
        raise DownloadError(
            f"Binance failed {attempts} times in a row for {url} (last: {failure})\n"
            "  fix: check the network or try another --base-url, then re-run the same command: "
            "bars already saved are kept and the download resumes after them"
        )

    def _retry_plan(
        self, response: Response, url: str, symbol: str, attempt: int
    ) -> tuple[str, float]:
        """Why a failed answer may be retried and how long to wait; raises when it may not."""
        status = response.status
        if status in (418, 429):
            wait = _retry_after_s(response)
            wait = self._seconds_to_next_minute() if wait is None else wait
            if wait > self.limits.max_retry_after_s:
                resume_at = (self.now() + timedelta(seconds=wait)).isoformat(timespec="seconds")
                raise DownloadError(
                    f"Binance blocked this IP for {wait:.0f} s (HTTP {status}, too many requests)\n"
                    f"  fix: re-run after {resume_at} with a lower --weight-limit; bars already "
                    "saved are kept"
                )
            return f"HTTP {status} (rate limited)", wait
        if status >= 500:
            _code, message = _error_fields(response.body)
            return f"HTTP {status}: {message or 'no message'}", self._backoff_s(attempt)
        raise self._rejection(response, url, symbol)

    def _rejection(self, response: Response, url: str, symbol: str) -> Exception:
        """The error for an answer that retrying cannot fix, worded for the person who can."""
        status = response.status
        code, message = _error_fields(response.body)
        if code == INVALID_SYMBOL_CODE:
            return UserError(
                f"Binance does not know the symbol {symbol!r} ({message})\n"
                "  fix: use the spot pair exactly as Binance lists it, base then quote with no "
                f"separator, e.g. BTCUSDT; all pairs: {self.base_url}/api/v3/exchangeInfo"
            )
        if code in BAD_KEY_CODES or status == 401:
            return UserError(
                f"Binance rejected the API key (HTTP {status}: {message})\n"
                f"  fix: unset {API_KEY_ENV} (public klines need no key) or set a valid key"
            )
        if status == 451:
            return UserError(
                f"Binance does not serve this location (HTTP 451: {message})\n"
                f"  fix: try the market-data mirror: --base-url {MIRROR_BASE_URL}"
            )
        detail = f"code {code}: {message}" if code is not None else message
        return DownloadError(f"Binance refused {url} (HTTP {status}, {detail or 'no message'})")

    def _pause_if_heavy(self, response: Response) -> None:
        """Sleep into the next minute once most of this minute's request weight is used."""
        raw = response.header(WEIGHT_HEADER)
        try:
            used = int(raw) if raw is not None else 0
        except ValueError:
            return
        if used >= self.limits.weight_fraction * self.limits.weight_limit:
            self.sleep(self._seconds_to_next_minute())

    def _seconds_to_next_minute(self) -> float:
        """Until Binance's per-minute weight window rolls over, plus a second for clock skew."""
        moment = self.now()
        return 60.0 - (moment.second + moment.microsecond / 1e6) + 1.0

    def _backoff_s(self, attempt: int) -> float:
        """Exponential backoff: backoff_s, 2x, 4x, ... capped at max_backoff_s."""
        return min(self.limits.backoff_s * 2 ** (attempt - 1), self.limits.max_backoff_s)


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class BuildProgress:
    """Where a symbol's download stands; bars count time covered, gaps included."""

    symbol: str
    bars_done: int
    bars_total: int
    rows_added: int


@dataclass(frozen=True)
class BuildResult:
    """What build_symbol did; first/last describe the whole file (None: no file, no bars)."""

    symbol: str
    path: Path
    rows_added: int
    first: datetime | None
    last: datetime | None


def _line(fields: Sequence[str]) -> bytes:
    """One CSV line; fields are checked decimals and timestamps, so no quoting is needed."""
    return (",".join(fields) + "\n").encode("ascii")


def _row_time_ms(line: bytes, path: Path) -> int:
    """The open time of one CSV row this module wrote, or a UserError saying how to repair."""
    fields = line.decode("ascii", errors="replace").strip().split(",")
    moment = None
    if len(fields) == len(CSV_HEADER):
        with contextlib.suppress(ValueError):
            moment = datetime.fromisoformat(fields[0])
    if moment is None or moment.tzinfo is None:
        raise UserError(
            f"{path}: a row near the end is not a bar this tool wrote: {line[:80]!r}\n"
            "  fix: delete the file (or that row) and re-run"
        )
    return to_ms(moment)


def _check_interval_matches(path: Path, interval: str, previous_ms: int, last_ms: int) -> None:
    """Refuse to append bars of one interval to a file of another."""
    step = interval_ms(interval)
    misaligned = _DAY % step == 0 and last_ms % step != 0
    if last_ms - previous_ms < step or misaligned:
        raise UserError(
            f"{path} does not hold {interval} bars (its last rows are "
            f"{format_ms(previous_ms)} and {format_ms(last_ms)})\n"
            "  fix: use a separate --out folder per interval"
        )


def existing_range(path: Path, interval: str) -> tuple[int, int] | None:
    """First and last open times (ms) in a CSV this module wrote; None when absent or empty."""
    if not path.exists():
        return None
    header = _line(CSV_HEADER)
    with path.open("rb") as source:
        if source.readline() != header:
            raise UserError(
                f"{path} does not start with the header {','.join(CSV_HEADER)}\n"
                "  fix: move the file away (or choose another --out) and re-run"
            )
        first = source.readline()
        if not first:
            return None
        size = source.seek(0, os.SEEK_END)
        offset = max(0, size - _TAIL_BYTES)
        source.seek(offset)
        tail = source.read()
    if not tail.endswith(b"\n"):
        raise UserError(
            f"{path} ends in the middle of a row (not written by this tool?)\n"
            "  fix: delete the file (or its last line) and re-run"
        )
    lines = tail.splitlines()[1 if offset else 0 :]
    rows = [line for line in lines if line and line + b"\n" != header]
    last_ms = _row_time_ms(rows[-1], path)
    if len(rows) > 1:
        _check_interval_matches(path, interval, _row_time_ms(rows[-2], path), last_ms)
    return _row_time_ms(first, path), last_ms


def append_atomically(path: Path, bars: Sequence[Bar]) -> None:
    """path := its current rows (or the header) + bars, replaced whole (keeping its mode).

    Readers, and a later resume, see the old file or the new one, never a partial write.
    """
    with replacing(path, "wb") as out:
        if path.exists():
            with path.open("rb") as current:
                shutil.copyfileobj(current, out)
        else:
            out.write(_line(CSV_HEADER))
        out.writelines(_line(bar.row()) for bar in bars)


def _remove_stale_temp_files(path: Path) -> None:
    """Temp files left by a killed run are never trusted; clear them so they do not pile up."""
    for stale in temp_files(path):
        stale.unlink(missing_ok=True)


def build_symbol(
    symbol: str,
    out_dir: Path,
    start: datetime,
    end: datetime,
    *,
    client: KlinesClient,
    interval: str = "1h",
    flush_every: int = 20,
    progress: Callable[[BuildProgress], None] | None = None,
) -> BuildResult:
    """Bring <out_dir>/<SYMBOL>.csv up to `end` (exclusive), downloading only the bars it lacks.

    An existing file is continued from the bar after its last one (so it stays gap-free and
    `start` only places the first bar of a new file). Progress is written every `flush_every`
    pages and when the download stops for any reason, so a re-run resumes where this one ended.
    """
    if flush_every < 1:
        raise ValueError(f"flush_every must be at least 1, got {flush_every}")
    symbol = check_symbol(symbol)
    step = interval_ms(interval)
    start_ms, end_ms = check_range(start, end)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{symbol}.csv"
    _remove_stale_temp_files(path)
    existing = existing_range(path, interval)
    cursor = existing[1] + step if existing else start_ms
    last_ms = min(end_ms, to_ms(client.now())) - 1  # endTime is inclusive at Binance
    total = max(0, -(-(last_ms + 1 - cursor) // step))
    pending: list[Bar] = []
    added, first_new, last_new = 0, None, None
    try:
        pages = client.iter_pages(symbol, interval, cursor, last_ms)
        for number, page in enumerate(pages, start=1):
            pending.extend(page)
            first_new = first_new if first_new is not None else page[0].open_time_ms
            last_new = page[-1].open_time_ms
            if number % flush_every == 0:
                append_atomically(path, pending)
                added, pending = added + len(pending), []
            if progress is not None:
                done = (last_new + step - cursor) // step
                progress(BuildProgress(symbol, done, total, added + len(pending)))
    finally:
        if pending:
            append_atomically(path, pending)
            added += len(pending)
    first = existing[0] if existing else first_new
    last = last_new if last_new is not None else (existing[1] if existing else None)
    return BuildResult(
        symbol=symbol,
        path=path,
        rows_added=added,
        first=from_ms(first) if first is not None else None,
        last=from_ms(last) if last is not None else None,
    )
