"""Shared fixtures: the default config, the shipped hardware profiles, synthetic machines."""

from __future__ import annotations

import os
import subprocess
import sys
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
