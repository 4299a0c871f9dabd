"""Where jobs run, behind one interface: this machine's processes through a gate of slots, SLURM
job arrays, or this process. The launch loop (training.launcher.launch) asks a backend to submit
what waits, whether an attempt is still alive, to stop a hung one and to cancel everything; it
never tests the cluster's name."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import submitit
from submitit.core.utils import FailedJobError

from core.errors import UserError
from core.hardware import threads
from core.process import ProcessIdentity
from training.launcher import signals, slurm_queue
from training.launcher.orphans import kill_recorded_task
from training.launcher.task import HEARTBEATS_PER_DEADLINE, Placement, TrainTask
from training.launcher.workload import MultiTask

if TYPE_CHECKING:
    from training.launcher.status import Attempt, JobStatus, LaunchSettings, Running

CONTROLLER_LOG = "controllers.log"  # submitit's local controllers' own output
CANCEL_WAIT_S = 15.0  # submitit's local controller kills its task within about a second


class Backend:
    """Where a launch runs its jobs (the in-process one: in the launch loop itself)."""

    def __init__(self, settings: LaunchSettings) -> None:
        self.settings = settings


class QueueBackend(Backend, ABC):
    """A backend that submits jobs to processes it then watches (this machine, SLURM)."""

    missing_grace_s = 0.0  # how long a job may be missing from view before it is called dead
    first_state = "running"  # what a job is once submitted (SLURM: queued until it starts)

    @abstractmethod
    def submit(self, state: Running) -> list[tuple[JobStatus, Any, int | None]]:
        """Submit what waits (as much as may start now); (status, handle, slot) per submission."""

    @abstractmethod
    def alive(self, attempt: Attempt, fresh: bool, now: float) -> bool | None:
        """Whether the attempt's process or queue entry is still there (None: no news)."""

    @abstractmethod
    def started_line(self, status: JobStatus, handle: Any, slot: int | None) -> str:
        """The event line for a submission."""

    def refresh(self, state: Running, now: float) -> bool:
        """Read the cluster's view of the running attempts; True when it is fresh this turn."""
        return True

    def release(self, attempt: Attempt) -> None:
        """An attempt is over: whatever it held (a slot) is free again."""

    def stop(self, attempt: Attempt) -> None:
        """Cancel a hung attempt."""
        attempt.handle.cancel(check=False)

    def cancel_all(self, state: Running) -> None:
        for attempt in state.running:
            with contextlib.suppress(Exception):
                attempt.handle.cancel(check=False)


class LocalBackend(QueueBackend):
    """Processes on this machine: submitit's LocalExecutor starts every job it is given at once,
    so jobs wait here until one of the plan's slots (CPUs and GPU) is free. Each job is told who
    launched it (pid and start time): it stops by itself once this process is gone for good."""

    def __init__(self, settings: LaunchSettings) -> None:
        super().__init__(settings)
        self.free_slots = list(range(len(settings.slots)))
        self.held: dict[int, list[int]] = {}  # an attempt's first slot: every slot it holds
        self.launcher = ProcessIdentity.current()

    def submit(self, state: Running) -> list[tuple[JobStatus, Any, int | None]]:
        started = []
        while state.waiting:
            tasks = tasks_of(state.waiting[0].workload)
            if tasks > len(self.settings.slots):
                raise UserError(
                    f"{state.waiting[0].name} runs as {tasks} tasks at once, but the plan has "
                    f"{len(self.settings.slots)} slot(s) on this machine\n"
                    "  fix: fewer members a fold (--ensemble), or hardware.members_concurrent "
                    "at least the fold's members"
                )
            if tasks > len(self.free_slots):
                break
            slots, self.free_slots = self.free_slots[:tasks], self.free_slots[tasks:]
            self.held[slots[0]] = slots
            status = state.waiting.popleft()
            started.append((status, self._submit(status.workload, slots), slots[0]))
        return started

    def release(self, attempt: Attempt) -> None:
        if attempt.slot is not None:
            self.free_slots.extend(self.held.pop(attempt.slot, [attempt.slot]))
            self.free_slots.sort()

    def alive(self, attempt: Attempt, fresh: bool, now: float) -> bool | None:
        alive = attempt.handle.state == "RUNNING"
        if alive and attempt.running_since is None:
            attempt.running_since = attempt.submitted
        return alive

    def stop(self, attempt: Attempt) -> None:
        """Cancel and wait, so a retry never shares its folder with the hung attempt."""
        attempt.handle.cancel(check=False)  # SIGINT to its controller, which SIGKILLs the task
        _wait_ended([attempt])

    def cancel_all(self, state: Running) -> None:
        """Cancel every running job and wait until its processes are gone: the command exits
        with none of its jobs left behind."""
        super().cancel_all(state)
        _wait_ended(state.running)

    def started_line(self, status: JobStatus, handle: Any, slot: int | None) -> str:
        return f"start {status.name} (attempt {status.attempts}, slot {slot}, pid {handle.job_id})"

    def _submit(self, workload: Any, slots: list[int]) -> Any:
        settings = self.settings
        placements = tuple(replace(settings.slots[s], launcher=self.launcher) for s in slots)
        placement: Placement | tuple[Placement, ...] = (
            placements[0] if len(placements) == 1 else placements
        )
        executor = submitit.LocalExecutor(folder=settings.folder)
        gpus = sorted({p.gpu for p in placements if p.gpu is not None})
        executor.update_parameters(
            timeout_min=settings.timeout_min,  # submitit's default kills a local job after 2 min
            signal_delay_s=settings.signal_delay_s,
            visible_gpus=gpus,
            gpus_per_node=len(gpus),  # 0: CUDA_VISIBLE_DEVICES="" for a CPU job
            tasks_per_node=len(placements),  # a fedavg fold: its tasks, started together
        )
        # LocalExecutor copies this process's environment: the child starts with the job's limits.
        with (
            _environment(threads.thread_environment(workload.blas_threads)),
            _inherited_output(settings.folder / CONTROLLER_LOG),
            signals.interruptible_children(),
        ):
            return executor.submit(TrainTask(), workload, placement)


def _wait_ended(attempts: list[Attempt]) -> None:
    """Wait (CANCEL_WAIT_S at most) for cancelled local jobs' controllers to end; a task stopped
    (SIGSTOP) or busy may outlive its controller's cancel: it is killed by the identity its own
    heartbeat recorded (this attempt's), so no orphan goes on writing into its folder."""
    deadline = time.time() + CANCEL_WAIT_S
    while any(a.handle.state == "RUNNING" for a in attempts) and time.time() < deadline:
        time.sleep(0.1)
    for attempt in attempts:
        kill_recorded_task(attempt.status.workload.files.progress, attempt.submitted)


@dataclass
class _Queue:
    states: dict[str, str] | None = None  # squeue's last answer
    read: float = 0.0
    arrays: list[str] = field(default_factory=list)


class SlurmBackend(QueueBackend):
    """One job array per submission of what waits (failed jobs retry as a smaller one); the
    queue is read with squeue, which works without SLURM accounting."""

    def __init__(self, settings: LaunchSettings) -> None:
        super().__init__(settings)
        slurm_queue.require_commands()
        self.queue = _Queue()
        self.missing_grace_s = settings.queue_poll_s
        self.first_state = "queued"

    def submit(self, state: Running) -> list[tuple[JobStatus, Any, int | None]]:
        if not state.waiting:
            return []
        # One array per size of job: an array's jobs share their parameters (a fedavg fold's
        # job has a task per member or group, started together by srun).
        submitted = []
        for tasks in sorted({tasks_of(s.workload) for s in state.waiting}):
            batch = [s for s in state.waiting if tasks_of(s.workload) == tasks]
            handles = self._submit_array([s.workload for s in batch], tasks)
            array_id = handles[0].job_id.split("_")[0]
            self.queue.arrays.append(array_id)
            each = f", {tasks} tasks each (one torch.distributed group)" if tasks > 1 else ""
            state.tell(
                state.statuses,
                f"submitted SLURM array {array_id}: {len(batch)} job(s){each}, at most "
                f"{min(self.settings.array_parallelism, len(batch))} at once; logs in "
                f"{self.settings.folder}",
            )
            submitted += list(zip(batch, handles, strict=True))
        state.waiting.clear()
        return [(status, handle, None) for status, handle in submitted]

    def refresh(self, state: Running, now: float) -> bool:
        fresh = now - self.queue.read >= self.settings.queue_poll_s
        if state.running and fresh:
            ids = (a.handle.job_id.split("_")[0] for a in state.running)
            self.queue.states = slurm_queue.queue_states(ids)
            self.queue.read = now
        return fresh

    def alive(self, attempt: Attempt, fresh: bool, now: float) -> bool | None:
        queue = self.queue.states if fresh else None
        if queue is None:
            return None  # squeue did not answer: no news is not bad news
        state = queue.get(attempt.handle.job_id)
        alive = state is not None
        if state == "RUNNING" and attempt.running_since is None:
            attempt.running_since = now
        elif state != "RUNNING":
            attempt.running_since = None  # pending, or requeued after preemption
        status = attempt.status
        status.state = "running" if state == "RUNNING" else ("queued" if alive else status.state)
        return alive

    def cancel_all(self, state: Running) -> None:
        super().cancel_all(state)
        slurm_queue.cancel(self.queue.arrays)

    def started_line(self, status: JobStatus, handle: Any, slot: int | None) -> str:
        return f"queued {status.name} (attempt {status.attempts}, SLURM {handle.job_id})"

    def _submit_array(self, workloads: list[Any], tasks: int) -> list[Any]:
        settings = self.settings
        profile = settings.profile
        assert profile is not None, "slurm runs need a cluster profile"
        executor = submitit.SlurmExecutor(folder=settings.folder)
        parameters = profile.executor_parameters(tasks)
        limits = threads.thread_environment(workloads[0].blas_threads)
        parameters["setup"] = [f"export {k}={v}" for k, v in limits.items()] + parameters["setup"]
        executor.update_parameters(
            **parameters,
            signal_delay_s=settings.signal_delay_s,
            array_parallelism=settings.array_parallelism,
            job_name="ploutos",
        )
        placement = Placement(heartbeat_s=settings.dead_after_s / HEARTBEATS_PER_DEADLINE)
        handles: list[Any] = []
        try:
            with executor.batch():
                for workload in workloads:
                    handles.append(executor.submit(TrainTask(), workload, placement))
        except FileNotFoundError:
            raise UserError(
                "sbatch not found: --cluster slurm submits with SLURM's commands\n"
                "  fix: run from a machine where sbatch works (a login node), or use --cluster "
                "local"
            ) from None
        except FailedJobError as error:  # submitit's wrapper of sbatch's exit code and stderr
            said = str(error).strip() or "no message"
            raise UserError(
                f"sbatch refused the job array: {said}\n"
                f"  fix: check the cluster profile {profile.name} (partition, time, "
                "cpus_per_task, mem_gb, account, qos, sbatch lines) against `sinfo` and your "
                "site's limits"
            ) from None
        return handles


class InProcessBackend(Backend):
    """debug: this process, one job after another, errors returned (never a debugger); with
    groups that take turns (fedavg), a group's workloads step in turn until each is done."""


def tasks_of(workload: Any) -> int:
    """How many processes a workload runs as (training.launcher.workload: `tasks`, default 1)."""
    return workload.tasks if isinstance(workload, MultiTask) else 1


BACKENDS: dict[str, type[Backend]] = {
    "local": LocalBackend,
    "slurm": SlurmBackend,
    "debug": InProcessBackend,
}


def backend_for(settings: LaunchSettings) -> Backend:
    return BACKENDS[settings.cluster](settings)


@contextlib.contextmanager
def _inherited_output(log: Path) -> Iterator[None]:
    """Point this process's stdout and stderr at `log` while a child is started, so the child
    inherits the log instead of the terminal. submitit's local controller prints a traceback when
    it is cancelled (Ctrl-C, a hung job): that belongs in the run's log, not on the user's screen.
    Done by hand: LocalExecutor has no option for the controller's own output."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    target = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, target):
            os.close(fd)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
