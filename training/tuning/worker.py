"""A sweep worker: a launcher job that runs trials of one study until the study's budget is spent.

`--n-trials` is the study's budget, not each worker's (Optuna's `n_trials` counts per process): a
worker stops once that many trials have completed or been pruned. Trials are numbered by the
storage, so a trial that finds the budget already taken by trials before it gives way
(`OverBudget`, recorded and left out of every count). A trial whose worker died is failed and run
again: on an RDB storage by Optuna's heartbeats; on the journal file (no heartbeats) by the
worker heartbeat files the launcher already watches: a running trial whose worker's heartbeat is
older than `launcher.dead_after_s`, or which belongs to an earlier attempt of a worker, is failed
here and enqueued again with its values.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.atomic import read_json
from core.config import LearnerName
from core.errors import UserError
from training.run.files import JobFiles, RunFiles
from training.run.job import Hooks

WAIT_S = 2.0  # a worker whose study has only running trials left looks again this often
MAX_FAILURES_IN_A_ROW = 3  # a worker whose trials keep failing stops: failures use no budget


class TrialsKeepFailing(RuntimeError):
    """Every trial fails the same way: going on would loop forever without using the budget."""


@dataclass(frozen=True)
class TuneWorker:
    """One worker of a study, as the launcher runs it (paths and small numbers, like a Job)."""

    run_dir: str
    index: int
    workers: int
    n_trials: int
    study: str
    storage_file: str | None  # the --storage URL's 0600 file (None: the journal file)
    dead_after_s: float
    torch_threads: int
    blas_threads: int
    timesteps: int  # an upper bound of this worker's PPO steps, for the progress display
    learner: LearnerName = "separate"  # what trains a batch's members (training.learners)
    trials_at_once: int = 1  # trials asked together: a population group's worth

    @property
    def name(self) -> str:
        return f"tuning worker {self.index}"

    @property
    def files(self) -> JobFiles:
        return RunFiles(Path(self.run_dir)).tuning_worker(self.index)

    def run(self, hooks: Hooks) -> dict[str, Any]:
        return run_worker(self, hooks)


def run_worker(worker: TuneWorker, hooks: Hooks) -> dict[str, Any]:
    import optuna

    from core.atomic import write_json
    from training.run.folder import run_config
    from training.tuning.objective import Objective
    from training.tuning.pbt import pbt_schedule
    from training.tuning.study import open_storage, open_study

    files = RunFiles(Path(worker.run_dir))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tuning = run_config(worker.run_dir).tuning
    storage = open_storage(
        storage_url(worker.storage_file),
        files.tuning_journal,
        worker.workers,
        tuning.heartbeat_s,
        tuning.grace_s,
    )
    study = open_study(worker.study, storage, tuning, worker.index)
    objective = Objective(worker.run_dir, worker.n_trials, worker.index, hooks, worker.learner)
    schedule = pbt_schedule(tuning) if tuning.schedule == "pbt" else None
    ran = failures = 0
    while True:
        if worker.storage_file is None:
            _retry_orphans(study, storage, files, worker.dead_after_s)
        else:
            optuna.storages.fail_stale_trials(study)
        trials = [
            t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("over_budget")
        ]
        ended = sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
        if ended >= worker.n_trials:
            break
        running = sum(t.state.name == "RUNNING" for t in trials)
        waiting = any(t.state.name == "WAITING" for t in trials)
        if ended + running >= worker.n_trials and not waiting:
            if hooks.phase:
                hooks.phase("waiting for other workers' trials")
            time.sleep(WAIT_S)  # the last trials are someone else's: wait for them to end
            continue
        batch = objective.ask(study, min(worker.trials_at_once, worker.n_trials - ended - running))
        if not batch:
            continue  # given way to: the budget's last trials were taken meanwhile
        objective.run(study, batch, schedule)
        if hooks.phase:
            hooks.phase("between trials")  # told: a kill from here on loses no trial
        gc.collect()
        ran += len(batch)
        last = _mine(study, worker.index)
        failed = _failed(study)
        if all(run.trial.number in failed for run in batch):
            failures += len(batch)  # trials in a row: a group's count at once
        else:
            failures = 0
        if failures >= MAX_FAILURES_IN_A_ROW:
            raise TrialsKeepFailing(
                f"{worker.name}: {failures} trials in a row failed; the last one: "
                f"{last.user_attrs.get('fail_reason', 'an error') if last else 'an error'}\n"
                f"  fix: see {worker.files.folder.parent.parent / 'trials.csv'} once written, and "
                "the worker's log in the launcher folder; check tuning.space's ranges"
            )
    result = {"worker": worker.index, "trials_run": ran, "timesteps": 0}
    write_json(worker.files.result, result)
    return result


def _failed(study: Any) -> set[int]:
    return {t.number for t in study.get_trials(deepcopy=False) if t.state.name == "FAIL"}


def storage_url(secret_file: str | None) -> str | None:
    """The URL the sweep wrote for its workers: read here, so no pickle ever holds it."""
    if secret_file is None:
        return None
    try:
        return Path(secret_file).read_text().strip()
    except OSError as error:
        raise UserError(
            f"cannot read the sweep's storage URL {secret_file}: {error.strerror or error}\n"
            "  fix: the sweep that launched this worker removes it when it ends; start the "
            "sweep again (--tune --study-name NAME --storage URL joins the same study)"
        ) from None


def _mine(study: Any, worker: int) -> Any:
    """This worker's latest trial that was not given way to (over budget)."""
    own = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get("worker") == worker and not t.user_attrs.get("over_budget")
    ]
    return own[-1] if own else None


def _retry_orphans(study: Any, storage: Any, files: RunFiles, dead_after_s: float) -> None:
    """Journal storage: fail running trials whose worker is gone, and enqueue them again."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("worker")
        if owner is None:
            continue
        beat = read_json(files.tuning_worker(int(owner)).progress) or {}
        alive = beat.get("pid") == trial.user_attrs.get("pid") and (
            now - float(beat.get("updated", 0.0)) < dead_after_s
        )
        if alive:
            continue
        try:
            # FrozenTrial keeps its storage id private; the storage API needs it. The reason goes
            # first: a finished trial takes no more attributes.
            storage.set_trial_user_attr(trial._trial_id, "fail_reason", "its worker died")
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # another worker got there first
        if int(trial.user_attrs.get("retries", 0)) < 2:
            study.enqueue_trial(
                trial.params,
                user_attrs={
                    "retry_of": trial.number,
                    "retries": trial.user_attrs.get("retries", 0) + 1,
                },
            )
