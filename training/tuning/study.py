"""Where a sweep's trials live and how they are judged early: storage, sampler, pruner.

The default storage is a journal file in the study folder (`JournalFileBackend`, file-locked:
safe for workers on one machine or one shared filesystem). `--storage URL` takes any SQLAlchemy
URL (PostgreSQL for many machines) with heartbeats, so a killed worker's trial is failed and
retried by the next worker that looks. SQLite is refused for parallel workers: it locks the
whole database per write and Optuna's own docs advise against it for concurrent processes.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.config import TuningConfig
from core.errors import UserError
from core.redact import hide_password, keep_secret, redact

MAX_RETRIES = 2  # a trial whose worker died is run again at most this many times


def open_storage(
    url: str | None, journal: Path, workers: int, heartbeat_s: int = 30, grace_s: int = 120
) -> Any:
    """tuning.heartbeat_s and tuning.grace_s: how a dead worker's trial is found (RDB only)."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend

    if url is None:
        journal.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(journal)))
    keep_secret(url)
    if url.startswith("sqlite") and workers > 1:
        raise UserError(
            f"--storage {hide_password(url)}: SQLite locks the whole database on every write, so {workers} "
            "workers would fail each other's trials with 'database is locked'\n"
            "  fix: drop --storage (a journal file in the study folder serves workers on one "
            "machine) or use postgresql://... for workers on several machines"
        )
    try:
        with _experimental_ok():
            return RDBStorage(
                url,
                heartbeat_interval=heartbeat_s,
                grace_period=grace_s,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                    max_retry=MAX_RETRIES
                ),
            )
    except (ImportError, optuna.exceptions.StorageInternalError, Exception) as error:
        raise UserError(
            f"cannot open the study storage {hide_password(url)}: "
            f"{type(error).__name__}: {redact(str(error))}\n"
            "  fix: check the URL (postgresql://user:password@host:port/database), that the "
            "server is up, and that its driver (psycopg) is installed"
        ) from None


def open_study(name: str, storage: Any, tuning: TuningConfig, worker: int) -> Any:
    """Create the study, or join it (workers, --resume)."""
    import optuna

    return optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        # constant_liar: a trial asked while others run sees them at a pessimistic value, so a
        # batch of trials (a population group, parallel workers) is not many copies of one point
        sampler=optuna.samplers.TPESampler(seed=tuning.sampler_seed + worker, constant_liar=True),
        pruner=pruner_of(tuning),
        load_if_exists=True,
    )


def pruner_of(tuning: TuningConfig) -> Any:
    """Each validation evaluation of each fold x seed is a step, so a trial reports tens of
    values: enough for Wilcoxon's signed-rank test against the best trial's values at the same
    steps (it cannot reject with fewer than about 5 pairs), and for the median rule per step."""
    import optuna

    if tuning.pruner == "wilcoxon":
        with _experimental_ok():
            return optuna.pruners.WilcoxonPruner(p_threshold=tuning.wilcoxon_p_threshold)
    if tuning.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
    return optuna.pruners.NopPruner()


@contextlib.contextmanager
def heartbeats(storage: Any, trial_ids: list[int]) -> Iterator[None]:
    """While a batch trains, each of its trials' heartbeats is recorded every
    storage.heartbeat_interval (RDB storages; nothing otherwise), so a killed worker's trials
    are failed and retried. By hand: Optuna's heartbeat thread is private and beats one trial."""
    import threading

    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()  # RDB storages
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            for trial_id in trial_ids:
                storage.record_heartbeat(trial_id)
            if stop.wait(timeout=interval):
                return

    thread = threading.Thread(target=beat, name="trial heartbeats", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def _experimental_ok() -> Iterator[None]:
    """Optuna flags heartbeats and the Wilcoxon pruner as experimental; we chose them (and pin
    Optuna's major version), so the warning would only worry the user."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield
