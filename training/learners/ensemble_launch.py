"""An ensemble's launch, above both learners: what the config names that the planned learner
cannot run (or a callback that does not import) stops here, before any job."""

from __future__ import annotations

from core.config import LearnerName
from training.launcher.launch import LaunchSettings, Outcome, Tell, launch
from training.learners.registry import LEARNERS
from training.run.folder import run_config
from training.run.job import Job


def launch_ensemble(
    jobs: list[Job], settings: LaunchSettings, tell: Tell, learner: LearnerName, group_size: int
) -> Outcome:
    """Train the run's members with the planned learner."""
    from training.member.user_callbacks import callback_classes

    chosen = LEARNERS[learner]
    if jobs:
        config = run_config(jobs[0].run_dir)
        callback_classes(config)
        chosen.refuse(config)
    return launch(chosen.workloads(jobs, settings, group_size), settings, tell)
