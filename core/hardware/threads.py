"""Thread limits for every process: environment variables before numpy loads, then runtime caps.

BLAS and OpenMP size their pools when the library loads, so the variables must be in the
environment before the first `import numpy` in a process; children inherit them. threadpoolctl
and `torch.set_num_threads` then enforce the plan inside processes that are already running.
This module imports nothing heavy at module level, so it is safe to import first.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)
HEAVY_MODULES = ("numpy", "torch", "scipy", "numexpr", "numba")


def thread_environment(threads: int) -> dict[str, str]:
    return dict.fromkeys(THREAD_VARIABLES, str(threads))


def export_thread_limits(
    threads: int, environ: MutableMapping[str, str] | None = None
) -> list[str]:
    """Set every thread variable; return the heavy modules already imported (too late for them)."""
    target = os.environ if environ is None else environ
    target.update(thread_environment(threads))
    return [name for name in HEAVY_MODULES if name in sys.modules]


def process_thread_budget(blas_threads: int, torch_threads: int) -> int:
    """Most OS threads one process may hold: the main thread plus each pool's helpers.

    torch keeps two pools of `torch_threads` (ATen's OpenMP team and MKL's) that take turns, so
    the CPU-busy threads stay at max(blas, torch): the number the planner counts per process.
    """
    return 1 + (blas_threads - 1) + 2 * (torch_threads - 1)


def enforce_thread_limits(blas_threads: int, torch_threads: int) -> None:
    """Cap the pools of a running process (threadpoolctl for BLAS/OpenMP, torch for its own)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=blas_threads)
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(torch_threads)
    # Raises once inter-op work has run or it was already set; the pool then stays as it is.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


@dataclass(frozen=True)
class ThreadLimitedFactory:
    """Wraps an env factory so each env worker process enforces its limits before building the env.

    Picklable (a plain dataclass) because SB3's SubprocVecEnv and submitit pickle what they run.
    """

    make: Callable[[], Any]
    blas_threads: int = 1
    torch_threads: int = 1

    def __call__(self) -> Any:
        enforce_thread_limits(self.blas_threads, self.torch_threads)
        return self.make()
