"""The bars a finished run's agents are replayed on: FOLDER's feature store, built with the run's
own resolved settings, and refused when it is not the market the run was trained on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.config import Config, load_config
from core.errors import UserError
from core.features.resolved import with_inferred
from core.features.store import FeatureStore
from core.units import format_duration
from training.run.files import RunFiles
from training.run.records import read_record


def replay_config(run_dir: Path, data: Path | None) -> Config:
    """config.yaml with config_inferred.yaml's look-backs and windows over it (so FOLDER's
    features are computed as the run's were, whatever FOLDER's span would infer), reading
    FOLDER; the data section stays as the run was given it, so FOLDER's bar and calendar are
    inferred afresh and compared with the run's."""
    files = RunFiles(run_dir)
    config = load_config([files.config])
    if files.inferred_config.exists():
        inferred = load_config([files.config, files.inferred_config])
        config = config.model_copy(
            update={
                name: getattr(inferred, name)
                for name in ("features", "env", "evaluation", "reward")
            }
        )
    if data is None:
        return config
    if not data.is_dir():
        raise UserError(
            f"--data {data} is not a folder\n"
            "  fix: pass the folder with one CSV/Parquet file per asset, like the run's data"
        )
    path = str(data.resolve())
    return config.model_copy(update={"data": config.data.model_copy(update={"path": path})})


def replay_run_files(run_dir: Path) -> RunFiles:
    """A training run's folder with at least its config and job list, or a clear refusal."""
    files = RunFiles(run_dir)
    if not files.config.exists() or not files.jobs.exists():
        raise UserError(
            f"{run_dir} is not a Ploutos training run folder (no {files.config.name} or "
            f"{files.jobs.name})\n  fix: pass the folder a training run printed, e.g. "
            "runs/20261122-101500-quick"
            + (" (a --tune folder: pass its final run's folder)" if files.tuning.exists() else "")
        )
    return files


def replay_store(
    run_dir: Path, data: Path | None, show_progress: bool
) -> tuple[FeatureStore, Config]:
    """FOLDER's store (built now, or the cached one) and the run's config resolved for it."""
    from core.features.build import feature_store
    from core.hardware.machine import detect
    from training.views.data import progress_bar

    files = replay_run_files(run_dir)
    config = replay_config(run_dir, data)
    machine = detect()
    where = str(data) if data else "the run's data"
    try:
        with progress_bar(enabled=show_progress) as progress:
            store, _ = feature_store(
                config,
                workers=machine.usable_cpus,
                progress=progress,
                memory_gb=machine.memory_available_gb,
            )
    except UserError:
        # The run's feature settings may not fit another market (its timeframes, other bars):
        # say that it is another market, rather than what the settings do not fit.
        from core.data.load import load_dataset
        from core.data.source import dataset_path

        market = load_dataset(config.data, dataset_path(config))
        check_market(files, where, list(market.assets), format_duration(market.bar_ns),
                     market.summary.calendar)  # fmt: skip
        raise
    resolved = store.meta["resolved"]
    check_market(files, where, list(store.assets), resolved["bar"], resolved["calendar"])
    check_features(files, store, where)
    return store, with_inferred(config, store.meta)


def check_market(files: RunFiles, where: str, assets: list[str], bar: str, calendar: str) -> None:
    """The run's models read its assets in its order, at its bar and sessions: FOLDER must
    have them all, named the same."""
    trained = list(read_record(files.jobs, "the run's job list")["assets"])
    if assets != trained:
        missing = [a for a in trained if a not in assets]
        extra = [a for a in assets if a not in trained]
        raise UserError(
            f"{where} holds assets {assets}, the run was trained on {trained}"
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; not in the run: {', '.join(extra)}" if extra else "")
            + "\n  fix: give one file per asset of the run, named as the run's files were "
            "(the agents' inputs and outputs are per asset, in that order)"
        )
    resolved = run_resolved(files)
    for key, theirs in (("bar", bar), ("calendar", calendar)):
        ours = resolved.get(key)
        if ours is not None and theirs != ours:
            raise UserError(
                f"{where} has {theirs} {key}s, the run was trained on {ours} {key}s "
                f"(data.{key})\n  fix: give bars of the run's spacing and sessions "
                f"({ours}); an agent trained on one cannot be judged on the other"
            )


def check_features(files: RunFiles, store: FeatureStore, where: str) -> None:
    """The same feature columns as the run's store (exogenous series included)."""
    names = run_feature_names(files)
    if names is not None and list(store.meta["feature_names"]) != names:
        differ = sorted(set(names) ^ set(store.meta["feature_names"]))
        raise UserError(
            f"{where} gives features that differ from the run's: {', '.join(differ) or 'order'}\n"
            "  fix: give the same columns (and exogenous series) as the run's data"
        )


def run_resolved(files: RunFiles) -> dict[str, Any]:
    """The run's bar and calendar as its store resolved them (its config_inferred.yaml, or the
    values config.yaml set)."""
    config = load_config(
        [files.config, *([files.inferred_config] if files.inferred_config.exists() else [])]
    )
    found = {"bar": config.data.bar, "calendar": config.data.calendar}
    return {key: value for key, value in found.items() if value != "auto"}


def run_feature_names(files: RunFiles) -> list[str] | None:
    """The feature columns the run's store had, when its meta.json is still there."""
    meta = Path(read_record(files.jobs, "the run's job list")["store"]) / "meta.json"
    try:
        return list(json.loads(meta.read_text())["feature_names"])
    except (OSError, ValueError, KeyError):
        return None  # the cache was cleared: the shapes are still checked when models load
