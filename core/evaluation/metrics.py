"""Performance metrics for a strategy's per-bar simple returns, with the annualisation spelled out.

Every annualised number depends on how many bars make a year, which differs between 24/7 markets
and exchange sessions, so `annualisation` returns the factor together with the text that says
where it came from; print that text next to the numbers.

Conventions: returns are simple per-bar returns (equity_t = equity_{t-1} · (1 + r_t)); the
risk-free rate is 0; std is the sample std (ddof = 1). Statistics that need a spread (Sharpe,
Sortino, volatility, PSR, DSR) are nan for fewer than 2 returns: one bar says nothing about risk.
Inputs may be lists or arrays; an empty or non-finite series raises ValueError, because a nan
sneaking into a report reads as a result.

PSR and DSR follow Bailey & López de Prado, "The Sharpe Ratio Efficient Frontier" (2012) and
"The Deflated Sharpe Ratio" (2014), on the non-annualised per-bar Sharpe, as the papers do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from core.data.calendar import measured_bars_per_year
from core.units import YEAR_NS, format_duration

EULER_GAMMA = 0.5772156649015329
CALENDARS = ("continuous", "sessions")

_NORMAL = NormalDist()

ArrayLike = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class Annualisation:
    """Bars per year and the human text printed next to every annualised number."""

    periods_per_year: float
    description: str


def annualisation(
    timestamps: np.ndarray, bar_ns: int, calendar: str, override: float | None = None
) -> Annualisation:
    """Bars per year for `calendar`, so 24/7 and exchange-hours data annualise honestly.

    'continuous' (24/7) is YEAR_NS / bar_ns. 'sessions' (exchange hours) counts the bars actually
    present per year: len(timestamps) / span, span = (last open + bar_ns - first open) / YEAR_NS;
    it needs a span of many weeks to include nights, weekends and holidays. `override` (from
    evaluation.periods_per_year) wins over both. timestamps are int64 UTC ns bar open times.
    """
    if bar_ns <= 0:
        raise ValueError(f"bar_ns must be positive, got {bar_ns}")
    if calendar not in CALENDARS:
        raise ValueError(f"calendar must be one of {', '.join(CALENDARS)}, got {calendar!r}")
    if override is not None:
        if not math.isfinite(override) or override <= 0:
            raise ValueError(
                f"evaluation.periods_per_year must be a positive number, got {override}"
            )
        return Annualisation(
            float(override), f"{_count(override)} bars/year: set by evaluation.periods_per_year"
        )
    bars = format_duration(bar_ns)
    if calendar == "continuous":
        ppy = YEAR_NS / bar_ns
        return Annualisation(ppy, f"{_count(ppy)} bars/year: {bars} bars, 24/7 calendar")
    ppy = measured_bars_per_year(np.asarray(timestamps, dtype=np.int64), bar_ns)
    measured = f"{round(ppy):,}"  # an estimate: decimals would claim precision it lacks
    return Annualisation(
        ppy, f"{measured} bars/year: {bars} bars, exchange sessions (measured from the data)"
    )


def _count(value: float) -> str:
    """8766.0 -> '8,766', 365.25 -> '365.25': whole counts without a trailing '.00'."""
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _returns(returns: ArrayLike, name: str = "returns") -> np.ndarray:
    """A 1-D float array, refusing empty or non-finite input so no metric silently turns nan."""
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {r.shape}")
    if r.size == 0:
        raise ValueError(f"{name} is empty: no bars to evaluate")
    if not np.all(np.isfinite(r)):
        bad = int(np.flatnonzero(~np.isfinite(r))[0])
        raise ValueError(f"{name} has a non-finite value ({r[bad]}) at bar {bad}")
    return r


def total_return(returns: ArrayLike) -> float:
    """prod(1 + r) - 1: the equity multiple over the whole series, minus the stake."""
    r = _returns(returns)
    return float(np.prod(1.0 + r) - 1.0)


def cagr(returns: ArrayLike, periods_per_year: float) -> float:
    """(1 + total)^(ppy / n) - 1; -1.0 once equity reaches <= 0, since a wiped account stays so."""
    r = _returns(returns)
    if np.any(np.cumprod(1.0 + r) <= 0.0):
        return -1.0
    log_growth = float(np.sum(np.log1p(r))) * periods_per_year / r.size
    with np.errstate(over="ignore"):  # absurd growth over few bars: inf, not an exception
        return float(np.expm1(log_growth))


def annual_volatility(returns: ArrayLike, periods_per_year: float) -> float:
    """std(ddof=1) · sqrt(ppy); nan for one bar."""
    r = _returns(returns)
    if r.size < 2:
        return math.nan
    return float(np.std(r, ddof=1) * math.sqrt(periods_per_year))


def per_period_sharpe(returns: ArrayLike) -> float:
    """mean / std(ddof=1) per bar, not annualised: the quantity PSR and DSR are defined on.

    0.0 for a flat series (all returns equal): it has no risk, so no risk-adjusted edge either,
    and the ratio would otherwise be a division by zero or by rounding noise. nan for one bar.
    """
    r = _returns(returns)
    if r.size < 2:
        return math.nan
    if r.max() == r.min():
        return 0.0
    return float(np.mean(r) / np.std(r, ddof=1))


def sharpe(returns: ArrayLike, periods_per_year: float) -> float:
    """Annualised Sharpe, risk-free 0: per-bar mean / std(ddof=1) · sqrt(ppy); 0.0 when flat."""
    return per_period_sharpe(returns) * math.sqrt(periods_per_year)


def sortino(returns: ArrayLike, periods_per_year: float) -> float:
    """mean / downside deviation · sqrt(ppy), target 0; nan for one bar.

    Downside deviation is sqrt(mean(min(r, 0)²)) over ALL bars, so rare losses count as rare.
    Without any loss the ratio is inf when the mean is positive (gain with no downside) and 0.0
    otherwise (nothing gained).
    """
    r = _returns(returns)
    if r.size < 2:
        return math.nan
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    mean = float(np.mean(r))
    if downside == 0.0:
        return math.inf if mean > 0.0 else 0.0
    return mean / downside * math.sqrt(periods_per_year)


def max_drawdown(returns: ArrayLike) -> float:
    """Largest fall from a running peak, as a positive fraction; equity is 1 before bar 0."""
    r = _returns(returns)
    equity = np.concatenate(([1.0], np.cumprod(1.0 + r)))
    peak = np.maximum.accumulate(equity)
    return float(np.max(1.0 - equity / peak))


def calmar(returns: ArrayLike, periods_per_year: float) -> float:
    """CAGR / max drawdown. With no drawdown: inf if CAGR > 0 (gain at no cost), else 0.0."""
    growth = cagr(returns, periods_per_year)
    drawdown = max_drawdown(returns)
    if drawdown == 0.0:
        return math.inf if growth > 0.0 else 0.0
    return growth / drawdown


def hit_rate(returns: ArrayLike) -> float:
    """Winning share of the bars that moved (r != 0); flat bars are no bet. nan if none moved."""
    r = _returns(returns)
    moved = r[r != 0.0]
    if moved.size == 0:
        return math.nan
    return float(np.mean(moved > 0.0))


def probabilistic_sharpe(returns: ArrayLike, benchmark_sr: float = 0.0) -> float:
    """P(true per-bar Sharpe > benchmark_sr) from the sample Sharpe, skew and kurtosis (PSR).

    Skew and kurtosis are the population (biased) moments, kurtosis not excess. A flat series has
    Sharpe 0, where the moments only multiply 0, so it is scored as normal. nan for one bar.
    """
    r = _returns(returns)
    if r.size < 2:
        return math.nan
    skew, kurt = _moments(r)
    return psr_from_moments(per_period_sharpe(r), r.size, skew, kurt, benchmark_sr)


def return_moments(returns: ArrayLike) -> tuple[float, float]:
    """Skewness and (non-excess) kurtosis of a return series, as the PSR needs them."""
    return _moments(_returns(returns))


def _moments(r: np.ndarray) -> tuple[float, float]:
    """Population skewness and (non-excess) kurtosis; (0, 3) for a flat series."""
    deviation = r - np.mean(r)
    m2 = float(np.mean(deviation**2))
    if r.max() == r.min() or m2 == 0.0:
        return 0.0, 3.0
    skew = float(np.mean(deviation**3)) / m2**1.5
    kurt = float(np.mean(deviation**4)) / m2**2
    return skew, kurt


def psr_from_moments(
    sr: float, n: int, skew: float, kurtosis: float, benchmark_sr: float = 0.0
) -> float:
    """PSR = Phi((SR - SR*) · sqrt(n - 1) / sqrt(1 - skew·SR + (kurt - 1)/4 · SR²)).

    SR is per bar (not annualised), kurtosis is not excess (normal = 3). Any distribution has
    kurt >= 1 + skew², which keeps the root real; other moments raise ValueError. Where the root
    is 0 the estimate has no spread and PSR is 1, 0.5 or 0 as SR is above, at or below SR*.
    """
    named = {"sr": sr, "skew": skew, "kurtosis": kurtosis, "benchmark_sr": benchmark_sr}
    for name, value in named.items():
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
    if n < 2:
        return math.nan
    if kurtosis < (1.0 + skew**2) * (1.0 - 1e-9):
        raise ValueError(f"kurtosis {kurtosis} < 1 + skew² = {1.0 + skew**2}: no such distribution")
    variance = max(1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr**2, 0.0)
    if variance == 0.0:
        return 1.0 if sr > benchmark_sr else 0.5 if sr == benchmark_sr else 0.0
    return _NORMAL.cdf((sr - benchmark_sr) * math.sqrt(n - 1) / math.sqrt(variance))


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """E[max per-bar Sharpe] of n_trials skill-less trials (Bailey & López de Prado 2014).

    sqrt(V) · ((1 - γ) · Phi⁻¹(1 - 1/N) + γ · Phi⁻¹(1 - 1/(N·e))), γ Euler–Mascheroni, V the
    variance of the trials' Sharpes. A single trial has no selection to correct for: 0.0.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if not math.isfinite(variance) or variance < 0.0:
        raise ValueError(f"trial Sharpe variance must be finite and >= 0, got {variance}")
    if n_trials == 1:
        return 0.0
    quantiles = (1.0 - EULER_GAMMA) * _NORMAL.inv_cdf(1.0 - 1.0 / n_trials) + EULER_GAMMA * (
        _NORMAL.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    )
    return math.sqrt(variance) * quantiles


def deflated_sharpe(returns: ArrayLike, n_trials: int, trial_sharpe_variance: float) -> float:
    """PSR against the Sharpe the best of n_trials would show by luck alone (DSR).

    trial_sharpe_variance is the variance of the per-bar (non-annualised) Sharpes of all trials.
    """
    benchmark = expected_max_sharpe(n_trials, trial_sharpe_variance)
    return probabilistic_sharpe(returns, benchmark)


def summarise(
    returns: ArrayLike,
    periods_per_year: float,
    *,
    turnover: ArrayLike | None = None,
    cost: ArrayLike | None = None,
    trades: ArrayLike | None = None,
    exposure: ArrayLike | None = None,
    n_trials: int = 1,
    trial_sharpe_variance: float = 0.0,
) -> dict[str, float]:
    """Every headline metric as plain floats (JSON-ready; nan possible), for reports and logs.

    The optional per-bar arrays must align with returns: turnover (traded notional / equity) and
    cost (cost / equity) are annualised as mean · ppy, trades is summed, exposure (gross) averaged.
    """
    r = _returns(returns)
    ppy = periods_per_year
    out = {
        "total_return": total_return(r),
        "cagr": cagr(r, ppy),
        "volatility": annual_volatility(r, ppy),
        "sharpe": sharpe(r, ppy),
        "sortino": sortino(r, ppy),
        "max_drawdown": max_drawdown(r),
        "calmar": calmar(r, ppy),
        "hit_rate": hit_rate(r),
        "psr": probabilistic_sharpe(r),
        "dsr": deflated_sharpe(r, n_trials, trial_sharpe_variance),
        "bars": float(r.size),
    }
    if turnover is not None:
        out["turnover"] = float(np.mean(_aligned(turnover, "turnover", r.size)) * ppy)
    if cost is not None:
        out["cost_drag"] = float(np.mean(_aligned(cost, "cost", r.size)) * ppy)
    if trades is not None:
        out["trades"] = float(np.sum(_aligned(trades, "trades", r.size)))
    if exposure is not None:
        out["exposure"] = float(np.mean(_aligned(exposure, "exposure", r.size)))
    return {key: float(value) for key, value in out.items()}


def _aligned(values: ArrayLike, name: str, size: int) -> np.ndarray:
    """A per-bar series checked to have one finite value per return."""
    array = _returns(values, name)
    if array.size != size:
        raise ValueError(f"{name} has {array.size} bars but returns has {size}")
    return array
