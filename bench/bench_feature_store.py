"""Start-up of N env worker processes: each computes its own features (naive) vs attaches the store.

Why: SB3's SubprocVecEnv starts every env in its own process. If each env loads the bars and
computes the features itself, start-up time and memory grow with N and with the dataset; with
the feature store the main process computes once and every worker maps the same pages.

Start methods (`--start-method`): `forkserver` is SubprocVecEnv's default on Linux; its server
preloads the modules a training script imports (numpy, pandas, TA-Lib, the core modules) for
both arms alike, so workers pay only for their data. `spawn` starts a fresh interpreter per
worker (SubprocVecEnv's choice where forkserver is missing): both arms also pay for imports.

Both arms are measured in this run, on this machine, with one BLAS/OpenMP thread per process:
  (a) naive: each worker imports pandas and the core modules, loads the dataset folder and
      computes `asset_features` for every asset, and keeps the arrays;
  (b) store: each worker imports only `core.features.store`, attaches the store and touches every page.
The store is built once, before timing, into a temporary folder, so its one-time cost is measured
now too and reported beside the ratios. Wall time for N is from the first `start()` to the last
worker's "ready"; USS (memory unique to one process) is read while all N workers are alive.

    python bench/bench_feature_store.py [--sizes 2 8 32] [--json out.json] [--skip-large]
                                        [--repeats R]   (R rounds per cell, the fastest kept)
                                        [--start-method forkserver|spawn]
"""

from __future__ import annotations

# Only the standard library at module level: spawn re-imports this file in every worker, and a
# store worker must not pay for pandas or pydantic just because the benchmark script imports them.
import argparse
import json
import multiprocessing
import os
import platform
import queue
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as `python bench/bench_feature_store.py`
    sys.path.insert(0, str(REPO_ROOT))

DEFAULT_SIZES = (2, 8, 32)
TARGET_N = 8
TARGET_SPEEDUP = 10.0
PRELOAD = (
    "numpy",
    "pandas",
    "talib",
    "pydantic",
    "core.features.store",
    "core.data.load",
    "core.features.matrix",
)
LARGE_ASSETS = 16  # the default sample has 4: a store 4x bigger for the dataset-size check
MIB = 1024**2
REPORT_TIMEOUT_S = 600.0


# ---------------------------------------------------------------------------- worker processes


def naive_worker(
    index: int,
    launched: float,
    dataset: str,
    data_settings: dict[str, Any],
    feature_settings: dict[str, Any],
    reports: Any,
    release: Any,
) -> None:
    """What a naive env does in its __init__: read the files, compute every asset's features."""
    entered = time.time()
    try:
        import numpy as np

        from core.config import DataConfig, FeaturesConfig
        from core.data.load import load_dataset
        from core.features.matrix import asset_features
        from core.features.resample import Bars

        market = load_dataset(DataConfig.model_validate(data_settings), Path(dataset))
        config = FeaturesConfig.model_validate(feature_settings)
        computed = [
            asset_features(Bars(market.timestamps, market.ohlcv[i], market.bar_ns), config)
            for i in range(len(market.assets))
        ]
        warmup = max(first for _, first in computed)  # the store keeps rows from here on
        checksum = [
            sum(float(features[warmup:].sum(dtype=np.float64)) for features, _ in computed),
            sum(float(market.ohlcv[i, warmup:].sum()) for i in range(len(market.assets))),
        ]
        _ready(reports, release, index, launched, entered, checksum, keep=(market, computed))
    except BaseException:
        reports.put({"index": index, "error": traceback.format_exc()})


def store_worker(index: int, launched: float, store_path: str, reports: Any, release: Any) -> None:
    """What an env does with the store: attach by path, then read every page once."""
    entered = time.time()
    try:
        from core.features.store import FeatureStore

        store = FeatureStore.attach(store_path)
        checksum = [
            sum(float(store.features[i].sum(dtype="float64")) for i in range(len(store.assets))),
            sum(float(store.prices[i].sum()) for i in range(len(store.assets))),
            float(store.timestamps.sum()),
        ]
        _ready(reports, release, index, launched, entered, checksum, keep=store)
    except BaseException:
        reports.put({"index": index, "error": traceback.format_exc()})


def _ready(
    reports: Any,
    release: Any,
    index: int,
    launched: float,
    entered: float,
    checksum: list[float],
    keep: object,
) -> None:
    """Report, then stay alive holding the data until the parent has measured every worker."""
    ready = time.time()
    reports.put(
        {
            "index": index,
            "pid": os.getpid(),
            "startup_s": ready - launched,  # spawn + interpreter + imports + data
            "work_s": ready - entered,  # imports + data, inside the worker function
            "ready": ready,
            "checksum": checksum,
        }
    )
    release.wait()
    del keep


# ---------------------------------------------------------------------------- parent side


def run_round(
    n: int, target: Callable[..., None], args: tuple[Any, ...], method: str
) -> tuple[dict[str, Any], list[float]]:
    """Start n workers, wait for all to be ready, read their memory, release them."""
    import psutil

    context = multiprocessing.get_context(method)  # as SubprocVecEnv starts its workers
    reports = context.Queue()
    release = context.Event()
    processes: list[Any] = []
    try:
        first_start = time.time()
        for index in range(n):
            process = context.Process(
                target=target, args=(index, time.time(), *args, reports, release), daemon=True
            )
            process.start()
            processes.append(process)
        got = _collect(reports, processes)
        memory = [psutil.Process(p.pid).memory_full_info() for p in processes]
    finally:
        release.set()
        for process in processes:
            process.join(timeout=30)
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join()
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} worker(s) exited with codes {failed}")
    checksums = [r["checksum"] for r in got]
    if any(c != checksums[0] for c in checksums):
        raise RuntimeError("workers disagree on the data they read")
    uss = [m.uss / MIB for m in memory]
    result = {
        "n": n,
        "wall_s": max(r["ready"] for r in got) - first_start,
        "startup_mean_s": statistics.mean(r["startup_s"] for r in got),
        "startup_max_s": max(r["startup_s"] for r in got),
        "work_mean_s": statistics.mean(r["work_s"] for r in got),
        "uss_mean_mib": statistics.mean(uss),
        "uss_max_mib": max(uss),
        "pss_mean_mib": statistics.mean(m.pss / MIB for m in memory),
        "rss_mean_mib": statistics.mean(m.rss / MIB for m in memory),
    }
    return result, checksums[0]


def best_of(
    repeats: int, n: int, target: Callable[..., None], args: tuple[Any, ...], method: str
) -> tuple[dict[str, Any], list[float]]:
    """The fastest of `repeats` rounds: on a shared machine the noise only ever adds time."""
    rounds = [run_round(n, target, args, method) for _ in range(repeats)]
    best, checksum = min(rounds, key=lambda r: r[0]["wall_s"])
    return {**best, "repeats": repeats, "wall_all_s": [r[0]["wall_s"] for r in rounds]}, checksum


def _collect(reports: Any, processes: list[Any]) -> list[dict[str, Any]]:
    """One report per worker; a worker that raised or died is an error, not a hang."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + REPORT_TIMEOUT_S
    while len(got) < len(processes):
        try:
            report = reports.get(timeout=1.0)
        except queue.Empty:
            dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"worker(s) died before reporting: exit codes {dead}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(got)} of {len(processes)} workers ready") from None
            continue
        if "error" in report:
            raise RuntimeError(f"worker {report['index']} failed:\n{report['error']}")
        got.append(report)
    return got


def store_size_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.glob("*.npy")) / MIB


def timed(action: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = action()
    return value, time.perf_counter() - started


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("inf")


def same_data(naive: list[float], store: list[float]) -> bool:
    """Both arms must have read the same features and prices, or the comparison is void."""
    return all(abs(a - b) <= 1e-9 * max(1.0, abs(a)) for a, b in zip(naive, store[:2], strict=True))


def benchmark(
    sizes: Sequence[int], skip_large: bool, repeats: int, workdir: Path, method: str
) -> dict[str, Any]:
    from core.config import load_config
    from core.data.source import dataset_path
    from core.features.build import feature_store
    from core.features.resolved import with_inferred

    build_workers = len(os.sched_getaffinity(0))
    cache = workdir / "cache"
    config = load_config(overrides=[f"data.cache_dir={cache}"])
    dataset, sample_s = timed(lambda: dataset_path(config))
    (store, built), build_s = timed(lambda: feature_store(config, workers=build_workers))
    if not built:
        raise RuntimeError(f"expected a fresh build in {cache}")
    store_path = str(store.path)
    naive_args = (
        str(dataset),
        config.data.model_dump(mode="json"),
        # the look-backs in bars, as the store resolved them for this data
        with_inferred(config, store.meta).features.model_dump(mode="json"),
    )
    print(
        f"default dataset: {dataset.name} ({len(store.assets)} assets × "
        f"{len(store.timestamps):,} bars × {len(store.feature_names)} features, "
        f"store {store_size_mib(store.path):.1f} MiB)",
        flush=True,
    )
    print(f"one-time store build by the main process: {build_s:.2f} s", flush=True)

    run_round(1, naive_worker, naive_args, method)  # warm-up: page cache, bytecode, server start
    run_round(1, store_worker, (store_path,), method)
    rows: list[dict[str, Any]] = []
    identical = True
    for n in sizes:
        print(f"  N = {n}: naive ...", end="", flush=True)
        naive, naive_sum = best_of(repeats, n, naive_worker, naive_args, method)
        print(f" {naive['wall_s']:.2f} s; store ...", end="", flush=True)
        attached, store_sum = best_of(repeats, n, store_worker, (store_path,), method)
        print(f" {attached['wall_s']:.2f} s", flush=True)
        identical = identical and same_data(naive_sum, store_sum)
        rows.append(
            {
                "n": n,
                "naive": naive,
                "store": attached,
                "speedup": ratio(naive["wall_s"], attached["wall_s"]),
                "speedup_including_build": ratio(naive["wall_s"], attached["wall_s"] + build_s),
                "uss_ratio": ratio(naive["uss_mean_mib"], attached["uss_mean_mib"]),
            }
        )
    result: dict[str, Any] = {
        "machine": {
            "cpus": build_workers,
            "repeats": repeats,
            "start_method": method,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "default": {
            "dataset": str(dataset),
            "assets": len(store.assets),
            "bars": len(store.timestamps),
            "features": len(store.feature_names),
            "store_mib": store_size_mib(store.path),
            "sample_s": sample_s,
            "build_s": build_s,
        },
        "same_data": identical,
        "rows": rows,
        "large": None
        if skip_large
        else large_dataset(rows, build_workers, repeats, workdir, method),
    }
    at_target = next((row for row in rows if row["n"] == TARGET_N), None)
    result["target"] = {
        "n": TARGET_N,
        "required_speedup": TARGET_SPEEDUP,
        "speedup": at_target["speedup"] if at_target else None,
        "met": bool(at_target and at_target["speedup"] >= TARGET_SPEEDUP),
    }
    return result


def large_dataset(
    rows: list[dict[str, Any]], build_workers: int, repeats: int, workdir: Path, method: str
) -> dict[str, Any]:
    """The store arm again on a dataset LARGE_ASSETS/4 times bigger, at N = 8 (or the largest N)."""
    from core.config import load_config
    from core.data.source import dataset_path
    from core.features.build import feature_store

    sizes = [row["n"] for row in rows]
    n = TARGET_N if TARGET_N in sizes else max(sizes)
    default = next(row for row in rows if row["n"] == n)["store"]
    config = load_config(
        overrides=[f"data.synthetic_assets={LARGE_ASSETS}", f"data.cache_dir={workdir / 'cache'}"]
    )
    dataset, sample_s = timed(lambda: dataset_path(config))
    (store, _), build_s = timed(lambda: feature_store(config, workers=build_workers))
    print(
        f"large dataset: {dataset.name} ({len(store.assets)} assets, "
        f"store {store_size_mib(store.path):.1f} MiB, built in {build_s:.2f} s); "
        f"N = {n}: store ...",
        end="",
        flush=True,
    )
    run_round(1, store_worker, (str(store.path),), method)  # warm-up, as for the default dataset
    attached, _ = best_of(repeats, n, store_worker, (str(store.path),), method)
    print(f" {attached['wall_s']:.2f} s", flush=True)
    return {
        "n": n,
        "dataset": str(dataset),
        "assets": len(store.assets),
        "store_mib": store_size_mib(store.path),
        "sample_s": sample_s,
        "build_s": build_s,
        "store": attached,
        "default_store": default,
    }


# ---------------------------------------------------------------------------- report


def _print_table(columns: list[tuple[str, int]], rows: list[list[str]]) -> None:
    """Right-aligned plain-text columns: greppable output, no terminal width surprises."""
    header = " | ".join(f"{name:>{width}}" for name, width in columns)
    print(header)
    print("-" * len(header))
    for cells in rows:
        print(
            " | ".join(f"{cell:>{width}}" for cell, (_, width) in zip(cells, columns, strict=True))
        )


def print_report(result: dict[str, Any]) -> None:
    rows = result["rows"]
    build_s = result["default"]["build_s"]
    print()
    print(
        f"Worker start-up, {result['machine']['start_method']}, 1 thread per process, {result['machine']['cpus']} CPUs, "
        f"best of {result['machine']['repeats']} (baseline = naive, same run)"
    )
    _print_table(
        [("N", 3), ("naive wall s", 12), ("store wall s", 12), ("speed-up", 8),
         ("incl. build", 11), ("naive USS MiB", 13), ("store USS MiB", 13), ("USS ratio", 9)],
        [
            [
                f"{row['n']}", f"{row['naive']['wall_s']:.2f}", f"{row['store']['wall_s']:.2f}",
                f"{row['speedup']:.1f}x", f"{row['speedup_including_build']:.1f}x",
                f"{row['naive']['uss_mean_mib']:.1f}", f"{row['store']['uss_mean_mib']:.1f}",
                f"{row['uss_ratio']:.1f}x",
            ]
            for row in rows
        ],
    )  # fmt: skip
    print(
        f"incl. build = naive wall / (store wall + the one-time build, {build_s:.2f} s). "
        "USS = mean per process, read while all N are alive."
    )
    print()
    print("Per process (mean): start-up from start() to ready; work = inside the worker function")
    _print_table(
        [("N", 3), ("naive start-up s", 16), ("store start-up s", 16), ("naive work s", 12),
         ("store attach+touch s", 20)],
        [
            [
                f"{row['n']}", f"{row['naive']['startup_mean_s']:.3f}",
                f"{row['store']['startup_mean_s']:.3f}", f"{row['naive']['work_mean_s']:.3f}",
                f"{row['store']['work_mean_s']:.3f}",
            ]
            for row in rows
        ],
    )  # fmt: skip
    print()
    if len(rows) > 1:
        low, high = rows[0], rows[-1]
        span = f"N = {low['n']} -> {high['n']}"
        a, b = low["store"]["uss_mean_mib"], high["store"]["uss_mean_mib"]
        print(
            f"flat in N ({span}), store USS per process: {a:.1f} -> {b:.1f} MiB ({ratio(b, a):.2f}x)"
        )
        a, b = low["store"]["work_mean_s"], high["store"]["work_mean_s"]
        print(
            f"flat in N, store attach+touch per process: {a:.3f} -> {b:.3f} s ({ratio(b, a):.2f}x)"
        )
        a, b = low["store"]["startup_mean_s"], high["store"]["startup_mean_s"]
        print(f"           store start-up per process: {a:.3f} -> {b:.3f} s ({ratio(b, a):.2f}x)")
        a, b = low["naive"]["startup_mean_s"], high["naive"]["startup_mean_s"]
        print(f"           naive start-up per process: {a:.3f} -> {b:.3f} s ({ratio(b, a):.2f}x)")
    if rows and rows[-1]["n"] > result["machine"]["cpus"]:
        print(
            f"  (N > {result['machine']['cpus']} CPUs: per-process times include the wait for a "
            "core, so they grow with N in both arms)"
        )
    large = result["large"]
    if large:
        default, big = large["default_store"], large["store"]
        size = ratio(large["store_mib"], result["default"]["store_mib"])
        print(
            f"flat in dataset size (store, N = {large['n']}): store "
            f"{result['default']['store_mib']:.1f} -> {large['store_mib']:.1f} MiB ({size:.1f}x data)"
        )
        for label, key, unit, digits in (
            ("wall", "wall_s", "s", 2),
            ("attach+touch per process", "work_mean_s", "s", 3),
            ("USS per process", "uss_mean_mib", "MiB", 1),
        ):
            a, b = default[key], big[key]
            print(f"  {label}: {a:.{digits}f} -> {b:.{digits}f} {unit} ({ratio(b, a):.2f}x)")
        print(f"  (large store built once in {large['build_s']:.2f} s)")
    else:
        print("dataset-size check skipped (--skip-large)")
    print(f"naive and store workers read identical data: {'yes' if result['same_data'] else 'NO'}")
    target = result["target"]
    if target["speedup"] is None:
        print(f"target (>= {TARGET_SPEEDUP:g}x faster start-up at N = {TARGET_N}): not measured")
    else:
        verdict = "MET" if target["met"] else "NOT MET"
        print(
            f"target (>= {TARGET_SPEEDUP:g}x faster start-up at N = {TARGET_N}, default dataset): "
            f"{verdict} ({target['speedup']:.1f}x)"
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), metavar="N")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    parser.add_argument("--skip-large", action="store_true", help="skip the dataset-size check")
    parser.add_argument(
        "--repeats", type=int, default=1, metavar="R", help="rounds per cell; the fastest is kept"
    )
    parser.add_argument(
        "--start-method",
        choices=("forkserver", "spawn"),
        default="forkserver",
        help="how workers start (default forkserver: SubprocVecEnv's default on Linux)",
    )
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.sizes) or args.repeats < 1:
        parser.error("--sizes and --repeats must be at least 1")
    args.sizes = sorted(set(args.sizes))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from core.hardware.threads import export_thread_limits

    # Before numpy loads here; the spawn workers inherit it, so N processes share the cores.
    export_thread_limits(1)
    if args.start_method == "forkserver":
        multiprocessing.set_forkserver_preload(list(PRELOAD))
    with tempfile.TemporaryDirectory(prefix="ploutos-bench-") as workdir:
        result = benchmark(
            args.sizes, args.skip_large, args.repeats, Path(workdir), args.start_method
        )
    print_report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
