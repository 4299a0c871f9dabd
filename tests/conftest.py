"""Shared fixtures: the default config, the shipped hardware profiles, synthetic machines."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from core.config import Config, load_config
from core.hardware.gpus import Gpu
from core.hardware.machine import Hardware

REPO_ROOT = Path(__file__).resolve().parents[1]
MACHINE_FILES = sorted((REPO_ROOT / "config" / "hardware").glob("*.yaml"))
ENTRY = REPO_ROOT / "training" / "train_walk_forward.py"
PYTHON = sys.executable
# Every CPU this suite was given, read before a pytest-xdist worker is pinned to its share
# (Linux; elsewhere there is no affinity to set and the workers share the machine).
PINNABLE = hasattr(os, "sched_setaffinity")
SUITE_CPUS = frozenset(os.sched_getaffinity(0)) if PINNABLE else frozenset()


def worker_share() -> frozenset[int]:
    """The CPUs of this pytest-xdist worker: worker i of n takes every n-th CPU from the i-th
    (all of them outside xdist, with fewer CPUs than workers, or without affinity)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not PINNABLE or not worker.startswith("gw") or count < 2 or len(SUITE_CPUS) < count:
        return SUITE_CPUS
    return frozenset(sorted(SUITE_CPUS)[int(worker.removeprefix("gw")) :: count])


def _pin_xdist_worker() -> None:
    """Each worker runs on its own share: each test's hardware plan then fits its share, and the
    workers' training processes never compete for one core (unpinned, two workers took longer
    than one: 1,813 s against 1,684 s)."""
    if PINNABLE:
        os.sched_setaffinity(0, worker_share())


_pin_xdist_worker()


@contextlib.contextmanager
def every_cpu() -> Iterator[None]:
    """This process, and what it starts meanwhile, on every CPU of the suite: for tests of
    multi-core behaviour and for daemons that own the machine (the SLURM node's CPUs)."""
    if not PINNABLE:
        yield
        return
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, SUITE_CPUS)
    try:
        yield
    finally:
        os.sched_setaffinity(0, mine)


@pytest.fixture(autouse=True)
def _every_cpu_when_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("every_cpu") is None:
        yield
        return
    with every_cpu():
        yield


settings.register_profile(
    "ploutos", deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ploutos")


@pytest.fixture(scope="session")
def default_config() -> Config:
    return load_config()


def machine(
    usable: int,
    memory_gb: float = 64.0,
    gpus: tuple[Gpu, ...] = (),
    logical: int | None = None,
    available_gb: float | None = None,
) -> Hardware:
    """A described machine for planner tests."""
    return Hardware(
        usable_cpus=usable,
        logical_cpus=logical or usable,
        physical_cores=logical or usable,
        memory_gb=memory_gb,
        memory_available_gb=available_gb if available_gb is not None else memory_gb,
        gpus=gpus,
        sources={"gpus": "test machine"},
        name="test machine",
    )


def run_snippet(code: str, drop_env: tuple[str, ...] = ()) -> str:
    """Run Python code in a fresh interpreter at the repository root; return its stdout."""
    env = {k: v for k, v in os.environ.items() if k not in drop_env}
    done = subprocess.run(
        [PYTHON, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True, env=env
    )
    return done.stdout
