"""SIGTERM and SIGHUP to the launcher do what Ctrl-C does: `timeout`, systemd, a closed SSH
session or a batch scheduler stop it the way a user would, so what it submitted is cancelled and
the `--resume` line is printed, instead of the process dying where it stands.

The handler raises `StopSignal`, a KeyboardInterrupt, so every Ctrl-C path (cancel, message)
serves both; the command then exits 128 + the signal's number, as a shell reports a signal.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class StopSignal(KeyboardInterrupt):
    """The launcher was asked to stop by a signal other than Ctrl-C's SIGINT."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _State:
    received: int | None = None  # the first stop signal this process got
    deferring = False  # inside `deferred()`: cleanup that a second signal must not cut short


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """While a command runs: SIGTERM and SIGHUP raise StopSignal in the main thread; one this
    process was started ignoring stays ignored (`nohup` ignores SIGHUP so that a closed terminal
    does not stop it). The previous handlers come back after (a test calls `main` in process)."""
    saved = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    _State.received = None
    for signum, handler in saved.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, _on_signal)
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def interruptible_children() -> Iterator[None]:
    """While children are started: an ignored SIGINT stays ignored across exec, so a launcher
    started where SIGINT is ignored (`cmd &` in a script) would start submitit controllers that
    ignore the SIGINT a cancel sends them; a handler (even a no-op) is reset to the default."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, _ignore)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def exit_status(status: int) -> int:
    """The command's exit status: 128 + the stop signal's number once one was received."""
    return status if _State.received is None else 128 + _State.received


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Cleanup (cancelling the run's jobs) that a repeated SIGTERM must not interrupt."""
    _State.deferring = True
    try:
        yield
    finally:
        _State.deferring = False


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _State.received is None:
        _State.received = signum
    if not _State.deferring:
        raise StopSignal(signum)


def _ignore(signum: int, frame: FrameType | None) -> None:
    return None
