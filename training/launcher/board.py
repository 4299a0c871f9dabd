"""The live view of a launch: counts of queued / running / done / failed / retried jobs, and a
line per running job with its steps (and one per member of a running group); events (start, done, retry, failure) scroll above it.
Without a terminal (CI, --no-progress) only the events are printed, one line each."""

from __future__ import annotations

import sys
import time
from collections import Counter
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from core.redact import redact
from training.launcher.launch import JobStatus

MAX_ROWS = 24  # lines of running jobs (and a group's members) shown; the rest are counted


class JobBoard:
    def __init__(self, title: str, live: bool) -> None:
        self.title = title
        self.console = Console(file=sys.stderr)
        self.started = time.monotonic()
        self.live = (
            Live(console=self.console, refresh_per_second=2, transient=True) if live else None
        )

    def __enter__(self) -> JobBoard:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live is not None:
            self.live.__exit__(kind, error, tb)

    def __call__(self, statuses: list[JobStatus], event: str | None) -> None:
        if event:
            elapsed = time.monotonic() - self.started
            stamp = _clock(elapsed)
            shown = redact(event)  # an error may quote a storage URL
            if event.startswith("done ") and statuses:  # without the live board, the pace too
                steps = sum(_done(s) for s in statuses)
                shown += eta(steps, sum(s.job.timesteps for s in statuses), elapsed)
            self.console.print(f"[dim]{stamp:>8}[/] {shown}", highlight=False, soft_wrap=True)
        if self.live is not None:
            self.live.update(self.render(statuses))

    def render(self, statuses: list[JobStatus]) -> Group:
        counts = Counter(s.state for s in statuses)
        retried = sum(s.attempts > 1 for s in statuses)
        steps = sum(_done(s) for s in statuses)
        total = sum(s.job.timesteps for s in statuses)
        head = Text.assemble(
            (f"{self.title}: ", "bold"),
            f"{counts['queued']} queued, {counts['running']} running, {counts['done']} done, ",
            (f"{counts['failed']} failed", "red" if counts["failed"] else ""),
            f", {retried} retried  ·  {steps:,}/{total:,} steps  ·  "
            f"{_clock(time.monotonic() - self.started)}"
            f"{eta(steps, total, time.monotonic() - self.started)}",
        )
        table = Table(box=None, pad_edge=False, show_header=False)
        for column in ("job", "where", "attempt", "phase", "bar", "steps"):
            table.add_column(column, justify="right" if column == "steps" else "left")
        running = [s for s in statuses if s.state == "running"]
        rows = shown = 0
        for status in running:
            if rows >= MAX_ROWS:
                break
            rows, shown = rows + 1, shown + 1
            table.add_row(
                status.job.name,
                status.cluster_id,
                f"try {status.attempts}",
                status.phase,
                # Training is over while the test window is walked: the bar pulses, not sits full.
                ProgressBar(
                    total=status.job.timesteps,
                    completed=_done(status),
                    width=30,
                    pulse=status.phase == "testing",
                ),
                "walking the test window"
                if status.phase == "testing"
                else f"{_done(status):,}/{status.job.timesteps:,}",
            )
            # A group's members, each on its own line (their steps share the group's total).
            each = status.job.timesteps // max(len(status.parts), 1)
            for name, steps in list(status.parts.items())[: MAX_ROWS - rows]:
                rows += 1
                done = min(steps, each)
                bar = ProgressBar(total=each, completed=done, width=30)
                table.add_row(f"  {name}", "", "", "", bar, f"{done:,}/{each:,}")
        more = (
            [Text(f"... and {len(running) - shown} more running")] if shown < len(running) else []
        )
        return Group(head, table, *more)


ETA_AFTER_S = 10.0  # the first seconds (imports, store attach) say nothing about the pace


def eta(done: int, total: int, elapsed: float) -> str:
    """'  ·  ETA m:ss' at the pace so far (all jobs' steps over the wall time), or nothing yet."""
    if done <= 0 or elapsed < ETA_AFTER_S or done >= total:
        return ""
    return f"  ·  ETA {_clock((total - done) * elapsed / done)}"


def _done(status: JobStatus) -> int:
    """Steps shown: PPO ends on a whole rollout, past the job's nominal count; the bar stops full."""
    return min(status.steps, status.job.timesteps)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
