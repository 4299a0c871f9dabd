"""One trial: the run's config with the trial's values, a member per fold x seed trained on the
train window and judged on the validation window only; the value is their aggregate.

Every validation evaluation is reported as the next step, in a fixed order (fold by fold, seed by
seed), so pruners compare trials on the same instances. Every trial trains the same seeds (common
random numbers): differences between trials come from their values, not their luck.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import write_text
from core.config import dump_config
from core.redact import redact
from training.run.files import RunFiles
from training.run.folder import load_run
from training.run.job import Hooks, Job
from training.tuning.space import suggest, trial_config

COUNTED = (
    "COMPLETE",
    "PRUNED",
    "RUNNING",
)  # trials that use up the budget (a failed one is retried)


class OverBudget(Exception):
    """Another worker took the study's last trial first."""


class Diverged(Exception):
    """A member's validation Sharpe is not a number: the trial's values broke training."""


class Objective:
    def __init__(self, run_dir: str, n_trials: int, worker: int, hooks: Hooks) -> None:
        from training.run.folder import run_config

        self.files = RunFiles(Path(run_dir))
        self.config = run_config(run_dir)
        self.jobs: list[Job] = load_run(self.files.root)  # folds x tuning.seeds_per_trial
        self.n_trials, self.worker, self.hooks = n_trials, worker, hooks

    def __call__(self, trial: Any) -> float:
        import optuna

        from training.member.trainer import train_only

        trial.set_user_attr("worker", self.worker)
        trial.set_user_attr("pid", os.getpid())
        if _rank(trial) >= self.n_trials:
            trial.set_user_attr("over_budget", True)
            raise OverBudget(f"the study's {self.n_trials} trials are taken")
        values = suggest(trial, self.config.tuning.space)
        folder = self.files.trial(trial.number)
        shutil.rmtree(folder, ignore_errors=True)  # a retried trial starts clean
        folder.mkdir(parents=True)
        write_text(
            folder / "config.yaml", dump_config(trial_config([self.files.config], [], values))
        )
        if self.files.inferred_config.exists():
            shutil.copy(self.files.inferred_config, folder / self.files.inferred_config.name)
        step = 0

        def validated(result: dict[str, float]) -> None:
            nonlocal step
            sharpe = result["sharpe"]
            if not math.isfinite(sharpe):
                raise Diverged(f"validation Sharpe {sharpe} at {result['timesteps']:,} steps")
            trial.report(sharpe, step)
            step += 1
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step} (validation Sharpe {sharpe:.2f})")

        hooks = Hooks(
            advance=self.hooks.advance,
            warn=self.hooks.warn,
            phase=self.hooks.phase,
            preemption=self.hooks.preemption,  # a trial's training stops at a safe point too
            validated=validated,
        )
        instances = []
        try:
            for job in self.jobs:
                state = train_only(dataclasses.replace(job, run_dir=str(folder)), hooks)
                best = max(state.evaluations, key=lambda e: e["sharpe"])
                instances.append(best)
        except Diverged as error:
            trial.set_user_attr("fail_reason", f"diverged: {error}")
            raise
        except optuna.TrialPruned:
            raise
        except Exception as error:  # recorded with the trial; Optuna marks it failed
            trial.set_user_attr("fail_reason", redact(f"{type(error).__name__}: {error}"))
            raise
        finally:
            for leftover in RunFiles(folder).checkpoint_files():
                leftover.unlink()  # a sweep keeps its trials' numbers, not their weights
        sharpes = [e["sharpe"] for e in instances]
        combine = np.median if self.config.tuning.aggregate == "median" else np.mean
        value = float(combine(sharpes))
        middle = min(instances, key=lambda e: abs(e["sharpe"] - value))
        trial.set_user_attr("instance_sharpes", sharpes)
        trial.set_user_attr("instance_trades", [int(e["trades"]) for e in instances])
        for key in ("sharpe_per_bar", "bars", "skew", "kurtosis"):
            trial.set_user_attr(key, middle[key])
        return value


def _rank(trial: Any) -> int:
    """How many trials before this one use up the budget: the storage numbers trials in the
    order they were created, so every worker agrees on who came first."""
    study = trial.study
    return sum(
        t.state.name in COUNTED
        for t in study.get_trials(deepcopy=False)
        if t.number < trial.number and not t.user_attrs.get("over_budget")
    )
