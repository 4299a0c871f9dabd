"""Every file and folder of a run and of a job, named once.

The writer (run folder), the trainer, the callbacks, the results, the report and `--resume` all
ask here, so a renamed file cannot leave one of them reading the old name. Names only: nothing
here reads or writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Run folders and launcher folders: their configs, logs, pickled workloads and a sweep's storage
# URL are the user's alone (mkdir's mode goes through the umask: a stricter one wins).
PRIVATE_DIR = 0o700


@dataclass(frozen=True)
class JobFiles:
    """One member × fold job: its checkpoints, their state file, logs and results."""

    folder: Path

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def state(self) -> Path:
        """The commit point: it names the live checkpoints, written after them."""
        return self.checkpoints / "state.json"

    @property
    def result(self) -> Path:
        """Present only when the job is done (a resumed run skips the job)."""
        return self.folder / "result.json"

    @property
    def tracks(self) -> Path:
        return self.folder / "test_tracks.npz"

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    @property
    def progress(self) -> Path:
        """Steps done and phase, rewritten by a running job: the launcher's heartbeat."""
        return self.folder / "progress.json"

    def checkpoint(self, kind: str, timesteps: int) -> Path:
        return self.checkpoints / f"{kind}-{timesteps:012d}.zip"


@dataclass(frozen=True)
class GroupFiles(JobFiles):
    """A population group's progress and summary; its members keep their own job folders (and
    their own result.json, which nothing may mistake the group's summary for)."""

    @property
    def result(self) -> Path:
        return self.folder / "group.json"


@dataclass(frozen=True)
class FoldJobFiles(JobFiles):
    """A fedavg fold's job: its members keep their own job folders and result.json."""

    @property
    def result(self) -> Path:
        return self.folder / "fold_job.json"


@dataclass(frozen=True)
class FedAvgFiles:
    """One fold's weight-averaging rounds: who was in with what share, and the average."""

    folder: Path

    def round(self, index: int) -> Path:
        return self.folder / f"round_{index:04d}"

    def rounds(self) -> list[int]:
        """Rounds that were recorded (averaged), in order."""
        found = (int(p.parent.name.split("_")[1]) for p in self.folder.glob("round_*/closed.json"))
        return sorted(found)

    def closed(self, index: int) -> Path:
        """The record of a round: participants and their shares, written before any commit."""
        return self.round(index) / "closed.json"

    def fused(self, index: int) -> Path:
        """The round's average, every member's weights after the round."""
        return self.round(index) / "fused.npz"

    def validation(self, index: int) -> Path:
        """The average's validation metrics (run settings, not a member's risk profile)."""
        return self.round(index) / "fused_validation.json"

    @property
    def job(self) -> JobFiles:
        """The fold's multi-task job: its progress (task 0's heartbeat) and summary."""
        return FoldJobFiles(self.folder)


@dataclass(frozen=True)
class RunFiles:
    """A run folder: what the run was (config, plan, jobs) and what it found (metrics, report)."""

    root: Path

    # Written before any job starts: enough to resume or audit the run.
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def inferred_config(self) -> Path:
        """The `auto` settings as the feature store inferred them, layered over `config`."""
        return self.root / "config_inferred.yaml"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def command(self) -> Path:
        return self.root / "command.txt"

    @property
    def versions(self) -> Path:
        return self.root / "versions.json"

    @property
    def fold_windows(self) -> Path:
        return self.root / "folds.json"

    @property
    def jobs(self) -> Path:
        return self.root / "jobs.json"

    # Written by the jobs, then by the results and the report.
    @property
    def folds(self) -> Path:
        """One folder per fold, one per member inside it (TensorBoard's --logdir)."""
        return self.root / "folds"

    def fold(self, index: int) -> Path:
        return self.folds / f"fold_{index:02d}"

    def ensemble_tracks(self, index: int) -> Path:
        """The ensemble's test tracks on the fold (its members' actions combined)."""
        return self.fold(index) / "ensemble_tracks.npz"

    def ensemble_members(self, index: int) -> Path:
        """Which members and which aggregate made `ensemble_tracks` (redone when they change)."""
        return self.fold(index) / "ensemble.json"

    def fedavg(self, index: int) -> FedAvgFiles:
        return FedAvgFiles(self.fold(index) / "fedavg")

    def fused_model(self, index: int) -> Path:
        """The fold's fused model (ensemble.mode fedavg): its best round on validation, as an
        SB3 .zip that `PPO.load` reads."""
        return self.fold(index) / "fused.zip"

    def fused_tracks(self, index: int) -> Path:
        return self.fold(index) / "fused_tracks.npz"

    def fused_record(self, index: int) -> Path:
        """Every round's participants, weights and validation, and the round kept."""
        return self.fold(index) / "fused.json"

    def fold_metrics(self, index: int) -> Path:
        return self.fold(index) / "metrics.json"

    def job(self, fold: int, member: int) -> JobFiles:
        return JobFiles(self.fold(fold) / f"member_{member:02d}")

    def group(self, fold: int, first_member: int) -> GroupFiles:
        return GroupFiles(self.fold(fold) / f"group_{first_member:02d}")

    def job_folders(self) -> list[JobFiles]:
        """Every job folder on disk (member × fold), in fold and member order."""
        return [JobFiles(p) for p in sorted(self.folds.glob("fold_*/member_*")) if p.is_dir()]

    def checkpoint_files(self) -> list[Path]:
        """Every checkpoint any job of this run folder saved."""
        return [p for job in self.job_folders() for p in sorted(job.checkpoints.glob("*.zip"))]

    @property
    def launcher(self) -> Path:
        """submitit's pickles and logs (launcher.log_dir: auto)."""
        return self.root / "launcher"

    @property
    def failures(self) -> Path:
        """Jobs that failed after every retry, with their errors (absent when none did)."""
        return self.root / "failures.json"

    # A sweep (--tune): the study's storage, its trials' folders and what it found.
    @property
    def tuning(self) -> Path:
        return self.root / "tuning"

    @property
    def tuning_journal(self) -> Path:
        """The study's default storage (Optuna's journal file)."""
        return self.tuning / "journal.log"

    @property
    def storage_url(self) -> Path:
        """--storage URL for the sweep's workers while it runs: 0600, never in a pickle."""
        return self.tuning / "storage.url"

    def trial(self, number: int) -> Path:
        """A trial's own run folder: its config (the run's with the trial's values) and members."""
        return self.tuning / "trials" / f"trial_{number:04d}"

    def tuning_worker(self, index: int) -> JobFiles:
        """A sweep worker's progress (heartbeat) and result, where the launcher looks for a job's."""
        return JobFiles(self.tuning / "workers" / f"worker_{index:02d}")

    @property
    def trials_table(self) -> Path:
        return self.tuning / "trials.csv"

    @property
    def best_params(self) -> Path:
        """The best trial's values as YAML that `--config` takes."""
        return self.tuning / "best_params.yaml"

    @property
    def tuning_summary(self) -> Path:
        return self.tuning / "tuning.md"

    @property
    def tuning_metrics(self) -> Path:
        return self.tuning / "tuning.json"

    @property
    def sweep(self) -> Path:
        """The sweep this run's settings came from (--tune --then-train): its trials count in the
        run's Deflated Sharpe Ratio."""
        return self.root / "sweep.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def oos_returns(self) -> Path:
        return self.root / "oos_returns.csv"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def report(self) -> Path:
        return self.root / "report.md"


def checked_run_files(run_dir: Path) -> RunFiles:
    """The files of a training run folder that --resume can continue, or a clear refusal."""
    from core.errors import UserError

    files = RunFiles(run_dir)
    if not files.config.exists():
        raise UserError(
            f"{run_dir} is not a Ploutos run folder (no {files.config.name})\n"
            "  fix: pass the folder the run printed, e.g. --resume runs/20261122-101500-quick"
        )
    if files.tuning.exists():
        raise UserError(
            f"{run_dir} is a sweep's folder (--tune): --resume continues training runs only\n"
            "  fix: to add trials to a study, start it with --storage postgresql://... and join it "
            "again with --tune --study-name NAME --storage URL; to train its best params, pass "
            f"--config {files.best_params}"
        )
    return files
