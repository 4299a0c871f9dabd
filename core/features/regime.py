"""Market regimes as features (features.regime: hmm): a Gaussian HMM fitted on one fold's
training bars, its filtered state probabilities as extra feature columns of every asset.

The HMM observes, per bar, the cross-asset mean log return and a causal volatility (the trailing
mean of the cross-asset mean absolute log return), standardised with the training bars'
statistics. It is fitted on the fold's training bars only (hmmlearn's EM, seeded from the fold),
then run forward over every bar of the store: the probability at bar t uses bars <= t alone. The
regime is market-wide, so its S columns are repeated for every asset and every policy extractor
reads them as shared columns (core.policies.layout), unchanged.

A fold's regime store is a FeatureStore folder beside the run's (content-addressed by the base
store, the fitted bars, the states and the seed): the base features plus the S columns, the
same prices and timestamps (hard links where the filesystem allows), and meta.json with the
fitted model, so members attach it by mmap and --predict can apply it to new bars.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import publish_dir, remove_dir
from core.bar_range import BarRange
from core.errors import UserError
from core.features.store import FeatureStore, describe_arrays, read_meta, store_problem

REGIME_FORMAT = 1  # the recipe of a regime store: a change makes new store folders
MIN_BARS_PER_STATE = 10  # fewer training bars per state cannot fit a mean, a covariance and
# the transitions of every state
VOLATILITY_BARS = 24  # trailing bars in the volatility observation
FIT_ITERATIONS = 100
CLOSE = 3  # prices' columns: open, high, low, close, volume
UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}
REGIME_TAG = "-hmm-"  # in a regime store's folder name: <base store>-hmm-<recipe digest>


@dataclass(frozen=True)
class RegimeModel:
    """A fitted Gaussian HMM over standardised observations, states ordered calm to volatile."""

    startprob: np.ndarray  # [S]
    transmat: np.ndarray  # [S, S]
    means: np.ndarray  # [S, 2] standardised (return, volatility)
    covars: np.ndarray  # [S, 2, 2]
    centre: np.ndarray  # [2] the training bars' mean of each observation
    scale: np.ndarray  # [2] ... and standard deviation

    @property
    def states(self) -> int:
        return len(self.startprob)

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name).tolist() for name in _MODEL_FIELDS}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RegimeModel:
        return cls(**{name: np.asarray(data[name], dtype=np.float64) for name in _MODEL_FIELDS})


_MODEL_FIELDS = ("startprob", "transmat", "means", "covars", "centre", "scale")


def regime_names(states: int) -> list[str]:
    """The regime columns, after every other feature: shared columns, no timeframe prefix."""
    return [f"regime_p{state}" for state in range(states)]


def regime_observations(prices: np.ndarray) -> np.ndarray:
    """[time, 2]: each bar's cross-asset mean log return and the trailing mean (VOLATILITY_BARS,
    fewer at the start) of the cross-asset mean absolute log return; bar t reads bars <= t."""
    close = np.log(np.asarray(prices[:, :, CLOSE], dtype=np.float64))
    returns = np.nan_to_num(np.diff(close, axis=1, prepend=close[:, :1]))  # bar 0: no return
    mean = returns.mean(axis=0)
    absolute = np.concatenate([[0.0], np.cumsum(np.abs(returns).mean(axis=0))])
    stop = np.arange(1, len(mean) + 1)
    start = np.maximum(stop - VOLATILITY_BARS, 0)
    volatility = (absolute[stop] - absolute[start]) / (stop - start)
    return np.column_stack([mean, volatility])


def check_regime_bars(states: int, train_bars: int, fold: int | None = None) -> None:
    """Refuse more states than the training bars can fit, naming the key and what fits."""
    need = MIN_BARS_PER_STATE * states
    if train_bars >= need:
        return
    where = f"fold {fold}'s" if fold is not None else "the"
    fits = train_bars // MIN_BARS_PER_STATE
    fix = (
        f"set features.regime_states to at most {fits}" if fits >= 2 else "set features.regime=none"
    )
    raise UserError(
        f"features.regime_states={states} needs at least {need:,} training bars "
        f"({MIN_BARS_PER_STATE} per state); {where} training window has {train_bars:,}\n"
        f"  fix: {fix}, or give the folds longer training windows (walk_forward.train_months)"
    )


def fit_regime(prices: np.ndarray, bars: BarRange, states: int, seed: int) -> RegimeModel:
    """The HMM fitted on `bars` alone: nothing after bars.stop is read (its trailing
    volatility reaches back before bars.start, never forward)."""
    from hmmlearn.hmm import GaussianHMM

    check_regime_bars(states, len(bars))
    observed = regime_observations(prices[:, : bars.stop])[bars.start :]
    centre, scale = observed.mean(axis=0), observed.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    hmm = GaussianHMM(
        states, covariance_type="full", n_iter=FIT_ITERATIONS, random_state=seed % 2**32
    )
    try:
        hmm.fit((observed - centre) / scale)
    except ValueError as error:  # a state left without bars (a flat market)
        raise _unfittable(states, error) from None
    fitted = (hmm.startprob_, hmm.transmat_, hmm.means_, hmm.covars_)
    if not all(np.isfinite(part).all() for part in fitted):
        raise _unfittable(states, ValueError("the fit did not converge to finite parameters"))
    order = np.argsort(hmm.means_[:, 1], kind="stable")  # calm first: stable column meanings
    return RegimeModel(
        startprob=hmm.startprob_[order],
        transmat=hmm.transmat_[np.ix_(order, order)],
        means=hmm.means_[order],
        covars=hmm.covars_[order],
        centre=centre,
        scale=scale,
    )


def _unfittable(states: int, error: Exception) -> UserError:
    return UserError(
        f"features.regime_states={states}: the HMM cannot be fitted on the training bars "
        f"({error})\n  fix: set fewer features.regime_states, or features.regime=none"
    )


def filtered_probabilities(model: RegimeModel, prices: np.ndarray) -> np.ndarray:
    """[time, S]: P(state at t | bars <= t), the forward recursion's normalised alpha."""
    observed = (regime_observations(prices) - model.centre) / model.scale
    return forward_filter(model.startprob, model.transmat, gaussian_loglik(model, observed))


def gaussian_loglik(model: RegimeModel, observed: np.ndarray) -> np.ndarray:
    """[time, S] log densities, row by row with elementwise arithmetic only (no BLAS kernel
    whose blocking depends on the row count), so a bar's value never depends on later bars."""
    out = np.empty((len(observed), model.states))
    dims = observed.shape[1]
    for state in range(model.states):
        chol = np.linalg.cholesky(model.covars[state])
        whitened = ((observed - model.means[state])[:, None, :] * np.linalg.inv(chol)).sum(-1)
        log_det = 2.0 * np.log(np.diag(chol)).sum()
        out[:, state] = -0.5 * ((whitened**2).sum(-1) + log_det + dims * np.log(2 * np.pi))
    return out


def forward_filter(startprob: np.ndarray, transmat: np.ndarray, loglik: np.ndarray) -> np.ndarray:
    """Filtered state probabilities. Not hmmlearn's predict_proba: that is forward-backward
    (smoothed), so bar t's value would use later bars, which no trader has at t."""
    likelihood = np.exp(loglik - loglik.max(axis=1, keepdims=True))
    states = len(startprob)
    probs = np.empty_like(likelihood)
    prior = np.asarray(startprob, dtype=np.float64)
    for t in range(len(likelihood)):
        alpha = prior * likelihood[t]
        total = alpha.sum()
        alpha = alpha / total if total > 0 else np.full(states, 1.0 / states)
        probs[t] = alpha
        prior = alpha @ transmat
    return probs


def fold_regime_store(store: FeatureStore, bars: BarRange, states: int, seed: int) -> FeatureStore:
    """`store` with the regime columns of the HMM fitted on `bars` (a fold's training bars);
    built once and verified (checksums) when found, rebuilt when damaged."""
    spec = {"fit_bars": [bars.start, bars.stop], "states": states, "seed": seed}
    return _derived(store, spec, lambda: fit_regime(store.prices, bars, states, seed))


def applied_regime_store(store: FeatureStore, model: RegimeModel) -> FeatureStore:
    """`store` (other bars a run's agents are replayed on) with a fold's fitted regime model
    run forward over them: the columns that fold's members were trained with."""
    return _derived(store, {"model": model.to_json()}, lambda: model)


def _derived(
    store: FeatureStore, spec: dict[str, Any], model_of: Callable[[], RegimeModel]
) -> FeatureStore:
    recipe = {"format": REGIME_FORMAT, "store": store.meta["hash"], **spec}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
    final = store.path.parent / f"{store.path.name}{REGIME_TAG}{digest[:16]}"
    if final.exists():
        if store_problem(final, digest, checksums=True) is None:
            return FeatureStore.attach(final)
        remove_dir(final)  # damaged or unfinished: renamed aside in one step, then rebuilt
    model = model_of()
    try:
        _build(final, store, model, digest, recipe)
    except OSError as error:
        if error.errno not in UNWRITABLE:
            raise
        raise UserError(
            f"cannot write the regime store {final.name} in {final.parent}: "
            f"{error.strerror or error}\n  fix: --set data.cache_dir=<a folder you can write "
            "to> (or make room there): each fold's regime columns are a store beside the run's"
        ) from None
    return FeatureStore.attach(final)


def _build(
    final: Path, store: FeatureStore, model: RegimeModel, digest: str, recipe: dict[str, Any]
) -> None:
    scratch = final.parent / f".building-{final.name}-{os.getpid()}"  # swept if we die
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        _write(scratch, store, model, digest, recipe)
        try:
            publish_dir(scratch, final)
        except OSError:
            if read_meta(final, digest) is None:  # a concurrent builder's equal store wins
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _write(
    scratch: Path, store: FeatureStore, model: RegimeModel, digest: str, recipe: dict[str, Any]
) -> None:
    """The arrays asset by asset (memory stays at one asset's rows), then meta.json."""
    probs = filtered_probabilities(model, store.prices).astype(np.float32)
    n_assets, n_bars, n_features = store.features.shape
    out = np.lib.format.open_memmap(
        scratch / "features.npy",
        mode="w+",
        dtype=np.float32,
        shape=(n_assets, n_bars, n_features + model.states),
    )
    for asset in range(n_assets):
        out[asset, :, :n_features] = store.features[asset]
        out[asset, :, n_features:] = probs
    out.flush()
    del out
    for name in ("prices", "timestamps"):
        _link_or_copy(store.path / f"{name}.npy", scratch / f"{name}.npy")
    meta = {
        **store.meta,
        "hash": digest,
        "feature_names": [*store.feature_names, *regime_names(model.states)],
        "regime": {
            "recipe": recipe,
            "base_store": str(store.path),
            "base_hash": store.meta["hash"],
            "model": model.to_json(),
        },
    }
    meta["arrays"] = describe_arrays(scratch)
    (scratch / "meta.json").write_text(json.dumps(meta, indent=2))


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link (no second copy on disk; stores are never written in place), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
