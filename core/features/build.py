"""Turbo Init: compute features once, write them as memory-mappable files (see core.features.store).

The hash covers every input file's bytes and every setting that changes a value,
so an edit rebuilds and nothing else does. A build writes into a hidden temporary folder and
renames it into place only when complete: a killed build leaves nothing that is later trusted.
A finished store is reused only once its checksums verify (once per command, here in the main
process); a damaged one is rebuilt, said on stderr.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import publish_dir, remove_dir, replacing_path
from core.config import Config
from core.data.calendar import Inferred, bars_per_year
from core.data.exogenous import ExogenousSeries, as_of, changes, load_exogenous
from core.data.load import MarketData, discover, load_dataset
from core.data.source import dataset_path, repo_path
from core.data.timestamps import format_utc
from core.errors import UserError
from core.features.matrix import (
    asset_features,
    check_defined,
    feature_names,
    inferred_timeframes,
    lookback_bars,
    timeframe_labels,
)
from core.features.resample import Bars
from core.features.store import (
    STORE_FORMAT,
    FeatureStore,
    describe_arrays,
    read_meta,
    store_problem,
)
from core.features.windows import Resolved, resolve_windows
from core.units import GIB, format_duration

PARALLEL_MIN_BARS = (
    2_000_000  # below this many asset-bars, worker start-up costs more than it saves
)
# Peak memory of one asset's computation (compute_asset), per bar: the float64 raw matrix and the
# float32 result per feature, plus the bars and one column's temporaries. bench/bench_build_memory.py
# measured 297 bytes per bar at 34 features and 80 at 14 (2,000,000 bars); this errs above both.
BUILD_BYTES_PER_BAR_FEATURE = 10
BUILD_BYTES_PER_BAR = 40
BUILD_MEMORY_SHARE = 0.8  # of the memory available: the rest for the main process and the OS
# Errors that say the cache folder cannot be written: the user's to fix, not a bug.
UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}
REGIME_KEYS = {"regime", "regime_states"}
Progress = Callable[[str, int, int], None]  # (step, done, total)
Notice = Callable[[str], None]


def content_hash(config: Config, dataset: Path) -> str:
    """sha256 over the input bytes and every setting that changes a stored value."""
    assets = discover(dataset, config.data.bar)
    exogenous = [Path(spec.path) for spec in config.data.exogenous]
    data = config.data.model_dump(mode="json")
    for key in ("path", "cache_dir", "sample_dir"):
        data.pop(key)
    for spec in data["exogenous"]:
        spec.pop("path")
    recipe = {
        "format": STORE_FORMAT,
        "talib": _version("ta-lib"),
        "data": data,
        # The regime columns are a fold's store's (core.features.regime), not this one's.
        "features": config.features.model_dump(mode="json", exclude=REGIME_KEYS),
        "assets": [(a.name, _file_digest(a.path)) for a in assets],
        "exogenous": [_file_digest(p) if p.is_file() else str(p) for p in exogenous],
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def open_store(
    config: Config,
    dataset: Path,
    cache_dir: Path,
    workers: int = 1,
    progress: Progress | None = None,
    memory_gb: float | None = None,
    notice: Notice | None = None,
) -> tuple[FeatureStore, bool]:
    """Attach the store for this dataset and config, building it first if needed or damaged.

    A finished store is verified byte for byte (its checksums) before it is reused: the one
    full read per command, so workers only check sizes. `memory_gb` (available memory, from
    core.hardware's detection; None: unbounded) bounds how many assets are built at once; `notice` gets the lines that say a
    store is rebuilt or parallelism is limited (default: stderr). Returns the store and whether
    it was built now.
    """
    say = notice or _to_stderr
    digest = content_hash(config, dataset)
    final = cache_dir / digest[:24]
    problem = store_problem(final, digest, checksums=True) if final.exists() else None
    if final.exists() and problem is None:
        return FeatureStore.attach(final), False
    try:
        if problem is not None:
            remove_dir(final)  # renamed aside in one step: nobody attaches it half-deleted
            say(f"feature store {_shown(final)} is {problem}; rebuilding")
        cache_dir.mkdir(parents=True, exist_ok=True)
        _sweep_abandoned(cache_dir)
        with _building(cache_dir, digest) as scratch:
            limits = (workers, memory_gb, say)
            _build(config, dataset, scratch, digest, limits, progress)
            _publish(scratch, final, digest)
    except OSError as error:
        if not _cannot_write(error, cache_dir):
            raise
        raise _unwritable(cache_dir, error, problem) from None
    return FeatureStore.attach(final), True


def _cannot_write(error: OSError, cache_dir: Path) -> bool:
    """A refused write in the cache (read-only, no permission, full), not a dataset read."""
    if error.errno not in UNWRITABLE:
        return False
    if error.filename is None:
        return True
    where, cache = Path(error.filename).resolve(), cache_dir.resolve()
    return where.is_relative_to(cache) or cache.is_relative_to(where)  # in it, or a parent made


def _unwritable(cache_dir: Path, error: OSError, problem: str | None) -> UserError:
    where = f"data.cache_dir {_shown(cache_dir)}"
    what = (
        f"the feature store in {where} is {problem} and cannot be rebuilt there"
        if problem
        else f"cannot build the feature store in {where}"
    )
    return UserError(
        f"{what}: {error.strerror or error}\n"
        "  fix: --set data.cache_dir=<a folder you can write to> (or make room / allow writing "
        "there); a valid store already in a read-only cache is used as it is"
    )


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _building(cache_dir: Path, digest: str) -> Iterator[Path]:
    scratch = cache_dir / f".building-{digest[:24]}-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _sweep_abandoned(cache_dir: Path) -> None:
    """Remove scratch folders of builds whose process is gone (killed mid-build)."""
    for scratch in cache_dir.glob(".building-*"):
        pid = scratch.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(scratch, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _publish(scratch: Path, final: Path, digest: str) -> None:
    """A concurrent builder that finished first wins: its store is equally valid. A store that
    does not verify (unfinished, corrupt, an older format) makes way for this one."""
    if final.exists() and read_meta(final, digest) is None:
        remove_dir(final)
    try:
        publish_dir(scratch, final)
    except OSError:
        if read_meta(final, digest) is None:
            raise


def _build(
    config: Config,
    dataset: Path,
    scratch: Path,
    digest: str,
    limits: tuple[int, float | None, Notice],
    progress: Progress | None,
) -> None:
    started = time.perf_counter()
    on_load = (lambda done, total: progress("load bars", done, total)) if progress else None
    market = load_dataset(config.data, dataset, progress=on_load)
    per_year = bars_per_year(market.timestamps, market.bar_ns, market.summary.calendar)
    given = config
    config, windows = resolve_windows(config, market.bar_ns, per_year)
    windows = [w for w in windows if w.key.startswith("features.")]  # what this store depends on
    exogenous, exogenous_names = _exogenous_matrix(config, market)
    names = feature_names(config.features, market.bar_ns, exogenous_names)
    n_assets, n_bars = len(market.assets), len(market.timestamps)
    _check_room(scratch, n_assets, n_bars, len(names))
    np.save(scratch / "bars_full.npy", market.ohlcv)
    np.save(scratch / "timestamps_full.npy", market.timestamps)
    if exogenous is not None:
        np.save(scratch / "exogenous_full.npy", exogenous)
    full = np.lib.format.open_memmap(
        scratch / "features_full.npy",
        mode="w+",
        dtype=np.float32,
        shape=(n_assets, n_bars, len(names)),
    )
    del full
    workers = _bounded_workers(limits, n_assets, n_bars, len(names))
    firsts = _compute_all(config, scratch, (n_assets, n_bars, market.bar_ns), workers, progress)
    warmup = max(firsts)
    if n_bars - warmup < 2:
        raise UserError(
            f"{dataset}: {n_bars:,} bars are not enough to warm up the features "
            f"(about {lookback_bars(config.features, market.bar_ns):,} bars of history are needed "
            "before the first feature row)\n"
            "  fix: give more data, or shorten features.normalisation_window / features.timeframes"
        )
    full = np.load(scratch / "features_full.npy", mmap_mode="r")
    for index, asset in enumerate(market.assets):
        check_defined(full[index], warmup, names, market.timestamps, asset)
    _save_trimmed(scratch, "features", full, warmup)
    _save_trimmed(scratch, "prices", market.ohlcv, warmup)
    np.save(scratch / "timestamps.npy", market.timestamps[warmup:])
    del full
    for name in ("features_full", "bars_full", "timestamps_full", "exogenous_full"):
        (scratch / f"{name}.npy").unlink(missing_ok=True)
    meta = _meta(given, config, market, per_year, windows, names, digest, dataset, warmup)
    meta["arrays"] = describe_arrays(scratch)
    meta["build_seconds"] = round(time.perf_counter() - started, 3)
    (scratch / "meta.json").write_text(json.dumps(meta, indent=2))


def _check_room(scratch: Path, n_assets: int, n_bars: int, n_features: int) -> None:
    """Refuse a build the disk cannot hold before writing: numpy reports a short write as a
    bare OSError ("N requested and M written"), not as ENOSPC. Scratch and final arrays
    (float32 features, float64 prices, int64 times) coexist at the end of a build."""
    needed = 2 * (n_assets * n_bars * (n_features * 4 + 5 * 8) + n_bars * 8)
    free = shutil.disk_usage(scratch).free
    if free < needed:
        raise OSError(
            errno.ENOSPC, f"the build needs about {needed / 1e6:,.0f} MB, {free / 1e6:,.0f} MB free"
        )


def _bounded_workers(
    limits: tuple[int, float | None, Notice], n_assets: int, n_bars: int, n_features: int
) -> int:
    workers, memory_gb, say = limits
    if min(workers, n_assets) <= 1 or n_assets * n_bars < PARALLEL_MIN_BARS:
        return workers  # built in this process, one asset at a time: nothing to bound
    if memory_gb is None:
        return workers  # the caller knows no memory figure (core.hardware is a sibling layer)
    bounded, why = build_workers(workers, n_assets, n_bars, n_features, memory_gb * GIB)
    if why:
        say(why)
    return bounded


def build_workers(
    requested: int, n_assets: int, n_bars: int, n_features: int, available_bytes: float
) -> tuple[int, str | None]:
    """How many assets to compute at once: the workers asked for, as many as memory holds
    (each asset's computation peaks at about `asset_build_bytes`). The line says why when
    memory is the limit."""
    wanted = max(1, min(requested, n_assets))
    per_asset = asset_build_bytes(n_bars, n_features)
    fits = max(1, int(available_bytes * BUILD_MEMORY_SHARE // per_asset))
    if fits >= wanted:
        return wanted, None
    return fits, (
        f"building features for {fits} asset(s) at a time, not {wanted}: each asset's "
        f"{n_bars:,} bars x {n_features} features take about {per_asset / GIB:.1f} GiB and "
        f"{available_bytes / GIB:.1f} GiB of memory is available"
    )


def asset_build_bytes(n_bars: int, n_features: int) -> int:
    return n_bars * (n_features * BUILD_BYTES_PER_BAR_FEATURE + BUILD_BYTES_PER_BAR)


def _meta(
    given: Config,
    config: Config,
    market: MarketData,
    per_year: float,
    windows: list[Resolved],
    names: list[str],
    digest: str,
    dataset: Path,
    warmup: int,
) -> dict[str, Any]:
    """meta.json: what the store holds and the values it was built with (`given`: the config as
    asked, `config`: with its look-backs in bars), `auto` settings as inferred from the data."""
    timeframes = inferred_timeframes(config.features, market.bar_ns)
    inferred = [
        *market.summary.inferred,
        *([timeframes] if timeframes else []),
        *map(window_inferred, windows),
    ]
    return {
        "format": STORE_FORMAT,
        "hash": digest,
        "assets": list(market.assets),
        "feature_names": names,
        "bar_ns": market.bar_ns,
        "bars": len(market.timestamps) - warmup,
        "warmup_bars": warmup,
        "lookback_bars": lookback_bars(config.features, market.bar_ns),
        "first": format_utc(int(market.timestamps[warmup])),
        "last": format_utc(int(market.timestamps[-1])),
        "dataset": str(dataset),
        "config": {
            "data": given.data.model_dump(mode="json"),
            "features": given.features.model_dump(mode="json", exclude=REGIME_KEYS),
        },
        # The values the store was built with, `auto` settings as inferred from the data:
        # what annualisation, trade counters and a run's config read (core.features.resolved).
        "resolved": {
            "bar": format_duration(market.bar_ns),
            "calendar": market.summary.calendar,
            "timeframes": timeframe_labels(config.features, market.bar_ns),
            "bars_per_year": per_year,  # what turns spans and auto look-backs into bars
            "windows": {w.key: getattr(config.features, w.key.split(".")[1]) for w in windows},
        },
        "inferred": [asdict(item) for item in inferred],
        "summary": market.summary.to_json(),
        "versions": {p: _version(p) for p in ("numpy", "pandas", "ta-lib", "pyarrow")},
    }


def window_inferred(window: Resolved) -> Inferred:
    """A look-back resolved from a span or auto, as a line of the data summary."""
    return Inferred(
        window.key,
        window.bars,
        f"{window.given}: {window.reason}",
        f"{window.key}=<bars or a span such as 30d>",
    )


def _save_trimmed(scratch: Path, name: str, full: np.ndarray, warmup: int) -> None:
    """Copy [:, warmup:] asset by asset, so memory stays at one asset's rows."""
    shape = (full.shape[0], full.shape[1] - warmup, *full.shape[2:])
    out = np.lib.format.open_memmap(
        scratch / f"{name}.npy", mode="w+", dtype=full.dtype, shape=shape
    )
    for index in range(full.shape[0]):
        out[index] = full[index, warmup:]
    out.flush()
    del out


def _exogenous_matrix(
    config: Config, market: MarketData
) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """Each exogenous column as of the bar close: its level and its latest change."""
    if not config.data.exogenous:
        return None, ()
    decision_times = market.timestamps + market.bar_ns
    blocks, names = [], []
    for index, spec in enumerate(config.data.exogenous):
        series: ExogenousSeries = load_exogenous(spec, config.data, index)
        blocks += [as_of(series, decision_times), as_of(changes(series), decision_times)]
        names += [f"x_{spec.name}_{c}" for c in series.columns]
        names += [f"x_{spec.name}_{c}_chg" for c in series.columns]
    return np.column_stack(blocks), tuple(names)


def _reporter(progress: Progress | None, step: str, total: int) -> Callable[[], None]:
    done = 0
    if progress:
        progress(step, 0, total)

    def advance() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(step, done, total)

    return advance


def _compute_all(
    config: Config,
    scratch: Path,
    shape: tuple[int, int, int],
    workers: int,
    progress: Progress | None,
) -> list[int]:
    """Features of every asset, written into features_full.npy; returns each first defined row."""
    n_assets, n_bars, bar_ns = shape
    report = _reporter(progress, "compute features", n_assets)
    feature_config = config.features.model_dump(mode="json")
    workers = min(workers, n_assets)
    if workers <= 1 or n_assets * n_bars < PARALLEL_MIN_BARS:
        firsts = []
        for index in range(n_assets):
            firsts.append(compute_asset(str(scratch), index, feature_config, bar_ns))
            report()
        return firsts
    firsts = [0] * n_assets
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = {
            pool.submit(compute_asset, str(scratch), i, feature_config, bar_ns): i
            for i in range(n_assets)
        }
        for future in concurrent.futures.as_completed(futures):
            firsts[futures[future]] = future.result()
            report()
    return firsts


def compute_asset(scratch: str, index: int, feature_config: dict[str, Any], bar_ns: int) -> int:
    """Worker: features of asset `index` from the scratch files, written in place."""
    from core.config import FeaturesConfig

    folder = Path(scratch)
    config = FeaturesConfig.model_validate(feature_config)
    bars = np.load(folder / "bars_full.npy", mmap_mode="r")
    timestamps = np.load(folder / "timestamps_full.npy", mmap_mode="r")
    exogenous_path = folder / "exogenous_full.npy"
    exogenous = np.load(exogenous_path, mmap_mode="r") if exogenous_path.exists() else None
    base = Bars(np.asarray(timestamps), np.asarray(bars[index]), bar_ns)
    features, first = asset_features(base, config, exogenous)
    out = np.load(folder / "features_full.npy", mmap_mode="r+")
    out[index] = features
    out.flush()
    return first


def export_parquet(store: FeatureStore, out: Path) -> int:
    """Write the feature matrix in long form (timestamp, asset, features...), one row group per
    asset so memory stays at one asset; atomic (temp file + rename). Returns rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if out.suffix.lower() not in (".parquet", ".pq"):
        raise UserError(f"--export-features {out}: the file name must end in .parquet")
    timestamps = pa.array(np.asarray(store.timestamps), type=pa.timestamp("ns", tz="UTC"))
    fields = [pa.field("timestamp", timestamps.type), pa.field("asset", pa.string())]
    fields += [pa.field(name, pa.float32()) for name in store.feature_names]
    schema = pa.schema(fields)
    with replacing_path(out) as scratch, pq.ParquetWriter(scratch, schema) as writer:
        for index, asset in enumerate(store.assets):
            columns = [timestamps, pa.array([asset] * len(timestamps))]
            block = np.asarray(store.features[index])
            columns += [pa.array(block[:, j]) for j in range(block.shape[1])]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
    return len(store.assets) * len(store.timestamps)


def feature_store(
    config: Config,
    workers: int = 1,
    progress: Progress | None = None,
    memory_gb: float | None = None,
) -> tuple[FeatureStore, bool]:
    """Attach the feature store for this config (built first when missing or damaged); True if
    built now."""
    return open_store(
        config, dataset_path(config), repo_path(config.data.cache_dir), workers, progress, memory_gb
    )
