"""One writer per run folder: RUN/writer.lock names the command writing it (host, pid, start
time, since when, heartbeat); a second command is refused and told who holds it, a lock its
holder left behind (killed, crashed, rebooted) is taken over with a message.

Created with O_CREAT | O_EXCL, which is atomic on NFS v3+ as on a local disk, and kept fresh by a
heartbeat thread: fcntl/flock locks are not used because NFS drops or fakes them (lockd) and a
lock held by a dead node never frees. Hand-written: filelock's SoftFileLease (only a transitive
dependency here) records no time held and takes another host's lease only after watching it
unchanged for a whole lease, so a second writer could not be refused at once, naming since when.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

from core.atomic import write_json
from core.errors import UserError
from core.process import ProcessIdentity

LOCK_FILE = "writer.lock"
HEARTBEAT_S = 10.0  # the holder rewrites its heartbeat this often
STALE_AFTER_S = 120.0  # another host's lock silent this long is stale (clocks may differ a bit)
UNREADABLE_WAIT_S = 2.0  # a lock just created may be empty for a moment: read again until then


class RunLock:
    """Held while a command writes a run folder (`with RunLock(run_dir):`); released on any exit
    that unwinds (success, error, Ctrl-C, SIGTERM and SIGHUP); a SIGKILL leaves it stale."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / LOCK_FILE
        self.holder = ProcessIdentity.current()
        self.since = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="run-lock", daemon=True)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, or raise UserError naming its live holder."""
        while not self._create():
            record = self._read()
            why = stale_reason(record)
            if why is None:
                raise UserError(_refusal(self.run_dir, record))
            if self._remove_stale(record):
                print(
                    f"warning: took over {self.path} from {_who(record)}: {why}",
                    file=sys.stderr,
                    flush=True,
                )
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._mine(self._read()):
            self.path.unlink(missing_ok=True)

    def record(self) -> dict[str, Any]:
        return {**self.holder.to_json(), "since": self.since, "heartbeat": time.time()}

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as error:
            raise UserError(
                f"cannot write the run folder {self.run_dir}: {error.strerror or error}\n"
                "  fix: check that it exists and that you may write to it"
            ) from None
        with os.fdopen(fd, "w") as out:
            json.dump(self.record(), out)
            out.flush()
            os.fsync(out.fileno())
        return True

    def _read(self) -> dict[str, Any] | None:
        """The lock's record; None once it is gone; {} when it stays unreadable (its writer
        died between creating and writing it)."""
        deadline = time.monotonic() + UNREADABLE_WAIT_S
        while True:
            try:
                record = json.loads(self.path.read_text())
                if isinstance(record, dict):
                    return record
            except FileNotFoundError:
                return None
            except (OSError, ValueError):
                pass
            if time.monotonic() >= deadline:
                return {}
            time.sleep(0.1)

    def _remove_stale(self, record: dict[str, Any] | None) -> bool:
        """Move the stale lock aside, unless another command replaced it meanwhile (then it is
        put back); True when it was removed."""
        if record is None:
            return False  # released meanwhile: try again
        aside = self.path.with_name(f"{LOCK_FILE}.stale-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False  # someone else moved it first
        try:
            moved = json.loads(aside.read_text())
        except (OSError, ValueError):
            moved = {}
        if moved != record:  # a live lock taken in between: give it back
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        return True

    def _mine(self, record: dict[str, Any] | None) -> bool:
        return bool(record) and ProcessIdentity.from_json(record) == self.holder

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            if not self._mine(self._read()):
                print(f"warning: {self.path} was taken over by another command", file=sys.stderr)
                return
            write_json(self.path, self.record())


def stale_reason(record: dict[str, Any] | None) -> str | None:
    """Why a lock's holder is gone for good; None while it may still be writing."""
    if record is None:
        return "it was released"
    holder = ProcessIdentity.from_json(record)
    if holder is None:
        return "the lock file is unreadable (its writer died while writing it)"
    alive = holder.running()
    if alive is None:
        silent = time.time() - float(record.get("heartbeat", 0.0))
        return f"no heartbeat for {silent:.0f} s" if silent > STALE_AFTER_S else None
    if alive:
        return None
    now = ProcessIdentity.of(holder.pid)
    return "that process has ended" if now is None else f"pid {holder.pid} is now another process"


def _who(record: dict[str, Any] | None) -> str:
    record = record or {}
    since = record.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "an unknown time"
    return f"pid {record.get('pid', '?')} on {record.get('host', '?')} (since {when})"


def _refusal(run_dir: Path, record: dict[str, Any] | None) -> str:
    record = record or {}
    beat = time.time() - float(record.get("heartbeat", time.time()))
    pid, host = record.get("pid", "?"), record.get("host", "?")
    return (
        f"the run folder {run_dir} is being written by another command: {_who(record)}, "
        f"last heartbeat {beat:.0f} s ago\n"
        f"  fix: wait for it to end, or stop it (`kill {pid}` on {host}: it cancels its jobs and "
        f"prints the --resume line), then run this again; a lock whose holder is gone is taken "
        f"over by itself"
    )
