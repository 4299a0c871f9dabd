"""How fast the feature store's checksum reads a store: hashlib's algorithms over one page-cached
file, the way `open_store` verifies a store (`hashlib.file_digest`), the store's own algorithm
(core.features.store.CHECKSUM) the baseline.

Each algorithm reads the same file --repeats times after one untimed pass (the page cache warm);
it prints GB/s (the best of the repeats: the machine is noisy, the best is the least disturbed)
and the ratio to the store's algorithm. With --store PATH it also times the whole verification
of that feature store (`store_problem(path, checksums=True)`, what `open_store` runs once per
command), e.g. the sample's under data/cache/.
Usage: python bench/bench_checksums.py [--mb 512] [--repeats 3] [--store PATH] [--json out.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import hashlib
import json
import os
import tempfile
import time

from core.features.store import CHECKSUM

ALGORITHMS = ("sha256", "sha1", "blake2b", "md5", "sha512")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mb", type=int, default=512, help="size of the file read")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--store", type=Path, help="a feature store folder to verify, timed")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        file = Path(scratch) / "features.npy"
        with file.open("wb") as handle:
            for _ in range(args.mb):
                handle.write(os.urandom(1 << 20))
        size_gb = file.stat().st_size / 1e9
        print(f"{args.mb} MB page-cached file, best of {args.repeats}; baseline {CHECKSUM}")
        for name in ALGORITHMS:
            _digest(file, name)  # warm: the file in the page cache, the code loaded
            best = min(_timed(file, name) for _ in range(args.repeats))
            results[name] = size_gb / best
    base = results[CHECKSUM]
    for name, speed in results.items():
        print(f"  {name:<8} {speed:5.2f} GB/s  {speed / base:4.2f}x {CHECKSUM}")
    document: dict[str, object] = {"baseline": CHECKSUM, "gb_per_s": results, "mb": args.mb}
    if args.store is not None:
        verified = _verify(args.store, args.repeats)
        document["store"] = verified
        print(f"verifying {args.store} ({verified['mb']:.0f} MB): {verified['ms']:.0f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    return 0


def _verify(store: Path, repeats: int) -> dict[str, float]:
    """Best-of-`repeats` milliseconds of checking every array of `store` against its meta."""
    from core.features.store import store_problem

    problem = store_problem(store, checksums=True)  # warm, and it must be a sound store
    if problem is not None:
        raise SystemExit(f"error: {store}: {problem}")
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        store_problem(store, checksums=True)
        times.append(time.perf_counter() - started)
    size = sum(file.stat().st_size for file in store.glob("*.npy"))
    return {"mb": size / 1e6, "ms": 1000 * min(times)}


def _timed(file: Path, name: str) -> float:
    started = time.perf_counter()
    _digest(file, name)
    return time.perf_counter() - started


def _digest(file: Path, name: str) -> str:
    with file.open("rb") as handle:
        return hashlib.file_digest(handle, name).hexdigest()


if __name__ == "__main__":
    sys.exit(main())
