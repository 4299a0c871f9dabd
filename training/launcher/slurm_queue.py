"""What SLURM still holds of our jobs, from `squeue`: it works without accounting.

submitit reads job states from `sacct`; on a cluster without accounting every state stays
UNKNOWN and a dead job is never noticed. squeue lists pending, running and completing jobs; a
job that is in none of them and left no result is dead. Hand-written: two commands, no library.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable

from core.errors import UserError

SQUEUE_TIMEOUT_S = 30
# srun: submitit's SlurmExecutor; sbatch: submission; squeue, scancel: this module.
COMMANDS = ("sbatch", "srun", "squeue", "scancel")


def require_commands() -> None:
    """Refuse a SLURM launch from a machine without SLURM's commands, before anything is written
    (submitit would raise a RuntimeError only at the first submission, past the run folder)."""
    missing = [name for name in COMMANDS if shutil.which(name) is None]
    if missing:
        raise UserError(
            f"--cluster slurm needs SLURM's commands, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not on PATH here\n"
            "  fix: run from a machine where sbatch works (a login node), add SLURM's bin "
            "folder to PATH, or use --cluster local"
        )


def queue_states(array_ids: Iterable[str]) -> dict[str, str] | None:
    """{"123_4": "RUNNING", ...} for the tasks of these jobs SLURM still holds; None when squeue
    could not answer (controller busy or down), which must not be taken for "all gone"."""
    ids = sorted(set(array_ids))
    if not ids:
        return {}
    try:
        answer = subprocess.run(
            ["squeue", "--noheader", "--array", "--format=%i %T", "--jobs", ",".join(ids)],
            capture_output=True,
            text=True,
            timeout=SQUEUE_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if answer.returncode != 0:
        # Every listed job already left the queue (and slurmctld forgot it): nothing is held.
        return {} if "Invalid job id" in answer.stderr else None
    states = {}
    for line in answer.stdout.splitlines():
        job_id, _, state = line.strip().partition(" ")
        if job_id:
            states[job_id] = state
    return states


def cancel(job_ids: Iterable[str], signal: str | None = None) -> None:
    """scancel the jobs (array ids cancel every task); best effort, as on Ctrl-C."""
    ids = sorted(set(job_ids))
    if not ids:
        return
    command = ["scancel", *([f"--signal={signal}"] if signal else []), *ids]
    subprocess.run(command, capture_output=True, timeout=SQUEUE_TIMEOUT_S, check=False)
