"""Deterministic synthetic markets: volatility clustering, regime changes, an optional planted edge.

The planted edge (`signal`) is a persistent drift: each asset's return carries a slow, mean-
reverting component (an AR(1) with a half-life of DRIFT_HALF_LIFE_DAYS) of standard deviation
`signal` x the bar's volatility. Its sign lasts for days, so trailing returns reveal it and a
position held for days earns it after costs, while one bar of it is small next to the noise.
`signal=0` gives no predictable component at all (the no-edge control every honest evaluation
needs). `autocorrelation` instead plants a lag-1 autocorrelation of returns (a fast edge that
only a one-bar strategy can use; the training benchmark's learnable set-up).
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from core.atomic import publish_dir, remove_dir, replacing_path
from core.config import DataConfig
from core.data.timestamps import parse_duration
from core.units import DAY_NS, HOUR_NS, YEAR_NS

START = pd.Timestamp("2017-01-01", tz="UTC")
BASE_VOLATILITY = 0.006  # per hour, about 56 % a year: a liquid crypto pair
MARKET_SHARE = 0.3  # fraction of each asset's noise variance shared with the market
REGIMES = (  # (drift per year, volatility multiplier): calm bull, quiet, bear, turbulent
    (0.40, 0.8),
    (0.00, 0.7),
    (-0.35, 1.3),
    (0.10, 1.8),
)
MEAN_REGIME_YEARS = 0.35
VOL_PERSISTENCE_HOURS = 72.0  # half-life of the log-volatility AR(1)
VOL_OF_VOL = 0.5  # stationary std of log-volatility
DRIFT_HALF_LIFE_DAYS = 10.0  # persistence of the planted drift


def bars_for_years(years: float, bar_ns: int) -> int:
    return math.ceil(years * YEAR_NS / bar_ns)


def generate(
    n_assets: int,
    n_bars: int,
    bar_ns: int,
    signal: float,
    seed: int,
    autocorrelation: float = 0.0,
) -> dict[str, pd.DataFrame]:
    """OHLCV frames (timestamp = bar open, UTC) for assets SYN01..; same inputs, same bytes."""
    rng = np.random.default_rng(seed)
    hours = bar_ns / HOUR_NS
    regime = _regimes(rng, n_bars, hours)
    drift = np.array([r[0] for r in REGIMES])[regime] * bar_ns / YEAR_NS
    regime_vol = np.array([r[1] for r in REGIMES])[regime]
    market = rng.standard_normal(n_bars)
    timestamps = pd.date_range(START, periods=n_bars, freq=pd.Timedelta(bar_ns), unit="ns")
    frames = {}
    for asset in range(n_assets):
        noise = math.sqrt(MARKET_SHARE) * market + math.sqrt(
            1 - MARKET_SHARE
        ) * rng.standard_normal(n_bars)
        standardised = _ar1(noise, autocorrelation) if autocorrelation > 0 else noise
        planted = _ar1(
            rng.standard_normal(n_bars), 0.5 ** (bar_ns / (DRIFT_HALF_LIFE_DAYS * DAY_NS))
        )
        standardised = standardised + signal * planted
        log_vol = _ar1(rng.standard_normal(n_bars), 0.5 ** (hours / VOL_PERSISTENCE_HOURS))
        sigma = BASE_VOLATILITY * math.sqrt(hours) * regime_vol * np.exp(VOL_OF_VOL * log_vol)
        returns = drift + sigma * standardised
        start_price = float(rng.uniform(20, 2000))
        close = start_price * np.exp(np.cumsum(returns))
        open_ = np.concatenate([[start_price], close[:-1]])
        wick = np.abs(rng.standard_normal((2, n_bars))) * 0.5 * sigma
        high = np.maximum(open_, close) * np.exp(wick[0])
        low = np.minimum(open_, close) * np.exp(-wick[1])
        volume = 1_000 * np.exp(0.4 * rng.standard_normal(n_bars) + 2 * (sigma / sigma.mean() - 1))
        frames[f"SYN{asset + 1:02d}"] = pd.DataFrame(
            {
                "timestamp": timestamps,
                "open": open_,
                "high": high,
                "low": low,
                "close": close,
                "volume": volume,
            }
        )
    return frames


def _regimes(rng: np.random.Generator, n_bars: int, hours_per_bar: float) -> np.ndarray:
    """A regime index per bar: regimes last a geometric number of bars, then switch."""
    mean_bars = MEAN_REGIME_YEARS * 365.25 * 24 / hours_per_bar
    lengths = rng.geometric(1 / mean_bars, size=int(4 * n_bars / mean_bars) + 8)
    while lengths.sum() < n_bars:
        lengths = np.concatenate([lengths, rng.geometric(1 / mean_bars, size=len(lengths))])
    states = rng.integers(0, len(REGIMES), size=len(lengths))
    return np.repeat(states, lengths)[:n_bars]


def _ar1(shocks: np.ndarray, rho: float) -> np.ndarray:
    """Unit-variance AR(1) x_t = rho x_{t-1} + sqrt(1-rho^2) e_t, started stationary.

    pandas' exponentially weighted mean with adjust=False is exactly this recursion, in C
    (no scipy dependency, no per-bar Python loop).
    """
    scaled = shocks * math.sqrt(1 - rho**2) / (1 - rho)
    scaled[0] = shocks[0]  # the recursion starts at x_0 = e_0: stationary from the first bar
    return pd.Series(scaled).ewm(alpha=1 - rho, adjust=False).mean().to_numpy()


def write_dataset(frames: dict[str, pd.DataFrame], folder: Path, file_format: str) -> None:
    """One file per asset (`file_format` csv or parquet), each written whole or not at all;
    CSV timestamps are ISO 8601 with the UTC offset."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        with replacing_path(folder / f"{name}.{file_format}") as scratch:
            if file_format == "parquet":
                frame.to_parquet(scratch, index=False)
            else:
                text = frame.assign(timestamp=frame["timestamp"].map(pd.Timestamp.isoformat))
                text.to_csv(scratch, index=False, float_format="%.8g")


def sample_name(config: DataConfig) -> str:
    signal = f"{config.synthetic_signal:g}".replace(".", "p")
    return (
        f"synthetic-{config.synthetic_assets}x{config.synthetic_years:g}y-{config.bar}"
        f"-drift{signal}-seed{config.seed}{'-permuted' if config.synthetic_permuted else ''}"
    )


def permuted(frames: dict[str, pd.DataFrame], seed: int) -> dict[str, pd.DataFrame]:
    """The same bars with their order shuffled: every bar keeps its close-to-close move, wicks and
    volume, so returns keep their distribution (and assets their correlation: one shuffle for
    all), but nothing about one bar says anything about the next. A control: no edge survives."""
    rng = np.random.default_rng(seed)
    n_bars = len(next(iter(frames.values())))
    order = np.concatenate([[0], 1 + rng.permutation(n_bars - 1)])
    shuffled = {}
    for name, frame in frames.items():
        close = frame["close"].to_numpy()
        moves = np.diff(np.log(close), prepend=np.log(frame["open"].iloc[0]))[order]
        top = frame["high"] / np.maximum(frame["open"], frame["close"])
        bottom = frame["low"] / np.minimum(frame["open"], frame["close"])
        new_close = close[0] / np.exp(moves[0]) * np.exp(np.cumsum(moves))
        new_open = np.concatenate([[frame["open"].iloc[0]], new_close[:-1]])
        shuffled[name] = frame.assign(
            open=new_open,
            high=np.maximum(new_open, new_close) * top.to_numpy()[order],
            low=np.minimum(new_open, new_close) * bottom.to_numpy()[order],
            close=new_close,
            volume=frame["volume"].to_numpy()[order],
        )
    return shuffled


def ensure_sample(config: DataConfig, folder: Path) -> Path:
    """The generated sample dataset for this config, written once (atomically) and reused."""
    target = folder / sample_name(config)
    if (target / ".complete").is_file():
        return target
    scratch = folder / f".generating-{sample_name(config)}-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        write_dataset(generate_from_config(config), scratch, "parquet")
        (scratch / ".complete").write_text("generated by core.data.synthetic\n")
        if (target / ".complete").is_file():  # a concurrent generator won: the same bars
            return target
        remove_dir(target)  # an unfinished folder (no .complete) is never trusted
        try:
            publish_dir(scratch, target)
        except OSError:
            if not (target / ".complete").is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def generate_from_config(config: DataConfig) -> dict[str, pd.DataFrame]:
    bar_ns = parse_duration(config.bar, "data.bar")
    frames = generate(
        config.synthetic_assets,
        bars_for_years(config.synthetic_years, bar_ns),
        bar_ns,
        config.synthetic_signal,
        config.seed,
    )
    return permuted(frames, config.seed) if config.synthetic_permuted else frames
