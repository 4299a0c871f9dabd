"""The generated sample: its planted drift is the only predictable part, and controls remove it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import load_config
from core.data import synthetic
from core.data.source import sample_config
from core.data.synthetic import DRIFT_HALF_LIFE_DAYS, generate, permuted
from core.units import HOUR_NS

N_BARS = 24 * 365 * 3


def log_returns(frames: dict[str, pd.DataFrame]) -> np.ndarray:
    return np.stack([np.diff(np.log(frame["close"].to_numpy())) for frame in frames.values()])


def momentum_correlation(returns: np.ndarray, lookback: int) -> float:
    """Correlation of the trailing `lookback`-bar return with the next bar's return."""
    cumulative = np.cumsum(returns, axis=1)
    trailing = cumulative[:, lookback:-1] - cumulative[:, : -lookback - 1]
    following = returns[:, lookback + 1 :]
    return float(np.corrcoef(trailing.ravel(), following.ravel())[0, 1])


def test_planted_drift_makes_trailing_returns_predictive_and_zero_removes_it() -> None:
    lookback = int(DRIFT_HALF_LIFE_DAYS * 24 / 2)
    planted = momentum_correlation(log_returns(generate(4, N_BARS, HOUR_NS, 0.08, 3)), lookback)
    null = momentum_correlation(log_returns(generate(4, N_BARS, HOUR_NS, 0.0, 3)), lookback)
    assert planted > 0.03  # a slow drift: days of returns point the same way
    assert abs(null) < 0.015


def test_permuting_keeps_every_move_and_removes_the_drift() -> None:
    frames = generate(4, N_BARS, HOUR_NS, 0.08, 3)
    shuffled = permuted(frames, seed=5)
    before, after = log_returns(frames), log_returns(shuffled)
    assert np.allclose(np.sort(before, axis=1), np.sort(after, axis=1))
    assert not np.allclose(before, after)
    assert abs(momentum_correlation(after, int(DRIFT_HALF_LIFE_DAYS * 12))) < 0.015


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), signal=st.sampled_from([0.0, 0.08]))
def test_permuted_bars_are_valid_and_deterministic(seed: int, signal: float) -> None:
    frames = generate(2, 500, HOUR_NS, signal, seed)
    shuffled = permuted(frames, seed)
    assert all(
        a.equals(b) for a, b in zip(shuffled.values(), permuted(frames, seed).values(), strict=True)
    )
    for frame in shuffled.values():
        assert (frame["high"] >= frame[["open", "close"]].max(axis=1) - 1e-9).all()
        assert (frame["low"] <= frame[["open", "close"]].min(axis=1) + 1e-9).all()
        assert (frame["open"].to_numpy()[1:] == frame["close"].to_numpy()[:-1]).all()
        assert frame["timestamp"].equals(next(iter(frames.values()))["timestamp"])


def test_a_sample_a_concurrent_generator_finished_first_is_kept_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two commands starting at once both generate; the loser must not delete the folder the
    winner's readers already have open."""
    sample = sample_config(load_config().data)
    config = sample.model_copy(update={"synthetic_assets": 1, "synthetic_years": 0.05})
    target = tmp_path / synthetic.sample_name(config)
    real_write = synthetic.write_dataset

    def rival_finishes_first(frames: dict[str, pd.DataFrame], folder: Path, fmt: str) -> None:
        real_write(frames, folder, fmt)
        target.mkdir()
        (target / ".complete").write_text("the rival's\n")
        (target / "open-by-a-reader").write_text("x")

    monkeypatch.setattr(synthetic, "write_dataset", rival_finishes_first)
    assert synthetic.ensure_sample(config, tmp_path) == target
    assert (target / "open-by-a-reader").is_file()
    assert (target / ".complete").read_text() == "the rival's\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == [target.name]  # no scratch left
