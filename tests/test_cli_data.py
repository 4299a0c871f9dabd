"""The data commands as a user types them: generate, check, export; bad data is one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.test_cli import run_cli

pytestmark = pytest.mark.slow

SHORT = [
    "--set", "data.synthetic_assets=2",
    "--set", "data.synthetic_years=0.5",
    "--set", "features.timeframes=[1h,4h]",
    "--set", "features.normalisation_window=60",
    "--set", "walk_forward.train_years=0.1",
    "--set", "walk_forward.validation_months=1",
    "--set", "walk_forward.test_months=1",
    "--set", "data.cache_dir={cache}",
    "--no-progress",
]  # fmt: skip


def short(tmp_path: Path) -> list[str]:
    return [arg.format(cache=tmp_path / "cache") for arg in SHORT]


@pytest.fixture
def generated(tmp_path: Path) -> Path:
    folder = tmp_path / "generated"
    done = run_cli("--generate-data", str(folder), *short(tmp_path))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["SYN01.csv", "SYN02.csv"]
    return folder


def test_check_data_prints_the_summary(generated: Path, tmp_path: Path) -> None:
    done = run_cli("--check-data", "--data", str(generated), *short(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "2 asset(s), 4,383 bars of 1h" in done.stdout
    assert "2017-01-01 00:00 UTC" in done.stdout and "SYN02" in done.stdout
    assert "is valid and long enough" in done.stdout


def test_bad_row_is_one_clear_error(generated: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(generated / "SYN02.csv")
    frame.loc[100, "high"] = frame.loc[100, "low"] / 2
    frame.to_csv(generated / "SYN02.csv", index=False)
    done = run_cli("--check-data", "--data", str(generated), *short(tmp_path))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and "SYN02.csv, line 102" in done.stderr
    assert "fix:" in done.stderr


def test_too_short_for_the_windows(generated: Path, tmp_path: Path) -> None:
    done = run_cli(
        "--check-data",
        "--data",
        str(generated),
        *short(tmp_path),
        "--set",
        "walk_forward.train_years=1",
    )
    assert done.returncode == 2 and "dataset too short" in done.stderr
    assert "Traceback" not in done.stderr


def test_export_features_and_dry_run_share_one_build(generated: Path, tmp_path: Path) -> None:
    out = tmp_path / "features.parquet"
    done = run_cli("--export-features", str(out), "--data", str(generated), *short(tmp_path))
    assert done.returncode == 0, done.stderr
    table = pd.read_parquet(out)
    assert set(table["asset"]) == {"SYN01", "SYN02"} and "4h_rsi" in table.columns
    planned = run_cli("--dry-run", "--json", "--data", str(generated), *short(tmp_path))
    assert planned.returncode == 0, planned.stderr
    data = json.loads(planned.stdout)["data"]
    assert data["built_now"] is False and data["assets"] == 2
    assert data["bars"] * 2 == len(table)


def test_missing_dataset_folder(tmp_path: Path) -> None:
    done = run_cli("--check-data", "--data", str(tmp_path / "nowhere"), "--no-progress")
    assert done.returncode == 2 and "dataset not found" in done.stderr
