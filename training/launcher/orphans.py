"""Jobs an earlier launch left running: a launcher killed with SIGKILL (or a closed terminal)
cannot cancel its local jobs, and submitit's controllers are made to outlive it, so they go on
training. A resumed launch would start a second writer in the same job folder (measured: the
resume test once lost a best checkpoint to the other writer); it ends them first.

A task is killed only when its progress file names it exactly: this host, its pid, and that pid's
start time (core.process), and its command line is a submitit task's; a stale or foreign record
whose pid now belongs to another process is never killed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

from core.process import ProcessIdentity

GONE_WAIT_S = 10.0  # SIGKILL is immediate; the kernel may take a moment to reap
SUBMITIT_TASK = b"submitit.core._submit"  # how submitit starts a task, locally or in SLURM


def end_orphans(progress_files: list[Path]) -> list[str]:
    """SIGKILL every live task on this host that wrote one of these progress files; return a
    line per process ended."""
    ended = []
    for path in progress_files:
        pid = kill_recorded_task(path)
        if pid is not None:
            ended.append(f"ended pid {pid}, left running by an earlier launch ({path.parent})")
    return ended


def kill_recorded_task(progress: Path, since: float = 0.0) -> int | None:
    """SIGKILL the task its progress file records (each job writes its own identity there), if
    that record is from `since` on and names a live submitit task on this host with the same
    start time (a reused pid is never killed); wait until it is gone. Return the pid killed."""
    with contextlib.suppress(OSError, ValueError):
        recorded = json.loads(progress.read_text())
        if not isinstance(recorded, dict):
            return None
        task = ProcessIdentity.from_json(recorded)
        fresh = float(recorded.get("updated", 0.0)) >= since
        if task is None or not fresh or task.pid in (0, os.getpid()):
            return None
        if task.running() and _is_task(task.pid):
            os.kill(task.pid, signal.SIGKILL)
            _wait_gone(task.pid)
            return task.pid
    return None


def _is_task(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()  # empty once it is a zombie
    except OSError:  # gone, or not ours to read
        return False
    return SUBMITIT_TASK in command


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + GONE_WAIT_S
    while time.monotonic() < deadline and _is_task(pid):
        time.sleep(0.05)
