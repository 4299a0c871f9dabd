"""The suite's own CPU shares (tests/conftest.py): under pytest-xdist each worker plans for its
share of the CPUs, and a test marked every_cpu gets them all back."""

from __future__ import annotations

import os

import pytest

from tests.conftest import PINNABLE, SUITE_CPUS, every_cpu, worker_share

pytestmark = pytest.mark.skipif(not PINNABLE, reason="no CPU affinity on this platform")


def test_a_test_runs_on_its_workers_share_and_every_cpu_restores_it() -> None:
    assert os.sched_getaffinity(0) == worker_share()
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) >= 2 and len(SUITE_CPUS) >= 2:
        assert len(worker_share()) < len(SUITE_CPUS)  # a share, not the machine
    with every_cpu():
        assert os.sched_getaffinity(0) == SUITE_CPUS
    assert os.sched_getaffinity(0) == worker_share()


@pytest.mark.every_cpu
def test_a_test_marked_every_cpu_runs_on_every_cpu_of_the_suite() -> None:
    assert os.sched_getaffinity(0) == SUITE_CPUS
