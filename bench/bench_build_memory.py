"""Peak memory of building one asset's features (`compute_asset`), per bar: what bounds how many
assets `core.features.build` computes at once (its BUILD_BYTES_PER_BAR comes from this).

A parent process writes one synthetic hourly asset of N bars into a scratch folder laid out as a
build leaves it; a fresh child imports the modules, notes its peak RSS, runs `compute_asset`
with the default feature config, and reports the growth of its peak RSS (ru_maxrss). Heavy for
large N (2,000,000 bars: ~20 s and GBs), so it is a benchmark, not a test.

    python bench/bench_build_memory.py [--bars 2000000] [--set features.timeframes=[1h]] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as `python bench/bench_build_memory.py`
    sys.path.insert(0, str(REPO_ROOT))

CHILD = """
import json, resource, sys, time
from core.features.build import compute_asset
folder, features, bar_ns = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
started = time.perf_counter()
compute_asset(folder, 0, features, bar_ns)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"before_bytes": before, "peak_bytes": peak, "seconds": seconds}))
"""


def measure(n_bars: int, overrides: list[str]) -> dict[str, float]:
    import numpy as np

    from core.config import load_config
    from core.data.synthetic import generate
    from core.features.build import asset_build_bytes
    from core.features.matrix import feature_names
    from core.features.windows import resolve_windows
    from core.units import HOUR_NS, YEAR_NS

    config, _ = resolve_windows(load_config(overrides=overrides), HOUR_NS, YEAR_NS / HOUR_NS)
    frame = next(iter(generate(1, n_bars, HOUR_NS, 0.0, seed=1).values()))
    ohlcv = frame[["open", "high", "low", "close", "volume"]].to_numpy(np.float64)[None]
    timestamps = frame["timestamp"].astype("int64").to_numpy()
    width = len(feature_names(config.features, HOUR_NS))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        np.save(folder / "bars_full.npy", ohlcv)
        np.save(folder / "timestamps_full.npy", timestamps)
        np.lib.format.open_memmap(
            folder / "features_full.npy", "w+", np.float32, (1, n_bars, width)
        ).flush()
        del frame, ohlcv, timestamps
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                scratch,
                json.dumps(config.features.model_dump(mode="json")),
                str(HOUR_NS),
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    report = json.loads(child.stdout)
    growth = report["peak_bytes"] - report["before_bytes"]
    estimate = asset_build_bytes(n_bars, width)
    return {
        "bars": n_bars,
        "features": width,
        "seconds": round(report["seconds"], 2),
        "peak_growth_bytes": growth,
        "bytes_per_bar": round(growth / n_bars, 1),
        "planned_bytes": estimate,
        "planned_over_measured": round(estimate / max(growth, 1), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=2_000_000)
    parser.add_argument("--set", action="append", default=[], help="a config override (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    result = measure(args.bars, args.set)
    print(
        f"compute_asset, {result['bars']:,} bars x {result['features']} features: peak RSS grew "
        f"{result['peak_growth_bytes'] / 1e9:.2f} GB ({result['bytes_per_bar']:,.0f} bytes per "
        f"bar) in {result['seconds']:.1f} s\n"
        f"baseline, the build planner's estimate (asset_build_bytes): "
        f"{result['planned_bytes'] / 1e9:.2f} GB; planned / measured = "
        f"{result['planned_over_measured']:.2f} (>= 1: the planner never starts more builds "
        "than memory holds)"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
