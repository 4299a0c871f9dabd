"""features.regime=hmm: the HMM is fitted on a fold's training bars only, its filtered state
probabilities are causal, separate planted regimes, and a run trains and reports with them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.bar_range import BarRange
from core.config import load_config
from core.errors import UserError
from core.features.regime import (
    RegimeModel,
    applied_regime_store,
    filtered_probabilities,
    fit_regime,
    fold_regime_store,
    regime_names,
)
from tests.helpers.stores import built_store
from tests.test_replay import cli
from training.run.files import RunFiles

N_BARS, TRAIN = 1200, BarRange(0, 800)
STATES, SEED = 3, 7


def two_regimes(n_bars: int = N_BARS, seed: int = 0) -> np.ndarray:
    """[asset, time, OHLCV] prices of 3 assets: calm (0.2 %/bar) for the first half of every
    quarter of the bars' span, then turbulent (2 %/bar)."""
    rng = np.random.default_rng(seed)
    turbulent = (np.arange(n_bars) // (n_bars // 4)) % 2 == 1
    returns = rng.normal(0.0, 1.0, (3, n_bars)) * np.where(turbulent, 0.02, 0.002)
    close = 100.0 * np.exp(np.cumsum(returns, axis=1))
    return np.stack([close, close, close, close, np.ones_like(close)], axis=2)


@pytest.fixture(scope="module")
def fitted() -> tuple[np.ndarray, RegimeModel, np.ndarray]:
    prices = two_regimes()
    model = fit_regime(prices, TRAIN, STATES, SEED)
    return prices, model, filtered_probabilities(model, prices)


@settings(max_examples=40, deadline=None)
@given(t=st.integers(0, N_BARS - 1))
def test_the_probability_at_bar_t_is_unchanged_when_later_bars_are_removed(
    fitted: tuple[np.ndarray, RegimeModel, np.ndarray], t: int
) -> None:
    prices, model, everything = fitted
    prefix = filtered_probabilities(model, prices[:, : t + 1])
    assert prefix.shape == (t + 1, STATES)
    np.testing.assert_array_equal(prefix[t], everything[t])
    assert np.isclose(everything[t].sum(), 1.0)


def test_the_filter_is_not_smoothed(fitted: tuple[np.ndarray, RegimeModel, np.ndarray]) -> None:
    """hmmlearn's predict_proba (forward-backward) differs: it reads later bars."""
    from hmmlearn.hmm import GaussianHMM

    prices, model, everything = fitted
    hmm = GaussianHMM(STATES, covariance_type="full")
    hmm.startprob_, hmm.transmat_ = model.startprob, model.transmat
    hmm.means_, hmm.covars_ = model.means, model.covars
    from core.features.regime import regime_observations

    smoothed = hmm.predict_proba((regime_observations(prices) - model.centre) / model.scale)
    assert not np.allclose(smoothed, everything, atol=1e-6)
    assert np.allclose(smoothed[-1], everything[-1], atol=1e-6)  # the last bar: nothing later


def test_the_fit_reads_the_training_bars_only(
    fitted: tuple[np.ndarray, RegimeModel, np.ndarray],
) -> None:
    prices, model, _ = fitted
    changed = prices.copy()
    rng = np.random.default_rng(99)
    changed[:, TRAIN.stop :, :4] *= np.exp(
        rng.normal(0.0, 0.05, changed[:, TRAIN.stop :, :1].shape)
    )
    again = fit_regime(changed, TRAIN, STATES, SEED)
    assert json.dumps(again.to_json()) == json.dumps(model.to_json())
    assert RegimeModel.from_json(json.loads(json.dumps(model.to_json()))).to_json() == (
        model.to_json()
    )


def test_the_filtered_state_separates_planted_calm_and_turbulent_bars(
    fitted: tuple[np.ndarray, RegimeModel, np.ndarray],
) -> None:
    _, _, everything = fitted
    turbulent = (np.arange(N_BARS) // (N_BARS // 4)) % 2 == 1
    dominant = everything.argmax(axis=1)
    settled = np.arange(N_BARS) % (N_BARS // 4) >= 24  # past the volatility window's turn
    calm_state = np.bincount(dominant[~turbulent & settled]).argmax()
    wild_state = np.bincount(dominant[turbulent & settled]).argmax()
    assert calm_state != wild_state
    assert (dominant[~turbulent & settled] == calm_state).mean() > 0.9
    assert (dominant[turbulent & settled] != calm_state).mean() > 0.9
    assert wild_state > calm_state  # states are ordered calm to volatile
    # ... and on the bars after the training window, which the fit never saw:
    later = settled & (np.arange(N_BARS) >= TRAIN.stop)
    assert (dominant[later & turbulent] != calm_state).mean() > 0.9


def test_more_states_than_the_training_bars_fit_are_refused_with_the_key() -> None:
    with pytest.raises(UserError, match=r"features\.regime_states=5 needs at least 50") as refused:
        fit_regime(two_regimes(), BarRange(0, 30), 5, SEED)
    assert "fix: set features.regime_states to at most 3" in str(refused.value)
    with pytest.raises(UserError, match="regime_states"):
        load_config(overrides=["features.regime=hmm", "features.regime_states=11"])
    with pytest.raises(UserError, match="regime"):
        load_config(overrides=["features.regime=kalman"])


def test_a_fold_store_adds_the_columns_to_every_asset_and_is_reused(tmp_path: Path) -> None:
    store = built_store(tmp_path, n_bars=700)
    bars = BarRange(0, 300)
    fold = fold_regime_store(store, bars, 2, SEED)
    n_assets, n_bars, n_features = store.features.shape
    assert fold.features.shape == (n_assets, n_bars, n_features + 2)
    assert fold.feature_names == [*store.feature_names, *regime_names(2)]
    np.testing.assert_array_equal(fold.features[:, :, :n_features], store.features)
    for asset in range(1, n_assets):  # market-wide: the same columns for every asset
        np.testing.assert_array_equal(fold.features[asset, :, -2:], fold.features[0, :, -2:])
    np.testing.assert_array_equal(fold.prices, store.prices)
    model = RegimeModel.from_json(fold.meta["regime"]["model"])
    np.testing.assert_allclose(
        fold.features[0, :, -2:], filtered_probabilities(model, store.prices), atol=1e-7
    )
    assert fold_regime_store(store, bars, 2, SEED).path == fold.path  # found, not rebuilt
    assert fold_regime_store(store, BarRange(0, 400), 2, SEED).path != fold.path
    # Replayed on the run's own bars, a fold's model gives its store's columns again.
    replayed = applied_regime_store(store, model)
    np.testing.assert_array_equal(replayed.features, fold.features)


def test_a_job_reads_its_fold_store_and_replays_its_fold_model_on_other_bars(
    tmp_path: Path,
) -> None:
    """The seam every env of a job is built through (training.run.folder.job_store)."""
    from core.folds import Fold
    from training.run.folder import fold_stores, job_store
    from training.run.job import Job

    store = built_store(tmp_path / "run", n_bars=700)
    fold = Fold(0, BarRange(0, 300), BarRange(300, 400), BarRange(400, 500), 0)
    config = load_config(overrides=["features.regime=hmm", "features.regime_states=2"])
    (own,) = fold_stores(store, [fold], config).values()
    assert fold_stores(store, [fold], load_config()) == {0: store}  # regime none: the run's
    job = Job(str(tmp_path), str(own.path), fold, 0, 0, 512, "batch", 1, 64, 64, "cpu", 1)
    assert job_store(job).path == own.path
    assert job_store(job, store).path == own.path  # replayed on the run's own bars
    other = built_store(tmp_path / "other", n_bars=650, seed=5)
    replayed = job_store(job, other)
    model = RegimeModel.from_json(own.meta["regime"]["model"])
    assert replayed.feature_names == own.feature_names
    np.testing.assert_allclose(
        replayed.features[0, :, -2:], filtered_probabilities(model, other.prices), atol=1e-7
    )
    plain = Job(str(tmp_path), str(store.path), fold, 0, 0, 512, "batch", 1, 64, 64, "cpu", 1)
    assert job_store(plain, other) is other  # no regime columns: the replay's own store
    with pytest.raises(UserError, match=r"features\.regime_states=2 needs at least 20"):
        fold_stores(store, [Fold(1, BarRange(0, 15), fold.validation, fold.test, 0)], config)


def test_a_resumed_run_rebuilds_a_fold_store_the_cache_lost(tmp_path: Path) -> None:
    """Its folder name is its recipe (store, fitted bars, states, seed): the same one again."""
    from core.atomic import remove_dir
    from tests.helpers.launch import small_run
    from training.run.folder import load_run

    run = small_run(tmp_path, 1, 512, "features.regime=hmm", "features.regime_states=2")
    (job,) = run.jobs
    fold_store = Path(job.store_path)
    assert "-hmm-" in fold_store.name and fold_store.is_dir()
    before = (fold_store / "features.npy").read_bytes()
    remove_dir(fold_store)
    (again,) = load_run(run.run_dir)
    assert again.store_path == job.store_path
    assert (fold_store / "features.npy").read_bytes() == before


@pytest.mark.slow
def test_the_quick_preset_trains_and_reports_with_regime_columns(tmp_path: Path) -> None:
    pytest.importorskip("hmmlearn")
    out = tmp_path / "runs"
    sets = (
        "features.regime=hmm",
        "features.regime_states=2",
        "ensemble.size=1",
        "walk_forward.max_folds=1",
        "walk_forward.validation_months=3",
        "walk_forward.test_months=2",
        "ppo.total_timesteps=512",
        "training.eval_every_steps=256",
    )
    done = cli("--preset", "quick", "--output", str(out), *[a for s in sets for a in ("--set", s)])
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = out.iterdir()
    assert (run_dir / "report.md").is_file()
    (job,) = json.loads(RunFiles(run_dir).jobs.read_text())["jobs"]
    meta = json.loads((Path(job["store_path"]) / "meta.json").read_text())
    assert meta["feature_names"][-2:] == ["regime_p0", "regime_p1"]
    assert meta["regime"]["recipe"]["fit_bars"] == [
        job["fold"]["train"]["start"],
        job["fold"]["train"]["stop"],
    ]
    from stable_baselines3 import PPO

    (best,) = (RunFiles(run_dir).job(0, 0).folder / "checkpoints").glob("best-*.zip")
    model = PPO.load(best, device="cpu")
    n_assets, window = len(meta["assets"]), 1  # the quick preset's env.window
    assert model.observation_space["market"].shape[-1] == (
        n_assets * window * len(meta["feature_names"])
    )


def test_a_sweep_cannot_search_the_regime_settings() -> None:
    from training.tuning.space import check_space

    space = load_config(
        overrides=["tuning.space={features.regime_states: {type: int, low: 2, high: 4}}"]
    ).tuning.space
    with pytest.raises(UserError, match="fitted once per fold"):
        check_space([], [], space)
