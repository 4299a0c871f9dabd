"""Submit a run's workloads through submitit, watch them to the end, retry the ones that fail.

Where they run is a backend (training.launcher.backends: this machine's slots, SLURM arrays, or
this process); what they are is theirs (training.launcher.workload): the launcher knows neither.
A job is done when submitit's result file says so; it failed when the result is an error, or when
its process or queue entry is gone without a result, or when its heartbeat stops; a failed job is
started again up to `max_retries` times, then reported, and the others go on. A user's mistake
(a structured result) is reported at once: it would fail again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from submitit.core.utils import pickle_load

from core.atomic import read_json
from core.redact import redact
from training.launcher import signals
from training.launcher.backends import QueueBackend, backend_for, tasks_of
from training.launcher.orphans import end_orphans
from training.launcher.status import (
    Attempt,
    JobStatus,
    LaunchSettings,
    Outcome,
    Running,
    Tell,
)
from training.launcher.task import HEARTBEATS_PER_DEADLINE, Placement, TrainTask
from training.launcher.workload import Stepwise, user_error_of
from training.run.files import PRIVATE_DIR
from training.run.job import Hooks

__all__ = ["JobStatus", "LaunchSettings", "Outcome", "Tell", "launch"]

STARTUP_GRACE_S = 120.0  # imports and feature-store attach before a job's first heartbeat
POLL_S = 0.5  # result files and local processes: cheap to look at, and a slot must not idle
ROUND_TURN_S = 0.05  # in process, in turns: pause when every member of a group waits


def launch(
    workloads: list[Any],
    settings: LaunchSettings,
    tell: Tell,
) -> Outcome:
    """Run every unfinished workload; return each one's final status (finished ones are reused)."""
    statuses = [JobStatus(workload) for workload in workloads]
    state = Running(settings, statuses, tell)
    unfinished = [w.files.progress for w in workloads if not w.files.result.exists()]
    for line in end_orphans(unfinished):
        tell(statuses, line)
    for status in statuses:
        if status.workload.files.result.exists():  # a resumed run: this one is done
            _finish(status, read_json(status.workload.files.result) or {})
        else:
            state.waiting.append(status)
    tell(statuses, None)
    settings.folder.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)  # before submitit's
    _forget_earlier_pickles(settings.folder)
    backend = backend_for(settings)
    if not isinstance(backend, QueueBackend):  # in process: the loop is the runner
        if settings.rounds and all(isinstance(s.workload, Stepwise) for s in state.waiting):
            _run_in_turns(state)
        else:
            _run_in_process(state)
        return Outcome(statuses)
    try:
        while state.waiting or state.running:
            for status, handle, slot in backend.submit(state):
                _started(state, backend, status, handle, slot)
            _watch(state, backend)
            tell(statuses, None)
            if state.running:
                time.sleep(POLL_S)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM / SIGHUP (training.launcher.signals)
        with signals.deferred():
            backend.cancel_all(state)
        raise
    return Outcome(statuses)


def _forget_earlier_pickles(folder: Path) -> None:
    """submitit's pickles from earlier launches go before this one submits: the launcher unpickles
    a job's result file, and a result file planted under a job id this launch gets (a local job
    id is a pid) would run its author's code. Earlier jobs are ended (end_orphans) or done."""
    for stale in folder.glob("*.pkl"):
        stale.unlink(missing_ok=True)


# In this process ---------------------------------------------------------------------------------
def _run_in_process(state: Running) -> None:
    """One workload after another; errors are returned, never debugged."""
    import submitit

    executor = submitit.DebugExecutor(state.settings.folder)
    placement = Placement(heartbeat_s=state.settings.dead_after_s / HEARTBEATS_PER_DEADLINE)
    while state.waiting:
        status = state.waiting.popleft()
        status.attempts += 1
        status.state = "running"
        state.tell(state.statuses, f"start {status.name} (attempt {status.attempts}, in process)")
        handle = executor.submit(TrainTask(), status.workload, placement)
        error = handle.exception()  # runs the job; DebugJob.result() would open pdb on error
        if error is not None:
            _failed(state, status, f"{type(error).__name__}: {error}")
            continue
        result = handle.result()
        mistake = user_error_of(result)
        if mistake is not None:
            _failed(state, status, f"UserError: {mistake}", mistake=True)
        else:
            _finish(status, result)
            state.tell(state.statuses, f"done {status.name}")


def _run_in_turns(state: Running) -> None:
    """A group's workloads take turns in this process, each running until it waits for the
    others (fedavg's barrier), so the group meets without any other process."""
    from core.errors import UserError

    while state.waiting:
        group = state.waiting[0].workload.group
        turn = [status for status in state.waiting if status.workload.group == group]
        for status in turn:
            state.waiting.remove(status)
        active = [(status, _steps_of(state, status)) for status in turn]
        while active:
            for entry in list(active):
                status, steps = entry
                try:
                    next(steps)
                    continue
                except StopIteration as done:
                    _finish(status, done.value)
                    state.tell(state.statuses, f"done {status.name}")
                except Exception as error:  # the workload's failure, reported like a job's
                    mistake = isinstance(error, UserError)
                    _failed(state, status, f"{type(error).__name__}: {error}", mistake)
                    if status.state == "queued":  # retried at once, beside the others
                        state.waiting.remove(status)
                        active.append((status, _steps_of(state, status)))
                active.remove(entry)
            if active:
                time.sleep(ROUND_TURN_S)


def _steps_of(state: Running, status: JobStatus) -> Any:
    status.attempts += 1
    status.state = "running"
    state.tell(state.statuses, f"start {status.name} (attempt {status.attempts}, in process)")
    name = status.name

    def warn(message: str) -> None:
        print(f"warning: {name}: {message}", flush=True)

    return status.workload.steps(Hooks(warn=warn))


# Through a backend -------------------------------------------------------------------------------
def _started(
    state: Running, backend: QueueBackend, status: JobStatus, handle: Any, slot: int | None
) -> None:
    status.attempts += 1
    status.state = backend.first_state
    status.cluster_id = str(handle.job_id)
    state.running.append(Attempt(status, handle, slot, time.time()))
    state.tell(state.statuses, backend.started_line(status, handle, slot))


def _watch(state: Running, backend: QueueBackend) -> None:
    now = time.time()
    fresh = backend.refresh(state, now)
    for attempt in list(state.running):
        verdict = _verdict(attempt, backend, state.settings, fresh, now)
        if verdict is None:
            continue
        state.running.remove(attempt)
        backend.release(attempt)
        outcome, value, mistake = verdict
        if outcome == "success":
            _finish(attempt.status, value)
            state.tell(state.statuses, f"done {attempt.status.name}")
        else:
            log = attempt.handle.paths.stderr
            _failed(state, attempt.status, f"{value} (log: {log})", mistake)


def _verdict(
    attempt: Attempt, backend: QueueBackend, settings: LaunchSettings, fresh: bool, now: float
) -> tuple[str, Any, bool] | None:
    """("success", result, False) or ("error", why, is_a_user_mistake) once the attempt is over;
    None while it runs."""
    status, handle = attempt.status, attempt.handle
    if handle.paths.result_pickle.exists():
        return _read_outcome(handle.paths.result_pickle)
    beat = _read_progress(status, attempt)
    alive = backend.alive(attempt, fresh, now)
    if alive is None:
        return None
    if not alive:
        if handle.paths.result_pickle.exists():  # it wrote its result and exited just now
            return _read_outcome(handle.paths.result_pickle)
        said = _other_task_error(handle, tasks_of(status.workload))
        if said is not None:  # a multi-task job's task 0 died: another task says what failed
            return "error", said, False
        if attempt.missing_since is None:
            attempt.missing_since = now
        if now - attempt.missing_since >= backend.missing_grace_s:
            why = "the job ended without a result (killed, out of memory, or its node failed)"
            return "error", why, False
        return None
    attempt.missing_since = None
    if attempt.running_since is not None:
        # Before its first heartbeat a job is importing and attaching: it gets a grace period.
        last = beat or attempt.running_since + STARTUP_GRACE_S
        silent = now - last
        if silent > settings.dead_after_s:
            backend.stop(attempt)
            why = f"no heartbeat for {silent:.0f} s (launcher.dead_after_s); cancelled"
            return "error", why, False
    return None


def _read_progress(status: JobStatus, attempt: Attempt) -> float:
    """Copy this attempt's steps and phase from its progress file; return the time of its last
    heartbeat (0 if it has written none yet)."""
    progress = read_json(status.workload.files.progress)
    updated = float(progress.get("updated", 0.0)) if progress else 0.0
    if not progress or updated < attempt.submitted:  # none yet, or an earlier attempt's
        return 0.0
    status.steps = int(progress.get("steps", 0))
    status.phase = str(progress.get("phase", ""))
    status.parts = {str(k): int(v) for k, v in (progress.get("parts") or {}).items()}
    return updated


def _read_outcome(path: Path) -> tuple[str, Any, bool]:
    """submitit's result file: a result, a user's mistake the task returned, or the exception
    (a traceback's last unindented line and the indented ones after it)."""
    outcome, value = pickle_load(path)
    if outcome == "success":
        mistake = user_error_of(value)
        if mistake is not None:
            return "error", f"UserError: {mistake}", True
        return "success", value, False
    lines = [line for line in str(value).rstrip().splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if not line[0].isspace()]
    if not starts:
        return "error", "the job raised an error", False
    return "error", "\n".join(lines[starts[-1] :]), False


def _other_task_error(handle: Any, tasks: int) -> str | None:
    """The first error a task r > 0 of a multi-task job returned, if any did."""
    for rank in range(1, tasks):
        path = handle.task(rank).paths.result_pickle
        if path.exists():
            outcome, value, _ = _read_outcome(path)
            if outcome == "error":
                return f"task {rank}: {value}"
    return None


def _finish(status: JobStatus, result: dict[str, Any]) -> None:
    status.state, status.result, status.error = "done", result, ""
    status.steps = int(result.get("timesteps", status.steps))
    status.preemptions = len(result.get("preempted_at", []))
    status.phase = "done"


def _failed(state: Running, status: JobStatus, error: str, mistake: bool = False) -> None:
    """Retry, unless retries are spent or the error is the user's (it would fail again)."""
    error = redact(error)  # recorded (failures.json) and shown: never a password
    status.error = error
    if status.attempts <= state.settings.max_retries and not mistake:
        status.state = "queued"
        state.waiting.append(status)
        state.tell(state.statuses, f"retry {status.name}: {error}")
    else:
        status.state = "failed"
        state.tell(
            state.statuses, f"failed {status.name} after {status.attempts} attempt(s): {error}"
        )
