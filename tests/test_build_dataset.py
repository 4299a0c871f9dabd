"""The Binance dataset builder, offline: recorded answers replayed through a fake transport.

No test touches the network: transports are fakes, and the one test of the real urllib transport
replaces urllib.request.urlopen. Sleeps are recorded, never slept.
"""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from email.message import Message
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.atomic import DiskFullError
from core.data.providers.binance import (
    Bar,
    DownloadError,
    KlinesClient,
    RateLimits,
    Response,
    append_atomically,
    build_symbol,
    check_symbol,
    format_ms,
    interval_ms,
    parse_utc,
    transport_from_env,
)
from core.errors import UserError
from tests.conftest import PYTHON, REPO_ROOT

DATA = Path(__file__).parent / "data" / "binance"
SCRIPT = REPO_ROOT / "scripts" / "build_dataset.py"
UTC = timezone.utc
HOUR = timedelta(hours=1)
HOUR_MS = 3_600_000
T0 = datetime(2020, 1, 1, tzinfo=UTC)
T0_MS = 1_577_836_800_000
END = T0 + 8 * HOUR  # the recorded pages hold bars 00:00 .. 07:00
NOW = datetime(2020, 1, 2, 12, 0, 15, tzinfo=UTC)
SECRET = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
HEADER = "timestamp,open,high,low,close,volume\n"
FULL_CSV = HEADER + (
    "2020-01-01T00:00:00+00:00,7195.24000000,7196.25000000,7175.46000000,7177.02000000,511.81490100\n"
    "2020-01-01T01:00:00+00:00,7176.47000000,7230.00000000,7175.71000000,7216.27000000,883.05245900\n"
    "2020-01-01T02:00:00+00:00,7215.52000000,7244.87000000,7211.41000000,7242.85000000,655.15670100\n"
    "2020-01-01T03:00:00+00:00,7242.66000000,7245.00000000,7220.00000000,7225.01000000,783.72417300\n"
    "2020-01-01T04:00:00+00:00,7225.00000000,7230.00000000,7215.03000000,7217.27000000,467.81259100\n"
    "2020-01-01T05:00:00+00:00,7217.26000000,7229.00000000,7213.80000000,7224.21000000,472.08050700\n"
    "2020-01-01T06:00:00+00:00,7224.24000000,7239.30000000,7213.02000000,7225.64000000,567.71037000\n"
    "2020-01-01T07:00:00+00:00,7225.57000000,7228.82000000,7205.00000000,7209.83000000,574.51302200\n"
)


# --------------------------------------------------------------------------- fakes


def recorded(name: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A recorded answer body with the status and headers a test wants around it."""
    return Response(status, headers or {"X-MBX-USED-WEIGHT-1M": "2"}, (DATA / name).read_bytes())


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def replay(url: str) -> Response:
    """Binance as recorded: the page for this symbol, interval and startTime."""
    q = query(url)
    name = f"{q['symbol']}-{q['interval']}-{q['startTime']}.json"
    assert (DATA / name).exists(), f"no recorded answer for {url}"
    return recorded(name)


class FakeTransport:
    """Plays scripted answers (or raises scripted errors) first, then `fallback`; logs URLs."""

    def __init__(
        self,
        script: Iterable[Response | Exception] = (),
        fallback: Callable[[str], Response] = replay,
    ) -> None:
        self.script = list(script)
        self.fallback = fallback
        self.urls: list[str] = []

    def __call__(self, url: str) -> Response:
        self.urls.append(url)
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, Exception):
                raise step
            return step
        return self.fallback(url)

    def start_times(self) -> list[int]:
        return [int(query(url)["startTime"]) for url in self.urls]


def make_client(
    transport: Callable[[str], Response],
    sleeps: list[float] | None = None,
    now: datetime = NOW,
    page_limit: int = 3,
    **limits: float,
) -> KlinesClient:
    return KlinesClient(
        transport,
        limits=RateLimits(**limits),  # type: ignore[arg-type]
        sleep=(sleeps if sleeps is not None else []).append,
        now=lambda: now,
        page_limit=page_limit,
    )


def build(
    tmp_path: Path,
    transport: Callable[[str], Response],
    end: datetime = END,
    **options: object,
):
    client_options = {k: options.pop(k) for k in ("sleeps", "now") if k in options}
    client = make_client(transport, **client_options)  # type: ignore[arg-type]
    return build_symbol("BTCUSDT", tmp_path, T0, end, client=client, **options)  # type: ignore[arg-type]


def load_cli() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_dataset_cli", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- paging


def test_pages_through_recorded_answers(tmp_path: Path) -> None:
    transport = FakeTransport()
    result = build(tmp_path, transport)
    assert (tmp_path / "BTCUSDT.csv").read_text() == FULL_CSV
    assert transport.start_times() == [T0_MS, T0_MS + 3 * HOUR_MS, T0_MS + 6 * HOUR_MS]
    first = query(transport.urls[0])
    assert urlsplit(transport.urls[0]).path == "/api/v3/klines"
    assert first == {
        "symbol": "BTCUSDT",
        "interval": "1h",
        "startTime": str(T0_MS),
        "endTime": str(T0_MS + 8 * HOUR_MS - 1),  # --end is exclusive
        "limit": "3",
    }
    assert (result.rows_added, result.first, result.last) == (8, T0, T0 + 7 * HOUR)


def test_empty_page_ends_the_download(tmp_path: Path) -> None:
    transport = FakeTransport()
    result = build(tmp_path, transport, end=T0 + 10 * HOUR)
    assert transport.start_times()[-1] == T0_MS + 8 * HOUR_MS  # answered []
    assert len(transport.urls) == 4
    assert result.rows_added == 8


def test_still_open_bar_is_dropped_and_paging_stops(tmp_path: Path) -> None:
    transport = FakeTransport()
    now = T0 + 7 * HOUR + timedelta(minutes=30)  # the 07:00 bar is still open
    result = build(tmp_path, transport, end=T0 + 24 * HOUR, now=now)
    assert result.last == T0 + 6 * HOUR
    assert (tmp_path / "BTCUSDT.csv").read_text() == FULL_CSV.rsplit("2020-01-01T07", 1)[0]
    assert len(transport.urls) == 3
    assert query(transport.urls[0])["endTime"] == str(T0_MS + 7 * HOUR_MS + 30 * 60_000 - 1)


def test_custom_base_url_and_interval_reach_the_url() -> None:
    client = KlinesClient(FakeTransport(), "https://data-api.binance.vision/")
    url = client.url("ETHUSDT", "4h", 0, 10)
    assert url.startswith("https://data-api.binance.vision/api/v3/klines?symbol=ETHUSDT")
    assert query(url)["interval"] == "4h" and query(url)["limit"] == "1000"


# --------------------------------------------------------------------------- resuming


def test_resume_requests_only_the_missing_range(tmp_path: Path) -> None:
    build(tmp_path, FakeTransport(), end=T0 + 3 * HOUR)
    assert (tmp_path / "BTCUSDT.csv").read_text() == "".join(FULL_CSV.splitlines(True)[:4])

    transport = FakeTransport()
    result = build(tmp_path, transport)
    assert transport.start_times() == [T0_MS + 3 * HOUR_MS, T0_MS + 6 * HOUR_MS]
    assert (tmp_path / "BTCUSDT.csv").read_text() == FULL_CSV
    assert (result.rows_added, result.first, result.last) == (5, T0, T0 + 7 * HOUR)

    again = FakeTransport()
    assert build(tmp_path, again).rows_added == 0
    assert again.urls == []  # up to date: not a single request


def test_resume_refuses_a_file_of_another_interval(tmp_path: Path) -> None:
    build(tmp_path, FakeTransport())
    transport = FakeTransport()
    with pytest.raises(UserError, match="does not hold 1d bars"):
        build(tmp_path, transport, end=T0 + 30 * 24 * HOUR, interval="1d")
    assert transport.urls == []


@pytest.mark.parametrize(
    "content",
    [
        HEADER + "2020-01-01T00:00:00+00:00,7195.24,7196.25,71",  # cut mid-row
        "time,price\n2020-01-01,1\n",  # someone else's file
        HEADER + "yesterday,1,1,1,1,1\n",
    ],
    ids=["truncated", "other-header", "bad-timestamp"],
)
def test_resume_refuses_a_file_it_cannot_trust(tmp_path: Path, content: str) -> None:
    (tmp_path / "BTCUSDT.csv").write_text(content)
    transport = FakeTransport()
    with pytest.raises(UserError, match="fix:"):
        build(tmp_path, transport)
    assert transport.urls == []
    assert (tmp_path / "BTCUSDT.csv").read_text() == content


# --------------------------------------------------------------------------- rate limits, retries


@pytest.mark.parametrize(
    ("used", "weight_limit", "pauses"),
    [("4900", 6000, True), ("4799", 6000, False), ("800", 1000, True), ("junk", 6000, False)],
)
def test_used_weight_header_pauses_until_the_next_minute(
    tmp_path: Path, used: str, weight_limit: int, pauses: bool
) -> None:
    heavy = recorded(f"BTCUSDT-1h-{T0_MS}.json", headers={"x-mbx-used-weight-1m": used})
    sleeps: list[float] = []
    client = make_client(FakeTransport([heavy]), sleeps, weight_limit=weight_limit)
    build_symbol("BTCUSDT", tmp_path, T0, END, client=client)
    # NOW is 15 s into its minute: wait the 45 s left, plus 1 s for clock skew.
    assert sleeps == ([46.0] if pauses else [])


def test_http_429_honours_retry_after(tmp_path: Path) -> None:
    limited = recorded("rate_limited.json", 429, {"Retry-After": "7"})
    transport, sleeps = FakeTransport([limited]), []
    build(tmp_path, transport, sleeps=sleeps)
    assert sleeps == [7.0]
    assert transport.start_times()[:2] == [T0_MS, T0_MS]  # the same page, asked again
    assert (tmp_path / "BTCUSDT.csv").read_text() == FULL_CSV


def test_http_429_without_retry_after_waits_for_the_next_minute(tmp_path: Path) -> None:
    limited = recorded("rate_limited.json", 429, {})
    sleeps: list[float] = []
    build(tmp_path, FakeTransport([limited]), sleeps=sleeps)
    assert sleeps == [46.0]


def test_long_418_ban_stops_with_a_clear_error(tmp_path: Path) -> None:
    banned = recorded("rate_limited.json", 418, {"Retry-After": "7200"})
    sleeps: list[float] = []
    with pytest.raises(DownloadError, match=r"blocked this IP for 7200 s.*\n.*re-run after"):
        build(tmp_path, FakeTransport([banned]), sleeps=sleeps)
    assert sleeps == []


def test_server_and_network_errors_are_retried_with_backoff(tmp_path: Path) -> None:
    script = [
        recorded("internal_error.json", 503, {}),
        urllib.error.URLError(ConnectionResetError("reset by peer")),
        TimeoutError("timed out"),
    ]
    sleeps: list[float] = []
    build(tmp_path, FakeTransport(script), sleeps=sleeps)
    assert sleeps == [1.0, 2.0, 4.0]
    assert (tmp_path / "BTCUSDT.csv").read_text() == FULL_CSV


def test_gives_up_after_max_attempts_and_keeps_what_it_got(tmp_path: Path) -> None:
    def broken_after_first_page(url: str) -> Response:
        if query(url)["startTime"] == str(T0_MS):
            return replay(url)
        return recorded("internal_error.json", 502, {})

    sleeps: list[float] = []
    with pytest.raises(DownloadError) as caught:
        build(tmp_path, FakeTransport(fallback=broken_after_first_page), sleeps=sleeps)
    message = str(caught.value)
    assert "failed 5 times" in message and "HTTP 502: Internal error" in message
    assert "re-run the same command" in message
    assert sleeps == [1.0, 2.0, 4.0, 8.0]
    assert (tmp_path / "BTCUSDT.csv").read_text() == "".join(FULL_CSV.splitlines(True)[:4])


def test_backoff_is_capped() -> None:
    sleeps: list[float] = []
    client = make_client(
        FakeTransport(fallback=lambda url: recorded("internal_error.json", 500, {})),
        sleeps,
        max_attempts=6,
        backoff_s=10,
        max_backoff_s=30,
    )
    with pytest.raises(DownloadError, match="failed 6 times"):
        client.get("https://api.binance.com/api/v3/klines", "BTCUSDT")
    assert sleeps == [10, 20, 30, 30, 30]


# --------------------------------------------------------------------------- user errors


def test_unknown_symbol_names_it_and_says_how_to_fix(tmp_path: Path) -> None:
    transport = FakeTransport([recorded("invalid_symbol.json", 400, {})])
    client = make_client(transport)
    with pytest.raises(UserError) as caught:
        build_symbol("FOOBAR", tmp_path, T0, END, client=client)
    message = str(caught.value)
    assert "'FOOBAR'" in message and "Invalid symbol." in message
    assert "BTCUSDT" in message and "exchangeInfo" in message
    assert len(transport.urls) == 1  # not retried
    assert not (tmp_path / "FOOBAR.csv").exists()


@pytest.mark.parametrize("symbol", ["BTC/USDT", "BTC-USDT", "../etc", "", "B"])
def test_malformed_symbol_is_rejected_before_any_request(symbol: str) -> None:
    with pytest.raises(UserError, match=r"e\.g\. BTCUSDT"):
        check_symbol(symbol)


def test_symbol_case_is_normalised() -> None:
    assert check_symbol(" ethusdt ") == "ETHUSDT"


@pytest.mark.parametrize("interval", ["7h", "1M", "", "60"])
def test_unknown_interval_lists_the_valid_ones(interval: str) -> None:
    with pytest.raises(UserError, match="1m, 3m, 5m, 15m, 30m, 1h"):
        interval_ms(interval)


def test_dates_parse_as_utc_and_bad_ones_say_the_format() -> None:
    assert parse_utc("2017-08-17") == datetime(2017, 8, 17, tzinfo=UTC)
    assert parse_utc("2017-08-17T02:00:00+02:00") == datetime(2017, 8, 17, tzinfo=UTC)
    assert parse_utc("2017-08-17T00:00:00Z") == datetime(2017, 8, 17, tzinfo=UTC)
    with pytest.raises(UserError, match="YYYY-MM-DD"):
        parse_utc("17/08/2017", "--start")


# --------------------------------------------------------------------------- atomicity


@pytest.mark.parametrize(("flush_every", "rows_at_kill"), [(2, 6), (5, 0)])
def test_killed_download_keeps_complete_pages_and_resume_completes_it(
    tmp_path: Path, flush_every: int, rows_at_kill: int
) -> None:
    path = tmp_path / "BTCUSDT.csv"
    on_disk_at_kill: list[str | None] = []

    def dies_on_third_request(url: str) -> Response:
        if query(url)["startTime"] == str(T0_MS + 6 * HOUR_MS):
            # What a SIGKILL right now would leave behind:
            on_disk_at_kill.append(path.read_text() if path.exists() else None)
            raise RuntimeError("killed")
        return replay(url)

    with pytest.raises(RuntimeError, match="killed"):
        build(tmp_path, FakeTransport(fallback=dies_on_third_request), flush_every=flush_every)
    expected_at_kill = "".join(FULL_CSV.splitlines(True)[: 1 + rows_at_kill])
    assert on_disk_at_kill == [expected_at_kill if rows_at_kill else None]
    # On an ordinary exception the fetched pages are saved too, and no temp file stays.
    assert path.read_text() == "".join(FULL_CSV.splitlines(True)[:7])
    assert [p.name for p in tmp_path.iterdir()] == ["BTCUSDT.csv"]

    transport = FakeTransport()
    build(tmp_path, transport)
    assert transport.start_times() == [T0_MS + 6 * HOUR_MS]
    assert path.read_text() == FULL_CSV


def test_temp_file_left_by_a_hard_kill_is_never_trusted(tmp_path: Path) -> None:
    build(tmp_path, FakeTransport(), end=T0 + 3 * HOUR)
    stale = tmp_path / ".BTCUSDT.csv.k1ll3d.tmp"
    stale.write_text(HEADER + "2020-01-01T00:00:00+00:00,1,1,1,1,1\n2020-01-01T01:00")
    transport = FakeTransport()
    build(tmp_path, transport)
    assert transport.start_times()[0] == T0_MS + 3 * HOUR_MS
    assert (tmp_path / "BTCUSDT.csv").read_text() == FULL_CSV
    assert not stale.exists()


def test_failed_write_leaves_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "BTCUSDT.csv"
    path.write_text(HEADER)
    bar = Bar(T0_MS, "1", "2", "0.5", "1.5", "10", T0_MS + HOUR_MS - 1)

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", disk_full)
    with pytest.raises(DiskFullError, match=r"no space left writing .*BTCUSDT"):
        append_atomically(path, [bar])
    assert path.read_text() == HEADER
    assert [p.name for p in tmp_path.iterdir()] == ["BTCUSDT.csv"]


# --------------------------------------------------------------------------- API key


class FakeReply:
    """What urllib.request.urlopen returns, enough for UrllibTransport."""

    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        self.status = 200
        self.headers = Message()
        for key, value in headers.items():
            self.headers[key] = value
        self._body = body

    def read(self) -> bytes:
        return self._body

    def __enter__(self) -> FakeReply:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def fake_urlopen(sent: list[urllib.request.Request]) -> Callable[..., FakeReply]:
    """urlopen without a network: recorded pages, a 400 for FOOBAR, a 401 for BADKEY."""

    def urlopen(request: urllib.request.Request, timeout: float) -> FakeReply:
        sent.append(request)
        symbol = query(request.full_url)["symbol"]
        if symbol in ("FOOBAR", "BADKEY"):
            name, code = (
                ("invalid_symbol.json", 400) if symbol == "FOOBAR" else ("bad_api_key.json", 401)
            )
            body = io.BytesIO((DATA / name).read_bytes())
            raise urllib.error.HTTPError(request.full_url, code, "error", Message(), body)
        answer = replay(request.full_url)
        return FakeReply(answer.body, dict(answer.headers))

    return urlopen


def test_api_key_is_sent_but_never_written_or_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sent: list[urllib.request.Request] = []
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen(sent))
    monkeypatch.setenv("BINANCE_API_KEY", SECRET)
    cli = load_cli()
    argv = ["--start", "2020-01-01", "--end", "2020-01-01T08:00", "--out", str(tmp_path)]
    now = lambda: NOW  # noqa: E731

    assert cli.main(["--symbols", "BTCUSDT", *argv], sleep=lambda s: None, now=now) == 0
    assert cli.main(["--symbols", "FOOBAR", *argv], sleep=lambda s: None, now=now) == 2
    assert cli.main(["--symbols", "BADKEY", *argv], sleep=lambda s: None, now=now) == 2

    assert sent and all(request.get_header("X-mbx-apikey") == SECRET for request in sent)
    assert all(SECRET not in request.full_url for request in sent)
    out, err = capsys.readouterr()
    assert "BTCUSDT: +8 rows" in out and "FOOBAR" in err and "rejected the API key" in err
    assert SECRET not in out + err
    assert (tmp_path / "BTCUSDT.csv").read_text() == FULL_CSV
    for written in tmp_path.rglob("*"):
        assert SECRET.encode() not in written.read_bytes()
    assert SECRET not in repr(transport_from_env({"BINANCE_API_KEY": SECRET}))


def test_api_key_that_cannot_be_a_header_is_refused_without_echoing_it() -> None:
    bad = SECRET[:10] + "\nX-Injected: 1"
    with pytest.raises(UserError) as caught:
        transport_from_env({"BINANCE_API_KEY": bad})
    assert SECRET[:10] not in str(caught.value) and "BINANCE_API_KEY" in str(caught.value)


def test_no_api_key_sends_no_header(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[urllib.request.Request] = []
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen(sent))
    transport_from_env({})(
        f"https://api.binance.com/api/v3/klines?symbol=BTCUSDT&interval=1h&startTime={T0_MS}"
    )
    assert sent[0].get_header("X-mbx-apikey") is None


# --------------------------------------------------------------------------- command line


def run_main(argv: list[str], transport: FakeTransport) -> int:
    return load_cli().main(argv, transport=transport, sleep=lambda s: None, now=lambda: NOW)


def test_cli_builds_each_symbol_and_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "binance"
    argv = ["--symbols", "btcusdt", "--start", "2020-01-01", "--end", "2020-01-01T08:00"]
    assert run_main([*argv, "--out", str(out_dir)], FakeTransport()) == 0
    out = capsys.readouterr().out
    path = out_dir / "BTCUSDT.csv"
    assert out == (
        f"BTCUSDT: +8 rows, 2020-01-01T00:00:00+00:00 .. 2020-01-01T07:00:00+00:00 -> {path}\n"
    )
    assert path.read_text() == FULL_CSV

    transport = FakeTransport()
    assert run_main([*argv, "--out", str(out_dir)], transport) == 0
    assert transport.urls == [] and "BTCUSDT: +0 rows" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--interval", "7h"], "unknown interval '7h'"),
        (["--start", "2020-13-01"], "--start '2020-13-01' is not a date"),
        (["--start", "2021-01-01", "--end", "2020-01-01"], "is not before end"),
        (["--symbols", "BTC/USDT"], "'BTC/USDT' is not a Binance symbol"),
        (["--base-url", "ftp://example.com"], "is not an http(s) address"),
    ],
)
def test_cli_user_mistakes_exit_2_without_a_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    argv = ["--symbols", "BTCUSDT", "--start", "2020-01-01", "--out", str(tmp_path), *extra]
    transport = FakeTransport()
    assert run_main(argv, transport) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert transport.urls == []


def test_cli_unknown_symbol_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    transport = FakeTransport([recorded("invalid_symbol.json", 400, {})])
    argv = ["--symbols", "NOPEUSDT", "--start", "2020-01-01", "--out", str(tmp_path)]
    assert run_main(argv, transport) == 2
    assert "error: Binance does not know the symbol 'NOPEUSDT'" in capsys.readouterr().err


def test_cli_download_failure_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    transport = FakeTransport(fallback=lambda url: recorded("internal_error.json", 503, {}))
    argv = ["--symbols", "BTCUSDT", "--start", "2020-01-01", "--out", str(tmp_path)]
    assert run_main([*argv, "--weight-limit", "100"], transport) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Binance failed 5 times") and "Traceback" not in err


def test_cli_script_runs_from_the_repo_root(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            PYTHON,
            str(SCRIPT),
            "--symbols",
            "BTCUSDT",
            "--start",
            "yesterday",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: --start 'yesterday' is not a date")
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- property


class Exchange:
    """A klines server over a fixed set of hourly bars (gaps included), honouring the query."""

    def __init__(self, hours: set[int], kill_at: int | None = None) -> None:
        self.hours = sorted(hours)
        self.kill_at = kill_at
        self.calls = 0

    def __call__(self, url: str) -> Response:
        self.calls += 1
        if self.calls == self.kill_at:
            raise RuntimeError("killed")
        q = query(url)
        start, end, limit = int(q["startTime"]), int(q["endTime"]), int(q["limit"])
        opens = [T0_MS + h * HOUR_MS for h in self.hours]
        rows = [
            [t, "1.0", "2.0", "0.5", "1.5", "10.0", t + HOUR_MS - 1, "15.0", 3, "5.0", "7.5", "0"]
            for t in opens
            if start <= t <= end
        ][:limit]
        return Response(200, {"X-MBX-USED-WEIGHT-1M": "1"}, json.dumps(rows).encode())


@settings(max_examples=40)
@given(
    hours=st.sets(st.integers(0, 47), max_size=48),
    page_limit=st.integers(1, 7),
    flush_every=st.integers(1, 4),
    start=st.integers(0, 30),
    length=st.integers(1, 30),
    now_hour=st.integers(0, 60),
    kill_at=st.none() | st.integers(1, 12),
)
def test_paging_never_duplicates_or_skips_bars(
    hours: set[int],
    page_limit: int,
    flush_every: int,
    start: int,
    length: int,
    now_hour: int,
    kill_at: int | None,
) -> None:
    now = T0 + now_hour * HOUR + timedelta(minutes=30)  # the bar at now_hour is still open
    wanted = [h for h in sorted(hours) if start <= h < start + length and h < now_hour]
    with tempfile.TemporaryDirectory() as folder:
        out_dir = Path(folder)

        def run(exchange: Exchange) -> None:
            client = make_client(exchange, now=now, page_limit=page_limit)
            window = (T0 + start * HOUR, T0 + (start + length) * HOUR)
            build_symbol("BTCUSDT", out_dir, *window, client=client, flush_every=flush_every)

        try:
            run(Exchange(hours, kill_at))
        except RuntimeError:
            run(Exchange(hours))  # resume after the kill
        path = out_dir / "BTCUSDT.csv"
        if not wanted:
            assert not path.exists()
            return
        lines = path.read_text().splitlines()
        assert lines[0] == HEADER.strip()
        assert [line.split(",")[0] for line in lines[1:]] == [
            format_ms(T0_MS + h * HOUR_MS) for h in wanted
        ]


def test_downloaded_file_loads_as_a_dataset(tmp_path: Path) -> None:
    """The builder's output is a dataset the loader accepts as is."""
    from core.config import load_config
    from core.data.load import load_dataset

    build(tmp_path, FakeTransport())
    market = load_dataset(load_config().data, tmp_path)
    assert market.assets == ("BTCUSDT",) and len(market.timestamps) == 8
    assert market.timestamps[0] == T0_MS * 1_000_000
