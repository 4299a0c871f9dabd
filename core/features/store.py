"""A finished feature store, attached read-only: what every env process and job opens.

`data/cache/<hash>/` holds features.npy (float32 [asset, time, feature]), prices.npy (float64
[asset, time, open/high/low/close/volume]), timestamps.npy (int64 UTC ns bar open times, [time])
and meta.json. Attaching is `np.load(mmap_mode="r")`: the OS shares the pages between processes,
nothing is copied, and a `FeatureStore` pickles as its path. This module imports only numpy, so
a worker process attaches in milliseconds.

Trust: meta.json records each array's shape, dtype, size and sha256. Every attach compares the
.npy headers and file sizes with it (a few hundred bytes read); the main process verifies the
checksums once per command (`store_problem(..., checksums=True)`, called by open_store), so a
flipped or truncated byte is never trained on and workers never re-read gigabytes.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UserError

STORE_FORMAT = 4  # 2: meta.json holds the resolved bar, calendar and timeframes; 3: bars per
# year and the look-backs in bars (spans and auto resolved), closures in the summary; 4: each
# array's shape, dtype, size and checksum (older stores are rebuilt: a checksum taken now would
# vouch for bytes nobody checked)
ARRAYS = ("features", "prices", "timestamps")
# Measured by bench/bench_checksums.py (2 CPUs, SHA-NI, a page-cached 1 GB file): sha256 1.5 GB/s,
# sha1 1.6 (broken for collisions), blake2b 0.86, md5 0.71, sha512 0.77 (docs/features.md).
# xxhash would be faster but is not a dependency.
CHECKSUM = "sha256"


@dataclass(frozen=True)
class FeatureStore:
    """Read-only views of a finished store; cheap to create in any process."""

    path: Path
    meta: dict[str, Any]
    features: np.ndarray
    prices: np.ndarray
    timestamps: np.ndarray

    @classmethod
    def attach(cls, path: Path | str) -> FeatureStore:
        path = Path(path)
        meta, problem = _checked(path)
        if meta is None or problem:
            raise UserError(
                f"{path} is not a usable feature store: {problem}\n"
                "  fix: rerun the command that made it (with --dry-run to build the store only): "
                "it verifies the store and rebuilds a damaged one"
            )
        arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
        return cls(path, meta, **arrays)

    def __reduce__(self) -> tuple[Callable[[str], FeatureStore], tuple[str]]:
        return (FeatureStore.attach, (str(self.path),))

    @property
    def assets(self) -> list[str]:
        return list(self.meta["assets"])

    @property
    def feature_names(self) -> list[str]:
        return list(self.meta["feature_names"])

    @property
    def bar_ns(self) -> int:
        return int(self.meta["bar_ns"])


def read_meta(path: Path, digest: str | None = None) -> dict[str, Any] | None:
    """meta.json of a complete store (optionally of this hash), else None."""
    return _meta_or_problem(path, digest)[0]


def store_problem(path: Path, digest: str | None = None, checksums: bool = False) -> str | None:
    """Why the store at `path` cannot be trusted ("damaged (features.npy: checksum mismatch)"),
    or None. Sizes and shapes always; the checksums (every byte read) only when asked."""
    return _checked(path, digest, checksums)[1]


def _checked(
    path: Path, digest: str | None = None, checksums: bool = False
) -> tuple[dict[str, Any] | None, str | None]:
    meta, why = _meta_or_problem(path, digest)
    if meta is None:
        return None, why
    problem = _arrays_problem(path, meta)
    if problem is None and checksums:
        problem = next(
            (
                f"{name}.npy: checksum mismatch"
                for name in ARRAYS
                if file_checksum(path / f"{name}.npy") != meta["arrays"][name].get(CHECKSUM)
            ),
            None,
        )
    return meta, f"damaged ({problem})" if problem else None


def describe_arrays(folder: Path) -> dict[str, dict[str, Any]]:
    """meta.json's "arrays": what each written .npy holds, to be checked on every attach."""
    described = {}
    for name in ARRAYS:
        file = folder / f"{name}.npy"
        shape, dtype, _ = _npy_header(file)
        described[name] = {
            "shape": list(shape),
            "dtype": dtype.str,
            "bytes": file.stat().st_size,
            CHECKSUM: file_checksum(file),
        }
    return described


def file_checksum(file: Path) -> str:
    with file.open("rb") as handle:
        return hashlib.file_digest(handle, CHECKSUM).hexdigest()


def _meta_or_problem(
    path: Path, digest: str | None = None
) -> tuple[dict[str, Any], None] | tuple[None, str]:
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return None, "not finished (no valid meta.json)"
    if not isinstance(meta, dict):
        return None, "not finished (no valid meta.json)"
    if meta.get("format") != STORE_FORMAT:
        return None, f"of another format ({meta.get('format')}; this version uses {STORE_FORMAT})"
    if digest and meta.get("hash") != digest:
        return None, "of other inputs (meta.json names another content hash)"
    missing = [f"{name}.npy" for name in ARRAYS if not (path / f"{name}.npy").is_file()]
    if missing:
        return None, f"damaged ({', '.join(missing)} missing)"
    return meta, None


def _arrays_problem(path: Path, meta: dict[str, Any]) -> str | None:
    """The cheap check: each .npy header and file size against meta.json (no data read)."""
    described = meta.get("arrays")
    if not isinstance(described, dict):
        return "meta.json does not describe its arrays"
    for name in ARRAYS:
        file, expected = path / f"{name}.npy", described.get(name) or {}
        try:
            shape, dtype, offset = _npy_header(file)
            size = file.stat().st_size
        except (OSError, ValueError) as error:
            return f"{file.name}: unreadable header ({error})"
        if list(shape) != expected.get("shape") or dtype.str != expected.get("dtype"):
            return (
                f"{file.name}: {dtype.str} {list(shape)}, meta.json says "
                f"{expected.get('dtype')} {expected.get('shape')}"
            )
        needed = offset + math.prod(shape) * dtype.itemsize
        if size != expected.get("bytes") or size != needed:
            return f"{file.name}: {size:,} bytes, its header and meta.json say {needed:,}"
    return None


def _npy_header(file: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset of a C-order .npy file, from its header alone."""
    with file.open("rb") as handle:
        version = np.lib.format.read_magic(handle)
        read = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran_order, dtype = read(handle)
        if fortran_order:
            raise ValueError("Fortran order, the store writes C order")
        return shape, dtype, handle.tell()
