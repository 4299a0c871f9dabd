"""A batch of trials: each trial is the run's config with its values, a member per fold x seed
trained on the train window and judged on the validation window only; its value aggregates them.

The batch's members train through the run's learner (training.learners): the separate learner
one after another, the population learner as groups of trials whose values share a shape (the
keys a group can vary per member differ, nothing else), each trial's values per member.

Every validation evaluation is reported as the trial's next step, in a fixed order, so pruners
compare trials on the same instances; a pruned trial's members leave the group and the others go
on. Every trial trains the same seeds (common random numbers): differences between trials come
from their values, not their luck.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import write_text
from core.config import LearnerName, dump_config
from core.redact import redact
from training.learners.learner import Trained
from training.learners.registry import LEARNERS
from training.population.member_values import shape_of
from training.run.files import RunFiles
from training.run.folder import load_run
from training.run.job import Hooks, Job, LeaveTraining
from training.tuning.space import suggest, trial_config

COUNTED = (
    "COMPLETE",
    "PRUNED",
    "RUNNING",
)  # trials that use up the budget (a failed one is retried)


@dataclass
class TrialRun:
    """One trial of a batch: its values, its members' jobs, what its validations came to."""

    trial: Any
    values: dict[str, Any]
    jobs: list[Job]
    steps: int = 0  # validations reported so far
    pruned: str | None = None
    failed: str | None = None
    group: int | None = None  # the first trial number of the group it trained in
    trained: list[Trained] = field(default_factory=list)
    values_now: dict[str, Any] = field(default_factory=dict)  # after PBT's explore
    lineage: list[dict[str, Any]] = field(default_factory=list)  # PBT's copies into this trial
    exploits: int = 0

    def over(self) -> str | None:
        return self.pruned or self.failed


class Objective:
    def __init__(
        self, run_dir: str, n_trials: int, worker: int, hooks: Hooks, learner: LearnerName
    ) -> None:
        from training.run.folder import run_config

        self.files = RunFiles(Path(run_dir))
        self.config = run_config(run_dir)
        self.jobs: list[Job] = load_run(self.files.root)  # folds x tuning.seeds_per_trial
        self.n_trials, self.worker, self.hooks = n_trials, worker, hooks
        self.learner = LEARNERS[learner]

    def ask(self, study: Any, count: int) -> list[TrialRun]:
        """Up to `count` new trials of the study, each within the global budget (one that is
        not is given way to and told failed, marked over_budget)."""
        from optuna.trial import TrialState

        batch = []
        for _ in range(count):
            trial = study.ask()
            trial.set_user_attr("worker", self.worker)
            trial.set_user_attr("pid", os.getpid())
            if _rank(trial) >= self.n_trials:
                trial.set_user_attr("over_budget", True)
                study.tell(trial, state=TrialState.FAIL)
                break
            batch.append(self._prepare(trial))
        return batch

    def _prepare(self, trial: Any) -> TrialRun:
        values = suggest(trial, self.config.tuning.space)
        folder = self.files.trial(trial.number)
        shutil.rmtree(folder, ignore_errors=True)  # a retried trial starts clean
        folder.mkdir(parents=True)
        write_text(
            folder / "config.yaml", dump_config(trial_config([self.files.config], [], values))
        )
        if self.files.inferred_config.exists():
            shutil.copy(self.files.inferred_config, folder / self.files.inferred_config.name)
        jobs = [dataclasses.replace(job, run_dir=str(folder)) for job in self.jobs]
        return TrialRun(trial, values, jobs)

    def groups(self, batch: list[TrialRun]) -> list[list[TrialRun]]:
        """The batch's trials by shape (population learner), else one trial at a time."""
        if self.learner.name != "population":
            return [[run] for run in batch]
        shapes: dict[str, list[TrialRun]] = {}
        for run in batch:
            shapes.setdefault(shape_of(run.values), []).append(run)
        return list(shapes.values())

    def run(self, study: Any, batch: list[TrialRun], schedule: Any = None) -> None:
        """Train every trial of the batch, then tell the study each one's value or state."""
        from training.tuning.study import heartbeats

        with heartbeats(study._storage, [run.trial._trial_id for run in batch]):
            for group in self.groups(batch):
                self._run_group(study, group, schedule)

    def _run_group(self, study: Any, group: list[TrialRun], schedule: Any) -> None:
        """One group of the batch trained together (one trial: the separate learner)."""
        number = min(run.trial.number for run in group)
        for run in group:
            run.group = number
            run.trial.set_user_attr("group", number)
        jobs = [job for run in group for job in run.jobs]
        hooks = [self._member_hooks(run) for run in group for _ in run.jobs]
        between = schedule(group) if schedule is not None else None
        try:
            trained = self.learner.train_for_validation(jobs, self.hooks, hooks, between)
        except Exception as error:  # the group could not train (e.g. its values make a config
            # that cannot): its trials fail with the reason; trials that keep failing stop the
            # worker (training.tuning.worker)
            _fail_all(study, group, redact(f"{type(error).__name__}: {error}"))
            return
        finally:
            for run in group:
                for leftover in RunFiles(Path(run.jobs[0].run_dir)).checkpoint_files():
                    leftover.unlink()  # a sweep keeps its trials' numbers, not their weights
        start = 0
        for run in group:
            run.trained = trained[start : start + len(run.jobs)]
            start += len(run.jobs)
            self._tell(study, run)

    def _member_hooks(self, run: TrialRun) -> Hooks:
        """One member's hooks: its validations are its trial's steps (and may prune it)."""

        def validated(result: dict[str, float]) -> None:
            if run.over():
                raise LeaveTraining(run.over() or "")
            sharpe = result["sharpe"]
            if not math.isfinite(sharpe):
                run.failed = (
                    f"diverged: validation Sharpe {sharpe} at {result['timesteps']:,} steps"
                )
                raise LeaveTraining(run.failed)
            run.trial.report(sharpe, run.steps)
            run.steps += 1
            if run.trial.should_prune():
                run.pruned = f"pruned at step {run.steps} (validation Sharpe {sharpe:.2f})"
                raise LeaveTraining(run.pruned)

        part, warn = self.hooks.part, self.hooks.warn

        def trial_part(name: str, steps: int) -> None:  # a group's line per trial's member
            if part is not None:
                part(f"trial {run.trial.number} {name}", steps)

        def trial_warn(message: str) -> None:
            if warn is not None:
                warn(f"trial {run.trial.number}: {message}")

        return Hooks(
            advance=self.hooks.advance,
            warn=trial_warn,
            phase=self.hooks.phase,
            preemption=self.hooks.preemption,  # a trial's training stops at a safe point too
            validated=validated,
            part=trial_part,
            left=run.over,
        )

    def _tell(self, study: Any, run: TrialRun) -> None:
        from optuna.trial import TrialState

        trial = run.trial
        if run.lineage:
            trial.set_user_attr("pbt_lineage", run.lineage)
            trial.set_user_attr("pbt_exploits", run.exploits)
            trial.set_user_attr("pbt_values", run.values_now)
        errors = [t.error for t in run.trained if t.error is not None]
        if run.pruned:
            study.tell(trial, state=TrialState.PRUNED)
            return
        if run.failed or errors:
            reason = run.failed or redact(errors[0])
            trial.set_user_attr("fail_reason", reason)
            study.tell(trial, state=TrialState.FAIL)
            return
        instances = [max(t.state.evaluations, key=lambda e: e["sharpe"]) for t in run.trained]
        sharpes = [e["sharpe"] for e in instances]
        combine = np.median if self.config.tuning.aggregate == "median" else np.mean
        value = float(combine(sharpes))
        middle = min(instances, key=lambda e: abs(e["sharpe"] - value))
        trial.set_user_attr("instance_sharpes", sharpes)
        trial.set_user_attr("instance_trades", [int(e["trades"]) for e in instances])
        for key in ("sharpe_per_bar", "bars", "skew", "kurtosis"):
            trial.set_user_attr(key, middle[key])
        study.tell(trial, value)


def _fail_all(study: Any, group: list[TrialRun], reason: str) -> None:
    from optuna.trial import TrialState

    for run in group:
        run.trial.set_user_attr("fail_reason", reason)
        study.tell(run.trial, state=TrialState.FAIL)


def _rank(trial: Any) -> int:
    """How many trials before this one use up the budget: the storage numbers trials in the
    order they were created, so every worker agrees on who came first."""
    study = trial.study
    return sum(
        t.state.name in COUNTED
        for t in study.get_trials(deepcopy=False)
        if t.number < trial.number and not t.user_attrs.get("over_budget")
    )
