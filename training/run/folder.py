"""A walk-forward run's folder: created with its jobs (members × folds) before any training.

The folder holds everything needed to resume or audit the run: the resolved config, the plan,
the command line, package versions, folds and the jobs with their seeds. `--resume RUN_DIR`
reads `jobs.json` back and runs what is unfinished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from core.atomic import write_json, write_text
from core.config import Config, dump_config, load_config
from core.errors import UserError
from core.features.regime import (
    REGIME_TAG,
    RegimeModel,
    applied_regime_store,
    check_regime_bars,
    fold_regime_store,
)
from core.features.resolved import inferred_settings
from core.features.store import FeatureStore, read_meta, store_problem
from core.folds import Fold
from core.hardware.planner import Plan
from core.redact import redact
from training.run.files import PRIVATE_DIR, RunFiles
from training.run.job import Job
from training.run.records import read_record

PACKAGES = ("numpy", "pandas", "torch", "stable-baselines3", "gymnasium", "ta-lib", "ploutos")
FOLD_SEED_STRIDE = 1000  # member m of fold f is seeded base_seed + f * stride + m


def make_jobs(
    run_dir: Path,
    store: FeatureStore,
    folds: list[Fold],
    config: Config,
    plan: Plan,
    stores: dict[int, FeatureStore] | None = None,
) -> list[Job]:
    """Every member of every fold; a job reads its fold's store (`stores`, default `store`)."""
    profiles = list(config.ensemble.risk_profiles)
    stores = stores or {}
    return [
        Job(
            run_dir=str(run_dir),
            store_path=str(stores.get(fold.index, store).path),
            fold=fold,
            member=member,
            seed=fold_seed(config, fold.index) + member,
            timesteps=config.ppo.total_timesteps,
            vec_env=config.hardware.vec_env,
            n_envs=plan.n_envs,
            n_steps=plan.n_steps,
            batch_size=plan.batch_size,
            device=plan.device,
            torch_threads=plan.torch_threads,
            blas_threads=plan.blas_threads,
            risk_profile=profiles[member % len(profiles)] if profiles else None,
        )
        for fold in folds
        for member in range(config.ensemble.size)
    ]


def fold_seed(config: Config, fold: int) -> int:
    """Member 0's seed of a fold; fedavg members all start from the network it initialises."""
    return config.ensemble.base_seed + fold * FOLD_SEED_STRIDE


def fold_stores(store: FeatureStore, folds: list[Fold], config: Config) -> dict[int, FeatureStore]:
    """The store each fold's jobs read: the run's, or with features.regime=hmm the run's plus
    the regime columns of an HMM fitted on that fold's training bars alone (seeded from the
    fold), written once before any job starts so every process attaches it by mmap."""
    if config.features.regime == "none":
        return {fold.index: store for fold in folds}
    states = config.features.regime_states
    for fold in folds:  # every fold refused before any is fitted
        check_regime_bars(states, len(fold.train), fold.index)
    return {
        fold.index: fold_regime_store(store, fold.train, states, fold_seed(config, fold.index))
        for fold in folds
    }


def job_store(job: Job, replayed: FeatureStore | None = None) -> FeatureStore:
    """The store a job's models read (the one seam for every env built for a job): its fold's.
    `replayed`: other bars its models are replayed on (--evaluate, --predict); with regime
    columns, the fold's fitted HMM is run over them (the run's own bars: the fold's store)."""
    path = Path(job.store_path)
    if replayed is None:
        return FeatureStore.attach(path)
    meta = read_meta(path)
    if meta is None and REGIME_TAG in path.name:
        raise _gone_fold_store(job)
    regime = (meta or {}).get("regime")
    if regime is None:  # the run's own store: the replay's stands in for it (it may be gone)
        return replayed
    if replayed.meta["hash"] == regime["base_hash"]:
        return FeatureStore.attach(path)
    return applied_regime_store(replayed, RegimeModel.from_json(regime["model"]))


def _gone_fold_store(job: Job) -> UserError:
    return UserError(
        f"{job.name}'s feature store {job.store_path} is not readable, and it holds the fold's "
        f"regime model\n  fix: ./start_training.sh --resume {job.run_dir} rebuilds it from "
        "the run's data, then replay again"
    )


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
    stores = fold_stores(store, folds, config)  # before the folder: a refusal leaves none
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
    run_dir = output / f"{stamp}-{slug}"
    suffix = 1
    while run_dir.exists():  # two runs in the same second
        suffix += 1
        run_dir = output / f"{stamp}-{slug}-{suffix}"
    try:
        run_dir.mkdir(parents=True, mode=PRIVATE_DIR)  # its parents: as the umask says
        run_dir = run_dir.resolve()
        jobs = make_jobs(run_dir, store, folds, config, plan, stores)
        _write_metadata(RunFiles(run_dir), config, plan, hardware, store, folds, jobs, argv)
    except OSError as error:
        raise UserError(
            f"cannot write the run folder {run_dir}: {error.strerror or error}\n"
            f"  fix: pass --output a folder you can write to (now {output}; default runs/)"
        ) from None
    return run_dir, jobs


def _write_metadata(
    files: RunFiles,
    config: Config,
    plan: Plan,
    hardware: dict[str, Any],
    store: FeatureStore,
    folds: list[Fold],
    jobs: list[Job],
    argv: Sequence[str],
) -> None:
    write_text(files.config, dump_config(config))
    inferred = inferred_settings(config, store.meta)
    if inferred:
        write_text(files.inferred_config, _inferred_yaml(inferred))
    write_json(files.plan, {"hardware": hardware, "plan": plan.to_json()})
    write_text(files.command, redact(command_text(argv)))
    write_json(files.versions, versions())
    write_json(files.fold_windows, [fold.to_json(store.timestamps, store.bar_ns) for fold in folds])
    write_json(
        files.jobs,
        {
            "store": str(store.path),
            "assets": store.assets,
            "seeds": {
                job.files.folder.relative_to(files.root).as_posix(): job.seed for job in jobs
            },
            "jobs": [job.to_json() for job in jobs],
        },
    )


def command_text(argv: Sequence[str]) -> str:
    """command.txt: the command as the user typed it (start_training.sh passes it on in
    PLOUTOS_COMMAND), then the Python call it became; the Python call alone without it."""
    call = " ".join([sys.executable, *argv])
    typed = os.environ.get("PLOUTOS_COMMAND", "").strip()
    return f"{typed}\n# as run: {call}\n" if typed else f"{call}\n"


def _inferred_yaml(settings: dict[str, dict[str, Any]]) -> str:
    header = (
        "# EnvSettings that were `auto` in config.yaml, as the feature store inferred them from the\n"
        "# data; the run's jobs, results and report read config.yaml with this file over it.\n"
    )
    return header + yaml.safe_dump(settings, sort_keys=False, default_flow_style=None)


def load_run(run_dir: Path) -> list[Job]:
    """The jobs of an existing run folder (for --resume), with a clear error if it is not one."""
    files = RunFiles(run_dir)
    if not files.jobs.exists():
        raise UserError(
            f"{run_dir} is not a Ploutos run folder (no {files.jobs.name})\n"
            "  fix: pass the folder the run printed, e.g. --resume runs/20261122-101500-quick"
        )
    document = read_record(files.jobs, "the run's job list")
    store = Path(document["store"])
    # Verified byte for byte once here, the resume's main process: its jobs only check sizes.
    problem = store_problem(store, checksums=True) if store.is_dir() else "gone"
    if problem:
        raise UserError(
            f"the run's feature store {store} is {problem}\n"
            "  fix: rebuild it with the run's config (./start_training.sh --config "
            f"{files.config} --dry-run), then resume"
        )
    # The folder may have moved, or be named from another directory: jobs live where it is now.
    here = str(run_dir.resolve())
    jobs = [dataclasses.replace(Job.from_json(job), run_dir=here) for job in document["jobs"]]
    _check_fold_stores(run_dir, store, jobs)
    return jobs


def _check_fold_stores(run_dir: Path, store: Path, jobs: list[Job]) -> None:
    """Each fold's own store (features.regime=hmm) verified, or rebuilt from the run's store
    when gone or damaged: its path names its inputs, so the rebuilt one is the one trained on."""
    own = {job.fold.index: job for job in jobs if Path(job.store_path) != store}
    if not own:
        return
    config = run_config(run_dir)
    base = FeatureStore.attach(store)
    for index, job in sorted(own.items()):
        rebuilt = fold_stores(base, [job.fold], config)[index]
        if rebuilt.path != Path(job.store_path):
            raise UserError(
                f"{job.name}'s feature store {job.store_path} cannot be rebuilt by this "
                f"version (it builds {rebuilt.path})\n  fix: start a new run"
            )


def run_store(run_dir: Path) -> FeatureStore:
    """The feature store the run's jobs trained on."""
    return FeatureStore.attach(read_record(RunFiles(run_dir).jobs, "the run's job list")["store"])


def run_config(run_dir: str | Path) -> Config:
    """The run's config, with `auto` data and feature settings as the store inferred them."""
    files = RunFiles(Path(run_dir))
    inferred = [files.inferred_config] if files.inferred_config.exists() else []
    return load_config([files.config, *inferred])


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for package in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found
