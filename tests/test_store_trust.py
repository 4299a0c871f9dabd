"""A store that is what it says: damage is found (sizes on every attach, checksums once per
open_store) and rebuilt with a message; a read-only cache is one clear message; parallel builds
are bounded by memory."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.errors import UserError
from core.features.build import asset_build_bytes, build_workers, open_store
from core.features.store import ARRAYS, STORE_FORMAT, FeatureStore
from core.units import GIB
from tests.helpers.datasets import bars, write_csv
from tests.helpers.stores import small_config


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("bars"), bars(800, n_assets=2))


@pytest.fixture(scope="module")
def fresh(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    """A store built once and never touched: what every rebuild must equal."""
    store, _ = open_store(small_config(), dataset, tmp_path_factory.mktemp("fresh"))
    return store


def build(dataset: Path, cache: Path) -> tuple[FeatureStore, bool, list[str]]:
    notices: list[str] = []
    store, built = open_store(small_config(), dataset, cache, notice=notices.append)
    return store, built, notices


def assert_same_store(store: FeatureStore, fresh: FeatureStore) -> None:
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(store, name), getattr(fresh, name))
    assert store.meta["arrays"] == fresh.meta["arrays"]


def test_a_flipped_byte_is_found_by_open_store_and_rebuilt(
    dataset: Path, fresh: FeatureStore, tmp_path: Path
) -> None:
    store, _, _ = build(dataset, tmp_path)
    features = store.path / "features.npy"
    data = bytearray(features.read_bytes())
    data[len(data) // 2] ^= 0x40  # one bit of one value: same size, same shape
    features.write_bytes(bytes(data))
    FeatureStore.attach(store.path)  # the cheap check (sizes) passes: workers don't re-read
    rebuilt, built, notices = build(dataset, tmp_path)
    assert built and rebuilt.path == store.path
    assert notices == [
        f"feature store {store.path} is damaged (features.npy: checksum mismatch); rebuilding"
    ]
    assert_same_store(rebuilt, fresh)
    assert build(dataset, tmp_path)[1:] == (False, [])  # and now it is trusted again


def test_a_truncated_array_is_a_user_error_on_attach_and_rebuilt_by_open_store(
    dataset: Path, fresh: FeatureStore, tmp_path: Path
) -> None:
    store, _, _ = build(dataset, tmp_path)
    features = store.path / "features.npy"
    size = features.stat().st_size
    os.truncate(features, size - 100)
    with pytest.raises(UserError, match=rf"features.npy: {size - 100:,} bytes.*\n  fix: ") as err:
        FeatureStore.attach(store.path)  # what a worker runs (a FeatureStore pickles as its path)
    assert "is not a usable feature store: damaged" in str(err.value)
    rebuilt, built, notices = build(dataset, tmp_path)
    assert built and len(notices) == 1
    assert (
        f"features.npy: {size - 100:,} bytes, its header and meta.json say {size:,}" in notices[0]
    )
    assert_same_store(rebuilt, fresh)


WORKER = """
import pickle, sys
from core.errors import UserError
from core.features.store import FeatureStore
try:
    pickle.loads(bytes.fromhex(sys.argv[1]))
except UserError as mistake:  # what training.launcher.task does with a job's UserError
    print(f"error: {mistake}")
"""


def test_a_worker_attaching_a_truncated_store_reports_a_user_error(
    dataset: Path, tmp_path: Path
) -> None:
    import pickle

    from tests.conftest import PYTHON, REPO_ROOT

    store, _, _ = build(dataset, tmp_path)
    payload = pickle.dumps(store).hex()
    os.truncate(store.path / "prices.npy", 1_000)
    child = subprocess.run(
        [PYTHON, "-c", WORKER, payload], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert child.returncode == 0 and "Traceback" not in child.stdout + child.stderr
    assert "damaged (prices.npy: 1,000 bytes" in child.stdout


@pytest.mark.parametrize("damage", ["missing", "reshaped", "older format"])
def test_other_damage_is_rebuilt_with_a_message(
    damage: str, dataset: Path, fresh: FeatureStore, tmp_path: Path
) -> None:
    store, _, _ = build(dataset, tmp_path)
    if damage == "missing":
        (store.path / "timestamps.npy").unlink()
        said = "damaged (timestamps.npy missing)"
    elif damage == "reshaped":
        fewer_columns = np.array(store.features[:, :, :-1])  # a copy: the file is rewritten
        np.save(store.path / "features.npy", fewer_columns)
        said = "damaged (features.npy: <f4 ["
    else:
        meta = json.loads((store.path / "meta.json").read_text())
        meta["format"] = STORE_FORMAT - 1
        del meta["arrays"]
        (store.path / "meta.json").write_text(json.dumps(meta))
        said = f"of another format ({STORE_FORMAT - 1}; this version uses {STORE_FORMAT})"
    rebuilt, built, notices = build(dataset, tmp_path)
    assert built and len(notices) == 1 and said in notices[0], notices
    assert notices[0].endswith("; rebuilding")
    assert_same_store(rebuilt, fresh)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` made genuinely read-only: chmod for a user, a read-only bind mount for root
    (root ignores permission bits)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"root without mount permission: no read-only place ({mounted.stderr!r})")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)  # its files may be mapped


def test_a_read_only_cache_is_one_message_and_a_valid_store_there_is_used(
    dataset: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with read_only(empty), pytest.raises(UserError) as err:
        build(dataset, empty)
    message = str(err.value)
    assert message.startswith(f"cannot build the feature store in data.cache_dir {empty}: ")
    assert "Read-only file system" in message or "Permission denied" in message
    assert "\n  fix: --set data.cache_dir=" in message and list(empty.iterdir()) == []
    filled = tmp_path / "filled"
    store, _, _ = build(dataset, filled)
    with read_only(filled):
        reused, built, notices = build(dataset, filled)  # verification needs only reads
        assert not built and notices == [] and reused.path == store.path
        with pytest.raises(OSError):
            (filled / "probe").touch()  # the place really is read-only
    damaged = tmp_path / "damaged"
    store, _, _ = build(dataset, damaged)
    os.truncate(store.path / "features.npy", 500)
    with read_only(damaged), pytest.raises(UserError) as err:
        build(dataset, damaged)
    assert str(err.value).startswith(
        f"the feature store in data.cache_dir {damaged} is damaged (features.npy: 500 bytes, "
    )
    assert "and cannot be rebuilt there: " in str(err.value)
    under = empty / "sub" / "cache"  # a cache folder to create under a read-only one
    with read_only(empty), pytest.raises(UserError, match="cannot build the feature store in"):
        build(dataset, under)


def test_parallel_builds_are_bounded_by_memory() -> None:
    per_asset = asset_build_bytes(2_000_000, 34)
    assert 0.5 * GIB < per_asset < 1 * GIB  # bench/bench_build_memory.py measured 0.59 GB
    assert build_workers(8, 16, 2_000_000, 34, 64 * GIB) == (8, None)
    assert build_workers(8, 3, 2_000_000, 34, 64 * GIB) == (3, None)  # one worker per asset
    workers, why = build_workers(8, 16, 2_000_000, 34, 4 * GIB)
    assert workers == int(4 * GIB * 0.8 // per_asset) < 8
    assert why == (
        f"building features for {workers} asset(s) at a time, not 8: each asset's 2,000,000 "
        f"bars x 34 features take about {per_asset / GIB:.1f} GiB and 4.0 GiB of memory is "
        "available"
    )
    assert build_workers(8, 16, 2_000_000, 34, 0.1 * GIB)[0] == 1  # never fewer than one


def test_resume_verifies_the_run_store_once_and_names_the_fix(tmp_path: Path) -> None:
    from tests.helpers.launch import small_run
    from training.run.folder import load_run

    run = small_run(tmp_path, members=1)
    store = Path(json.loads((run.run_dir / "jobs.json").read_text())["store"])
    assert len(load_run(run.run_dir)) == len(run.jobs)
    with (store / "prices.npy").open("r+b") as handle:
        handle.seek(-3, os.SEEK_END)
        handle.write(b"\x7f")
    with pytest.raises(UserError) as err:
        load_run(run.run_dir)
    assert str(err.value) == (
        f"the run's feature store {store} is damaged (prices.npy: checksum mismatch)\n"
        f"  fix: rebuild it with the run's config (./start_training.sh --config "
        f"{run.run_dir / 'config.yaml'} --dry-run), then resume"
    )


def test_a_cache_disk_too_small_is_one_message_before_anything_is_written(
    dataset: Path, tmp_path: Path
) -> None:
    small = tmp_path / "small"
    small.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a small filesystem needs root to mount")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"root without mount permission ({mounted.stderr!r})")
    try:
        with pytest.raises(UserError, match=r"the build needs about [0-9,]+ MB, 0 MB free\n"):
            build(dataset, small)
        assert list(small.iterdir()) == []  # the scratch folder went with the refusal
    finally:
        subprocess.run(["umount", "--lazy", str(small)], check=True)
