"""Small runs for launcher tests: a run folder whose jobs train in a few seconds each."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.config import Config
from core.folds import split
from core.hardware.machine import detect
from core.hardware.planner import Plan, plan
from tests.helpers.walk_forward import ar1_frames, bars_needed, learnable_config, store_of
from training.run.folder import create_run
from training.run.job import Job


@dataclass(frozen=True)
class SmallRun:
    run_dir: Path
    jobs: list[Job]
    config: Config
    plan: Plan


def small_run(folder: Path, members: int, timesteps: int = 4096, *overrides: str) -> SmallRun:
    """One fold of `members` jobs of `timesteps` PPO steps on a two-asset AR(1) market."""
    config = learnable_config(
        f"ensemble.size={members}",
        f"ppo.total_timesteps={timesteps}",
        "walk_forward.max_folds=1",
        "training.eval_every_steps=2048",
        "training.tensorboard=false",
        "launcher.dead_after_s=30",
        *overrides,
    )
    store = store_of(folder, ar1_frames(bars_needed(config), 2, 0.3, seed=5), config)
    folds = split(np.asarray(store.timestamps), store.bar_ns, config)
    resources = plan(
        detect(), config, n_assets=len(store.assets), feature_names=store.feature_names
    )
    run_dir, jobs = create_run(folder / "runs", "test", config, resources, {}, store, folds, ["t"])
    return SmallRun(run_dir, jobs, config, resources)


def wait_for_steps(job: Job, at_least: int, timeout_s: float = 180.0) -> dict:
    """The job's progress once it has trained `at_least` steps (its pid included); fails at once
    when the job is past training, so a test never waits out a job it can no longer interrupt."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            progress = json.loads(job.files.progress.read_text())
        except (OSError, ValueError):
            progress = {}
        phase = progress.get("phase")
        if phase == "training" and progress.get("steps", 0) >= at_least:
            return progress
        if phase in ("testing", "done"):
            raise AssertionError(f"{job.name} finished training before {at_least} steps were seen")
        time.sleep(0.05)
    raise AssertionError(f"{job.name} did not reach {at_least} steps in {timeout_s} s")


class Interference:
    """A thread that acts on running jobs; its failure fails the test (not just the thread)."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(action,), daemon=True)
        self.thread.start()

    def _run(self, action: Callable[[], None]) -> None:
        try:
            action()
        except BaseException as error:  # re-raised in the test by join()
            self.error = error

    def join(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


def kill(pid: int, how: signal.Signals) -> None:
    os.kill(pid, how)


class Requeued(Exception):
    """What PreemptAfter's requeue raises: the job would end here and be requeued."""


class PreemptAfter:
    """A preemption request (training.run.job.Preemption) that arrives once `steps` steps are
    trained; its requeue raises Requeued, where a real one would exit for the scheduler."""

    requeues = True

    def __init__(self, steps: int) -> None:
        self.steps, self.seen = steps, 0

    @property
    def requested(self) -> bool:
        return self.seen >= self.steps

    def requeue(self) -> None:
        raise Requeued

    def advance(self, steps: int) -> None:
        self.seen += steps
