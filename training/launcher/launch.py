"""Submit a run's jobs through submitit, watch them to the end, retry the ones that fail.

local: submitit's LocalExecutor starts every job it is given at once, so jobs wait here until one
of the plan's `members_concurrent` slots is free; each slot has its CPUs and GPU. slurm: what is
waiting goes out as one job array (failed jobs retry as a smaller one). debug: this process.
A job is done when submitit's result file says so; it failed when the result is an error, or when
its process or queue entry is gone without a result, or when its heartbeat stops; a failed job is
started again up to `max_retries` times, then reported, and the others go on.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import FailedJobError, pickle_load

from core.errors import UserError
from core.hardware import threads
from training.job import Job
from training.launcher import slurm_queue
from training.launcher.orphans import end_orphans, kill_recorded_task
from training.launcher.profile import ClusterProfile
from training.launcher.task import HEARTBEATS_PER_DEADLINE, Placement, TrainTask
from training.run_files import RunFiles

STARTUP_GRACE_S = 120.0  # imports and feature-store attach before a job's first heartbeat
POLL_S = 0.5  # result files and local processes: cheap to look at, and a slot must not idle
QUEUE_POLL_S = 5.0  # squeue asks slurmctld: not more often than this
USER_ERROR = f"{UserError.__module__}.{UserError.__name__}:"  # as a traceback's last line names it
CONTROLLER_LOG = "controllers.log"  # submitit's local controllers' own output
CANCEL_WAIT_S = 15.0  # submitit's local controller kills its task within about a second
ROUND_TURN_S = 0.05  # debug fedavg: pause when every member of the fold waits at its barrier


@dataclass(frozen=True)
class LaunchSettings:
    cluster: str  # local | slurm | debug
    folder: Path  # submitit's pickles and logs
    slots: tuple[Placement, ...]  # local: one per job allowed at once
    max_retries: int
    timeout_min: int
    signal_delay_s: int
    dead_after_s: float
    profile: ClusterProfile | None = None
    array_parallelism: int = 1
    rounds: bool = False  # ensemble.mode fedavg: a fold's members meet at barriers

    @property
    def queue_poll_s(self) -> float:
        return min(QUEUE_POLL_S, self.dead_after_s / HEARTBEATS_PER_DEADLINE)


@dataclass
class JobStatus:
    """One job as the display shows it."""

    job: Job
    state: str = "queued"  # queued | running | done | failed
    attempts: int = 0
    steps: int = 0
    phase: str = ""
    cluster_id: str = ""
    error: str = ""
    result: dict[str, Any] | None = None
    preemptions: int = 0


@dataclass
class _Attempt:
    status: JobStatus
    handle: Any  # a submitit Job
    slot: int | None
    submitted: float
    running_since: float | None = None
    missing_since: float | None = None


@dataclass(frozen=True)
class Outcome:
    statuses: list[JobStatus]

    @property
    def results(self) -> list[dict[str, Any]]:
        return [s.result for s in self.statuses if s.result is not None]

    @property
    def failures(self) -> dict[str, str]:
        return {s.job.name: s.error for s in self.statuses if s.state == "failed"}


Listener = Callable[[list[JobStatus], str | None], None]  # (statuses, event line or None)


@dataclass
class _Launch:
    settings: LaunchSettings
    statuses: list[JobStatus]
    tell: Listener
    waiting: deque[JobStatus] = field(default_factory=deque)
    running: list[_Attempt] = field(default_factory=list)
    free_slots: list[int] = field(default_factory=list)
    arrays: list[str] = field(default_factory=list)
    queue: dict[str, str] | None = None  # squeue's last answer
    queue_read: float = 0.0


def launch(jobs: list[Job], settings: LaunchSettings, tell: Listener) -> Outcome:
    """Run every unfinished job; return each job's final status (finished ones are reused)."""
    statuses = [JobStatus(job) for job in jobs]
    run = _Launch(settings, statuses, tell, free_slots=list(range(len(settings.slots))))
    unfinished = [job.files.progress for job in jobs if not job.files.result.exists()]
    for line in end_orphans(unfinished):
        tell(statuses, line)
    for status in statuses:
        if status.job.files.result.exists():  # a resumed run: this job is done
            _finish(status, _read_json(status.job.files.result))
        else:
            run.waiting.append(status)
            if settings.rounds:
                from training.fedavg.barrier import clear_left

                job = status.job
                clear_left(RunFiles(Path(job.run_dir)).fedavg(job.fold.index), job.member)
    tell(statuses, None)
    if settings.cluster == "debug":
        if settings.rounds:
            _run_rounds_in_process(run)
        else:
            _run_in_process(run)
        return Outcome(statuses)
    try:
        while run.waiting or run.running:
            _submit(run)
            _watch(run)
            tell(statuses, None)
            if run.running:
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        _cancel_all(run)
        raise
    return Outcome(statuses)


def _run_in_process(run: _Launch) -> None:
    """debug: one job after another in this process; errors are returned, never debugged."""
    executor = submitit.DebugExecutor(run.settings.folder)
    placement = Placement(heartbeat_s=run.settings.dead_after_s / HEARTBEATS_PER_DEADLINE)
    while run.waiting:
        status = run.waiting.popleft()
        status.attempts += 1
        status.state = "running"
        run.tell(run.statuses, f"start {status.job.name} (attempt {status.attempts}, in process)")
        handle = executor.submit(TrainTask(), status.job, placement)
        error = handle.exception()  # runs the job; DebugJob.result() would open pdb on error
        if error is None:
            _finish(status, handle.result())
            run.tell(run.statuses, f"done {status.job.name}")
        else:
            _failed(run, status, f"{type(error).__name__}: {error}", isinstance(error, UserError))


def _run_rounds_in_process(run: _Launch) -> None:
    """debug with fedavg: a fold's members take turns in this process, each training until it
    waits at the round's barrier, so the barrier fills without any other process."""
    from training.trainer import job_steps

    while run.waiting:
        fold = run.waiting[0].job.fold.index
        turn = [status for status in run.waiting if status.job.fold.index == fold]
        for status in turn:
            run.waiting.remove(status)
        active = [(status, _steps_of(run, status, job_steps)) for status in turn]
        while active:
            for entry in list(active):
                status, steps = entry
                try:
                    next(steps)
                    continue
                except StopIteration as done:
                    _finish(status, done.value)
                    run.tell(run.statuses, f"done {status.job.name}")
                except Exception as error:  # the member's failure, reported like a job's
                    mistake = isinstance(error, UserError)
                    _failed(run, status, f"{type(error).__name__}: {error}", mistake)
                    if status.state == "queued":  # retried at once, beside the others
                        run.waiting.remove(status)
                        active.append((status, _steps_of(run, status, job_steps)))
                active.remove(entry)
            if active:
                time.sleep(ROUND_TURN_S)


def _steps_of(run: _Launch, status: JobStatus, job_steps: Callable[..., Any]) -> Any:
    from training.job import Hooks

    status.attempts += 1
    status.state = "running"
    run.tell(run.statuses, f"start {status.job.name} (attempt {status.attempts}, in process)")
    name = status.job.name

    def warn(message: str) -> None:
        print(f"warning: {name}: {message}", flush=True)

    return job_steps(status.job, Hooks(warn=warn))


# Submitting ------------------------------------------------------------------------------------
def _submit(run: _Launch) -> None:
    if not run.waiting:
        return
    if run.settings.cluster == "local":
        while run.waiting and run.free_slots:
            slot = run.free_slots.pop(0)
            status = run.waiting.popleft()
            handle = _submit_local(run.settings, status.job, slot)
            _started(run, status, handle, slot)
    else:
        batch = list(run.waiting)
        run.waiting.clear()
        handles = _submit_array(run.settings, [s.job for s in batch])
        array_id = handles[0].job_id.split("_")[0]
        run.arrays.append(array_id)
        run.tell(
            run.statuses,
            f"submitted SLURM array {array_id}: {len(batch)} task(s), at most "
            f"{min(run.settings.array_parallelism, len(batch))} at once; logs in "
            f"{run.settings.folder}",
        )
        for status, handle in zip(batch, handles, strict=True):
            _started(run, status, handle, None)


def _started(run: _Launch, status: JobStatus, handle: Any, slot: int | None) -> None:
    status.attempts += 1
    status.state = "queued" if run.settings.cluster == "slurm" else "running"
    status.cluster_id = str(handle.job_id)
    run.running.append(_Attempt(status, handle, slot, time.time()))
    if slot is None:
        what = f"queued {status.job.name} (attempt {status.attempts}, SLURM {handle.job_id})"
    else:
        what = (
            f"start {status.job.name} (attempt {status.attempts}, slot {slot}, pid {handle.job_id})"
        )
    run.tell(run.statuses, what)


def _submit_local(settings: LaunchSettings, job: Job, slot: int) -> Any:
    placement = settings.slots[slot]
    executor = submitit.LocalExecutor(folder=settings.folder)
    gpus = [placement.gpu] if placement.gpu is not None else []
    executor.update_parameters(
        timeout_min=settings.timeout_min,  # submitit's default kills a local job after 2 min
        signal_delay_s=settings.signal_delay_s,
        visible_gpus=gpus,
        gpus_per_node=len(gpus),  # 0: CUDA_VISIBLE_DEVICES="" for a CPU job
    )
    # LocalExecutor copies this process's environment: the child starts with the job's limits.
    with (
        _environment(threads.thread_environment(job.blas_threads)),
        _inherited_output(settings.folder / CONTROLLER_LOG),
    ):
        return executor.submit(TrainTask(), job, placement)


def _submit_array(settings: LaunchSettings, jobs: list[Job]) -> list[Any]:
    profile = settings.profile
    assert profile is not None, "slurm runs need a cluster profile"
    executor = submitit.SlurmExecutor(folder=settings.folder)
    parameters = profile.executor_parameters()
    exports = [
        f"export {k}={v}" for k, v in threads.thread_environment(jobs[0].blas_threads).items()
    ]
    parameters["setup"] = exports + parameters["setup"]
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
            for job in jobs:
                handles.append(executor.submit(TrainTask(), job, placement))
    except FileNotFoundError:
        raise UserError(
            "sbatch not found: --cluster slurm submits with SLURM's commands\n"
            "  fix: run from a machine where sbatch works (a login node), or use --cluster local"
        ) from None
    except FailedJobError as error:  # submitit's wrapper of sbatch's exit code and stderr
        said = str(error).strip() or "no message"
        raise UserError(
            f"sbatch refused the job array: {said}\n"
            f"  fix: check the cluster profile {profile.name} (partition, time, cpus_per_task, "
            "mem_gb, account, qos, sbatch lines) against `sinfo` and your site's limits"
        ) from None
    return handles


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


# Watching --------------------------------------------------------------------------------------
def _watch(run: _Launch) -> None:
    now = time.time()
    fresh = now - run.queue_read >= run.settings.queue_poll_s
    if run.settings.cluster == "slurm" and run.running and fresh:
        run.queue = slurm_queue.queue_states(a.handle.job_id.split("_")[0] for a in run.running)
        run.queue_read = now
    for attempt in list(run.running):
        verdict = _verdict(attempt, run.settings, run.queue if fresh else None, now)
        if verdict is None:
            continue
        run.running.remove(attempt)
        if attempt.slot is not None:
            run.free_slots.append(attempt.slot)
            run.free_slots.sort()
        outcome, value = verdict
        if outcome == "success":
            _finish(attempt.status, value)
            run.tell(run.statuses, f"done {attempt.status.job.name}")
        else:
            log = attempt.handle.paths.stderr
            _failed(run, attempt.status, f"{value} (log: {log})", value.startswith(USER_ERROR))


def _verdict(
    attempt: _Attempt, settings: LaunchSettings, queue: dict[str, str] | None, now: float
) -> tuple[str, Any] | None:
    """("success", result) or ("error", why) once the attempt is over; None while it runs."""
    status, handle = attempt.status, attempt.handle
    if handle.paths.result_pickle.exists():
        return _read_outcome(handle.paths.result_pickle)
    beat = _read_progress(status, attempt)
    if settings.cluster == "local":
        alive = handle.state == "RUNNING"
        if alive and attempt.running_since is None:
            attempt.running_since = attempt.submitted
    else:
        if queue is None:
            return None  # squeue did not answer: no news is not bad news
        state = queue.get(handle.job_id)
        alive = state is not None
        if state == "RUNNING" and attempt.running_since is None:
            attempt.running_since = now
        elif state != "RUNNING":
            attempt.running_since = None  # pending, or requeued after preemption
        status.state = "running" if state == "RUNNING" else ("queued" if alive else status.state)
    if not alive:
        if handle.paths.result_pickle.exists():  # it wrote its result and exited just now
            return _read_outcome(handle.paths.result_pickle)
        if attempt.missing_since is None:
            attempt.missing_since = now
        if settings.cluster == "local" or now - attempt.missing_since >= settings.queue_poll_s:
            return "error", (
                "the job ended without a result (killed, out of memory, or its node failed)"
            )
        return None
    attempt.missing_since = None
    if attempt.running_since is not None:
        # Before its first heartbeat a job is importing and attaching: it gets a grace period.
        last = beat or attempt.running_since + STARTUP_GRACE_S
        silent = now - last
        if silent > settings.dead_after_s:
            _stop(handle, settings, status.job.files.progress, attempt.submitted)
            return "error", f"no heartbeat for {silent:.0f} s (launcher.dead_after_s); cancelled"
    return None


def _stop(handle: Any, settings: LaunchSettings, progress: Path, since: float) -> None:
    """Cancel a hung job; a local one is waited for, so a retry never shares its folder with it."""
    handle.cancel(check=False)  # local: SIGINT to its controller, which SIGKILLs the task
    if settings.cluster != "local":
        return  # scancel: SLURM ends it; a retry is a new job
    deadline = time.time() + CANCEL_WAIT_S
    while handle.state == "RUNNING" and time.time() < deadline:
        time.sleep(0.1)
    # A task stopped (SIGSTOP) or busy may outlive its controller's cancel: kill it by the pid
    # its own heartbeat recorded (this attempt's), so no orphan goes on writing into its folder.
    kill_recorded_task(progress, since)


def _read_progress(status: JobStatus, attempt: _Attempt) -> float:
    """Copy this attempt's steps and phase from its progress file; return the time of its last
    heartbeat (0 if it has written none yet)."""
    progress = _read_json(status.job.files.progress)
    updated = float(progress.get("updated", 0.0)) if progress else 0.0
    if not progress or updated < attempt.submitted:  # none yet, or an earlier attempt's
        return 0.0
    status.steps = int(progress.get("steps", 0))
    status.phase = str(progress.get("phase", ""))
    return updated


def _read_outcome(path: Path) -> tuple[str, Any]:
    outcome, value = pickle_load(path)
    if outcome == "success":
        return "success", value
    # The exception is the traceback's last unindented line and the indented ones after it
    # (a UserError's "  fix: ..." line).
    lines = [line for line in str(value).rstrip().splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if not line[0].isspace()]
    if not starts:
        return "error", "the job raised an error"
    return "error", "\n".join(lines[starts[-1] :])


def _finish(status: JobStatus, result: dict[str, Any]) -> None:
    status.state, status.result, status.error = "done", result, ""
    status.steps = int(result.get("timesteps", status.steps))
    status.preemptions = len(result.get("preempted_at", []))
    status.phase = "done"


def _failed(run: _Launch, status: JobStatus, error: str, mistake: bool = False) -> None:
    """Retry, unless retries are spent or the error is the user's (it would fail again)."""
    status.error = error
    if status.attempts <= run.settings.max_retries and not mistake:
        status.state = "queued"
        run.waiting.append(status)
        run.tell(run.statuses, f"retry {status.job.name}: {error}")
    else:
        status.state = "failed"
        run.tell(
            run.statuses, f"failed {status.job.name} after {status.attempts} attempt(s): {error}"
        )
        if run.settings.rounds:
            from training.fedavg.barrier import mark_left

            job = status.job
            mark_left(RunFiles(Path(job.run_dir)).fedavg(job.fold.index), job.member, error)


def _cancel_all(run: _Launch) -> None:
    for attempt in run.running:
        with contextlib.suppress(Exception):
            attempt.handle.cancel(check=False)
    if run.settings.cluster == "slurm":
        slurm_queue.cancel(run.arrays)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
