"""What the launcher runs, and what it tells: the only words it shares with a workload.

A workload (one member on one fold, a sweep worker, next a population learner's group) names its
files and resources and runs itself in the job's process; the launcher pickles it, places it,
watches its heartbeat and retries it, without knowing what it is. A workload that can also run
in steps (a generator that yields whenever it waits for others) lets the in-process backend give
a group of them turns. A user's mistake inside a job crosses the process boundary as a
structured result, not as the text of a traceback.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Protocol, runtime_checkable

from training.run.files import JobFiles
from training.run.job import Hooks

USER_ERROR = "user_error"  # the key of the result a job returns for a user's mistake


class Workload(Protocol):
    """Anything the launcher can run: picklable, with a name, files and thread limits."""

    @property
    def name(self) -> str: ...

    @property
    def files(self) -> JobFiles:
        """Its folder: `progress` (heartbeat) while it runs, `result` once it is done."""
        ...

    @property
    def timesteps(self) -> int: ...

    @property
    def blas_threads(self) -> int: ...

    @property
    def torch_threads(self) -> int: ...

    def run(self, hooks: Hooks) -> dict[str, Any]:
        """Do the work in this process; the result is what `Outcome.results` returns."""
        ...


@runtime_checkable
class MultiTask(Workload, Protocol):
    """A workload that runs as `tasks` processes started together (one multi-task job: a fedavg
    fold); task 0 writes `files`, task r its own heartbeat in `task_files(r)`."""

    @property
    def tasks(self) -> int: ...

    def task_files(self, rank: int) -> JobFiles: ...


@runtime_checkable
class Stepwise(Protocol):
    """A workload that can take turns with the others of its `group` in one process."""

    @property
    def group(self) -> int: ...

    def steps(self, hooks: Hooks) -> Generator[None, None, dict[str, Any]]:
        """Yields whenever it waits for the rest of its group; returns its result."""
        ...


def user_error_result(message: str) -> dict[str, Any]:
    """The result a job returns instead of raising a UserError: not retried, shown as it is."""
    return {USER_ERROR: message}


def user_error_of(result: Any) -> str | None:
    """The user's mistake a job result carries, if it is one."""
    if isinstance(result, dict) and isinstance(result.get(USER_ERROR), str):
        return result[USER_ERROR]
    return None
