"""What runs inside a job's process: placement, a heartbeat, and preemption at a safe point.

submitit pickles a `TrainTask` with a workload (training.launcher.workload: a member's `Job`, a
sweep worker, ...) and a `Placement`, and calls it in the job's process (a local child, a SLURM
array task, or this process in debug mode). A UserError raised by the workload comes back as a
structured result (`user_error_result`), so the launcher knows a mistake without reading text.
On SLURM's USR2 the task does not save in the middle of a PPO update: it lets training reach the
next rollout boundary, commits the checkpoint of that moment, then hands over to submitit's
handler, which calls `checkpoint()` and requeues the job; the requeued job resumes from it.
A local job also stops for good at its next safe point (the same commit, then exit, no requeue)
on SIGTERM or SIGHUP, or once the launcher that started it is gone (its pid ended, or now names a
process with another start time): nobody is left to watch it, and a `--resume` continues it.
A SLURM job has no launcher to watch: it is meant to outlive the command that submitted it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

import submitit

from core.atomic import write_json
from core.errors import UserError
from core.hardware import threads
from core.process import ProcessIdentity
from training.launcher.workload import MultiTask, Workload, user_error_result
from training.run.files import JobFiles
from training.run.job import Hooks

HEARTBEATS_PER_DEADLINE = 6  # a job writes its progress this many times per launcher.dead_after_s
STEPS_EVERY_S = 0.5  # while it trains, its steps also reach the file (and the display) this often
LAUNCHER_POLL_S = 1.0  # a local job looks this often whether its launcher still runs
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # a local job: stop for good at the next safe point
STOPPED_STATUS = 128 + signal.SIGTERM  # the exit status of a job stopped for good


@dataclass(frozen=True)
class Placement:
    """Where one job runs on a local machine: its CPUs (affinity) and its GPU."""

    cpus: tuple[int, ...] = ()  # empty: keep the inherited affinity (SLURM sets its own)
    gpu: int | None = None
    heartbeat_s: float = 10.0
    launcher: ProcessIdentity | None = None  # a local job stops once it is gone; None: outlive it


class TrainTask(submitit.helpers.Checkpointable):
    """Train one job. Checkpointable: on requeue submitit pickles `checkpoint()`'s submission,
    the same task and job, which resumes from the committed checkpoint."""

    def __call__(
        self, job: Workload, placement: Placement | tuple[Placement, ...]
    ) -> dict[str, Any]:
        multi = isinstance(job, MultiTask) and job.tasks > 1
        rank = submitit.JobEnvironment().global_rank if multi else 0
        if isinstance(placement, tuple):  # a multi-task job's tasks: a slot each
            placement = placement[rank]
        if placement.cpus and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, placement.cpus)
        # The launcher exported the thread variables before this process started; numpy is
        # already loaded (submitit imports it), so cap the running pools as well.
        threads.enforce_thread_limits(job.blas_threads, job.torch_threads)
        # Task 0 writes the job's heartbeat; the others their own (a fedavg fold's members).
        files = job.task_files(rank) if isinstance(job, MultiTask) and rank else job.files
        progress = ProgressFile(files, job.timesteps, placement.heartbeat_s)
        local = placement.launcher is not None
        preemption = SignalPreemption(progress, STOP_SIGNALS if local else ())
        preemption.install()
        if placement.launcher is not None:
            LauncherWatch(placement.launcher).start()
        with progress:
            hooks = Hooks(
                advance=progress.advance,
                part=progress.advance_part,
                warn=lambda message: print(f"warning: {message}", flush=True),
                phase=preemption.phase,
                preemption=preemption,
            )
            try:
                result = job.run(hooks)
            except UserError as mistake:  # the user's to fix: returned, never retried
                progress.phase("failed")
                return user_error_result(str(mistake))
            progress.phase("done")
            return result


class ProgressFile:
    """progress.json in the job folder, rewritten every `interval` seconds by a daemon thread:
    steps done and phase for the live display, and a heartbeat for dead-job detection; steps
    advancing rewrite it sooner (every STEPS_EVERY_S at most), so a short job's progress shows."""

    def __init__(self, files: JobFiles, total: int, interval: float) -> None:
        self.path, self.total, self.interval = files.progress, total, interval
        self.steps, self.current = 0, "starting"
        self.parts: dict[str, int] = {}  # a group's members: steps of each
        self._written = 0.0  # time.monotonic() of the last write
        self.process = ProcessIdentity.current()  # an orphan is killed only if it is this one
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def __enter__(self) -> ProgressFile:
        self.write()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
        self.write()

    def advance(self, steps: int) -> None:
        self.steps += steps
        if time.monotonic() - self._written >= min(self.interval, STEPS_EVERY_S):
            self.write()

    def advance_part(self, name: str, steps: int) -> None:
        self.parts[name] = self.parts.get(name, 0) + steps

    def phase(self, name: str) -> None:
        self.current = name
        self.write()

    def write(self) -> None:
        self._written = time.monotonic()
        write_json(
            self.path,
            {
                "steps": self.steps,
                "total": self.total,
                "phase": self.current,
                "parts": dict(self.parts),
                **self.process.to_json(),
                "updated": time.time(),
            },
        )

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            self.write()


class SignalPreemption:
    """Defers a stop to the next rollout boundary while PPO trains; outside training (loading,
    testing, waiting at a barrier) there is nothing unsaved, so it happens at once. Preemption
    (submitit's USR2) requeues; a stop signal (a local job's SIGTERM or SIGHUP) exits for good."""

    def __init__(self, progress: ProgressFile, stop_signals: tuple[int, ...] = ()) -> None:
        self.progress = progress
        self.signum = getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG)
        self.handler = signal.getsignal(self.signum)
        self.stop_signals = stop_signals
        self._requested = False
        self._requeues = True
        self._training = False

    @property
    def requested(self) -> bool:
        return self._requested

    @property
    def requeues(self) -> bool:
        return self._requeues

    def install(self) -> None:
        if callable(self.handler):  # a submitit job process (not debug mode)
            signal.signal(self.signum, self._on_signal)
        for signum in self.stop_signals:
            if signal.getsignal(signum) is not signal.SIG_IGN:  # `nohup` ignores SIGHUP: kept
                signal.signal(signum, self._on_stop)

    def phase(self, name: str) -> None:
        self._training = name == "training"
        self.progress.phase(name)
        if self._requested and not self._training:
            self.requeue()

    def requeue(self) -> None:
        if not self._requeues:
            self.progress.phase("stopped")
            print("stopped at a safe point (no requeue)", flush=True)
            sys.exit(STOPPED_STATUS)
        self.progress.phase("requeued")
        if callable(self.handler):
            self.handler(self.signum, None)  # checkpoint(), requeue, exit: does not return...
            sys.exit(0)  # ...but in task r > 0 of a multi-task job: submitit requeues from task 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        print(
            f"preemption signal {signal.Signals(signum).name}: checkpoint at the next safe point",
            flush=True,
        )
        self._at_safe_point()

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        print(f"{signal.Signals(signum).name}: stop at the next safe point", flush=True)
        self._requeues = False
        self._at_safe_point()

    def _at_safe_point(self) -> None:
        if self._training:
            self._requested = True
        else:
            self.requeue()


class LauncherWatch:
    """A daemon thread that sends this process SIGTERM once its launcher is gone for good, so
    the stop happens in the main thread at a safe point (a thread cannot end the process there)."""

    def __init__(self, launcher: ProcessIdentity) -> None:
        self.launcher = launcher
        self._thread = threading.Thread(target=self._watch, name="launcher-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        while self.launcher.running() is not False:
            time.sleep(LAUNCHER_POLL_S)
        print(f"the launcher (pid {self.launcher.pid}) is gone", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
