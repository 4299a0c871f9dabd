"""The data commands: write the synthetic sample, check a dataset, export the feature matrix."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.config import Config
    from core.features.store import FeatureStore


@contextlib.contextmanager
def writing(target: Path, flag: str) -> Iterator[None]:
    """An output path the OS refuses (no such folder, read-only, /proc) is a user's mistake."""
    from core.errors import UserError

    try:
        yield
    except OSError as error:
        raise UserError(
            f"cannot write {target}: {error.strerror or error}\n"
            f"  fix: pass {flag} a path in a folder you can write to"
        ) from None


def generate_data(config: Config, folder: Path) -> int:
    from core.data.source import sample_config
    from core.data.synthetic import generate_from_config, write_dataset

    data = sample_config(config.data)
    frames = generate_from_config(data)
    with writing(folder, "--generate-data"):
        write_dataset(frames, folder, "csv")
    first = next(iter(frames.values()))
    print(
        f"wrote {len(frames)} asset file(s) of {len(first):,} {data.bar} bars "
        f"(planted signal {data.synthetic_signal:g}, seed {data.seed}) to {folder}\n"
        f"  use it: ./start_training.sh --check-data --data {folder}"
    )
    return 0


def check_data(config: Config, show_progress: bool) -> int:
    """Load and validate, print the summary with every value inferred for an `auto` setting,
    refuse a no-trade band that cannot work and data too short for one fold."""
    from core.data.calendar import bars_per_year
    from core.data.load import load_dataset
    from core.data.source import dataset_path
    from core.features.matrix import inferred_timeframes, lookback_bars
    from core.features.windows import resolve_windows
    from core.folds import check_length, sized_windows
    from training.views.data import check_bands, print_summary, progress_bar, run_inferred

    dataset = dataset_path(config)
    with progress_bar(enabled=show_progress) as progress:
        report = (lambda done, total: progress("load bars", done, total)) if progress else None
        market = load_dataset(config.data, dataset, progress=report)
    per_year = bars_per_year(market.timestamps, market.bar_ns, market.summary.calendar)
    resolved, _ = resolve_windows(config, market.bar_ns, per_year)
    timeframes = inferred_timeframes(config.features, market.bar_ns)
    windows = run_inferred(
        config, market.bar_ns, per_year, len(market.assets), ("features", "env", "evaluation")
    )
    warmup = lookback_bars(resolved.features, market.bar_ns)
    folds = sized_windows(market.timestamps[warmup:], market.bar_ns, resolved).notes
    notes = [*([timeframes] if timeframes else []), *windows, *folds]
    print_summary(market.summary, sys.stdout, notes)
    check_bands(config, len(market.assets))
    check_length(market.timestamps, market.bar_ns, resolved, warmup)
    print(f"ok: {dataset} is valid and long enough for one walk-forward fold")
    return 0


def export_features(store: FeatureStore, out: Path) -> int:
    from core.features.build import export_parquet

    with writing(out, "--export-features"):
        rows = export_parquet(store, out)
    print(
        f"wrote {rows:,} rows ({len(store.assets)} asset(s) x {len(store.timestamps):,} bars) x "
        f"{len(store.feature_names)} features to {out}"
    )
    return 0
