"""A walk-forward run on this machine: its folder, its jobs (members × folds), running them.

The folder is created before any training and holds everything needed to resume or audit
the run: the resolved config, the plan, the command line, package versions, folds and the jobs
with their seeds. `--resume RUN_DIR` reads `jobs.json` back and runs what is unfinished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import platform
import re
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from core.atomic import write_json, write_text
from core.config import Config, dump_config
from core.errors import UserError
from core.features.store import FeatureStore
from core.folds import Fold
from core.hardware.planner import Plan
from training.trainer import Hooks, Job, run_job

PACKAGES = ("numpy", "pandas", "torch", "stable-baselines3", "gymnasium", "ta-lib", "ploutos")
FOLD_SEED_STRIDE = 1000  # member m of fold f is seeded base_seed + f * stride + m


def make_jobs(
    run_dir: Path, store: FeatureStore, folds: list[Fold], config: Config, plan: Plan
) -> list[Job]:
    device = plan.device
    vec_env = config.hardware.vec_env
    return [
        Job(
            run_dir=str(run_dir),
            store_path=str(store.path),
            fold=fold,
            member=member,
            seed=config.ensemble.base_seed + fold.index * FOLD_SEED_STRIDE + member,
            timesteps=config.ppo.total_timesteps,
            vec_env=vec_env,
            n_envs=plan.n_envs,
            n_steps=plan.n_steps,
            batch_size=plan.batch_size,
            device=device,
            torch_threads=plan.torch_threads,
        )
        for fold in folds
        for member in range(config.ensemble.size)
    ]


def create_run(
    output: Path,
    name: str,
    config: Config,
    plan: Plan,
    hardware: dict[str, Any],
    store: FeatureStore,
    folds: list[Fold],
    argv: Sequence[str],
) -> tuple[Path, list[Job]]:
    """runs/<UTC timestamp>-<name>/ with the run's metadata, before any job starts."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
    run_dir = output / f"{stamp}-{slug}"
    suffix = 1
    while run_dir.exists():  # two runs in the same second
        suffix += 1
        run_dir = output / f"{stamp}-{slug}-{suffix}"
    run_dir.mkdir(parents=True)
    run_dir = run_dir.resolve()
    jobs = make_jobs(run_dir, store, folds, config, plan)
    timestamps = store.timestamps
    write_text(run_dir / "config.yaml", dump_config(config))
    write_json(run_dir / "plan.json", {"hardware": hardware, "plan": plan.to_json()})
    write_text(run_dir / "command.txt", " ".join([sys.executable, *argv]) + "\n")
    write_json(run_dir / "versions.json", versions())
    write_json(run_dir / "folds.json", [fold.to_json(timestamps, store.bar_ns) for fold in folds])
    write_json(
        run_dir / "jobs.json",
        {
            "store": str(store.path),
            "assets": store.assets,
            "seeds": {job.folder.relative_to(run_dir).as_posix(): job.seed for job in jobs},
            "jobs": [job.to_json() for job in jobs],
        },
    )
    return run_dir, jobs


def load_run(run_dir: Path) -> list[Job]:
    """The jobs of an existing run folder (for --resume), with a clear error if it is not one."""
    path = run_dir / "jobs.json"
    if not path.exists():
        raise UserError(
            f"{run_dir} is not a Ploutos run folder (no jobs.json)\n"
            "  fix: pass the folder the run printed, e.g. --resume runs/20261122-101500-quick"
        )
    document = json.loads(path.read_text())
    store = Path(document["store"])
    if not (store / "meta.json").exists():
        raise UserError(
            f"the run's feature store {store} is gone\n"
            "  fix: rebuild it with the run's config (./start_training.sh --config "
            f"{run_dir / 'config.yaml'} --dry-run), then resume"
        )
    # The folder may have moved, or be named from another directory: jobs live where it is now.
    here = str(run_dir.resolve())
    return [dataclasses.replace(Job.from_json(job), run_dir=here) for job in document["jobs"]]


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for package in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


def run_jobs(jobs: list[Job], show_progress: bool) -> list[dict[str, Any]]:
    """Every job in turn, under one progress bar for the whole run (folds × members × steps)."""
    results = []
    finished = 0
    with _run_progress(jobs, show_progress) as (progress, task, console):
        for number, job in enumerate(jobs, 1):
            label = f"job {number}/{len(jobs)} ({job.name})"

            def phase(what: str, label: str = label) -> None:
                if progress is not None:
                    progress.update(task, description=f"{label}: {what}")

            def advance(steps: int) -> None:
                if progress is not None:
                    progress.advance(task, steps)

            def warn(message: str, label: str = label) -> None:
                console.print(f"[yellow]warning[/] {label}: {message}", highlight=False)

            results.append(run_job(job, Hooks(advance=advance, warn=warn, phase=phase)))
            finished += job.timesteps
            if progress is not None:  # early stops and rollout rounding: snap to the job's end
                progress.update(task, completed=finished)
    return results


@contextlib.contextmanager
def _run_progress(jobs: list[Job], enabled: bool) -> Iterator[tuple[Progress | None, Any, Console]]:
    console = Console(file=sys.stderr)
    if not enabled:
        yield None, None, console
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    total = sum(job.timesteps for job in jobs)
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("starting", total=total)
        yield progress, task, progress.console
