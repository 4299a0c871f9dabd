"""Which process, exactly: host, pid and start time, so a pid the kernel gave to a newer process
is never taken for the one that had it (a kill, a lock, a launcher a job watches).

The start time is psutil's `create_time()`: the boot time plus /proc/PID/stat's starttime (field
22, clock ticks), so it differs after a reboot too, and it reads the same from every process.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import psutil

# psutil dates a start as boot time + ticks since boot, and reads the boot time (/proc/stat's
# btime, whole seconds) afresh each call: a clock step (NTP, a VM's clock sync) moves it, so one
# process's start read twice can differ by a second or two. A pid is given again within 2 s
# only after pid_max other processes started: starts this close are one process.
SAME_START_S = 2.0


@dataclass(frozen=True)
class ProcessIdentity:
    host: str
    pid: int
    started: float  # seconds since the epoch

    @classmethod
    def current(cls) -> ProcessIdentity:
        identity = cls.of(psutil.Process().pid)
        assert identity is not None, "this process is running"
        return identity

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        """The live process with this pid on this host; None when there is none (a zombie, which
        has ended and waits for its parent to read its status, counts as none)."""
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            return cls(socket.gethostname(), pid, process.create_time())
        except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
            return None

    @classmethod
    def from_json(cls, document: Any) -> ProcessIdentity | None:
        """An identity a file recorded; None when the record is missing or malformed."""
        try:
            return cls(str(document["host"]), int(document["pid"]), float(document["started"]))
        except (KeyError, TypeError, ValueError):
            return None

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "started": self.started}

    @property
    def here(self) -> bool:
        return self.host == socket.gethostname()

    def running(self) -> bool | None:
        """Whether this very process still runs; None when it is on another host (not knowable
        from here)."""
        if not self.here:
            return None
        now = ProcessIdentity.of(self.pid)
        return now is not None and abs(now.started - self.started) < SAME_START_S
