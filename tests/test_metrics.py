"""Metrics against hand-worked answers, the published DSR example, and invariants they must keep."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.evaluation.metrics import (
    YEAR_NS,
    annual_volatility,
    annualisation,
    cagr,
    calmar,
    deflated_sharpe,
    expected_max_sharpe,
    hit_rate,
    max_drawdown,
    per_period_sharpe,
    probabilistic_sharpe,
    psr_from_moments,
    sharpe,
    sortino,
    summarise,
    total_return,
)

HOUR_NS = 3_600 * 1_000_000_000
DAY_NS = 24 * HOUR_NS

# The hand series used throughout: r = [0.1, -0.05, 0.02], n = 3.
#   sum = 0.07, mean = 0.07/3 = 0.023333...
#   sum of squared deviations = Σr² - n·mean² = 0.0129 - 0.0049/3 = 0.0338/3
#   var (ddof 1) = 0.0338/3 / 2 = 0.0169/3, so std = 0.13/√3 = 0.0750555...
#   per-bar Sharpe = (0.07/3) / (0.13/√3) = 0.07/(0.13·√3) = 0.3108809...
SERIES = [0.1, -0.05, 0.02]
SERIES_SR = 0.07 / (0.13 * math.sqrt(3))


def phi(x: float) -> float:
    """Standard normal CDF via erf, independent of the module's NormalDist."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_total_return_compounds() -> None:
    # 1.1 · 0.95 = 1.045; 1.045 · 1.02 = 1.0659 -> +6.59 %
    assert total_return(SERIES) == pytest.approx(0.0659, abs=1e-12)
    assert total_return(np.array([0.1])) == pytest.approx(0.1)


def test_cagr_over_exactly_one_year_is_the_total_return() -> None:
    # 12 monthly bars of +1 % at 12 bars/year: one year, so CAGR = 1.01^12 - 1 = 0.1268250...
    assert cagr([0.01] * 12, 12) == pytest.approx(1.01**12 - 1, rel=1e-12)
    assert cagr([0.01] * 12, 12) == pytest.approx(0.12682503, abs=1e-8)
    # 24 such bars are two years at the same pace: the same CAGR
    assert cagr([0.01] * 24, 12) == pytest.approx(0.12682503, abs=1e-8)
    # one bar of +21 % that spans two years (0.5 bars/year): 1.21^(1/2) - 1 = 0.1
    assert cagr([0.21], 0.5) == pytest.approx(0.1, abs=1e-12)


def test_cagr_is_minus_one_once_equity_is_wiped_out() -> None:
    # equity 1.5, then 0: later gains cannot revive a zero account
    assert cagr([0.5, -1.0, 0.5], 252) == -1.0


def test_volatility_sharpe_and_sortino_on_the_hand_series() -> None:
    ppy = 4.0  # sqrt(4) = 2 keeps the annualisation visible
    # vol = std · 2 = 0.26/√3 = 0.1501111
    assert annual_volatility(SERIES, ppy) == pytest.approx(0.26 / math.sqrt(3), rel=1e-12)
    assert annual_volatility(SERIES, ppy) == pytest.approx(0.1501111, abs=1e-7)
    # per-bar Sharpe 0.3108809 (derived above); annualised ·2 = 0.6217618
    assert per_period_sharpe(SERIES) == pytest.approx(0.3108809, abs=1e-7)
    assert sharpe(SERIES, ppy) == pytest.approx(0.6217618, abs=1e-7)
    # downside deviation over ALL 3 bars: sqrt((0 + 0.05² + 0)/3) = 0.05/√3
    # sortino = (0.07/3)/(0.05/√3) · 2 = 1.4/√3 · 2 = 1.6165808
    assert sortino(SERIES, ppy) == pytest.approx(2.8 / math.sqrt(3), rel=1e-12)
    assert sortino(SERIES, ppy) == pytest.approx(1.6165808, abs=1e-7)


def test_max_drawdown_hand_series() -> None:
    # equity 1 -> 1.1 -> 1.045 -> 1.0659; peak 1.1, trough 1.045: 1 - 1.045/1.1 = 0.05
    assert max_drawdown(SERIES) == pytest.approx(0.05, abs=1e-12)


def test_max_drawdown_known_peak_and_trough() -> None:
    # equity 1 -> 1.5 (peak) -> 1.2 -> 0.9 (trough) -> 0.99 -> 1.584 (new high, no new drawdown)
    # worst fall: 1 - 0.9/1.5 = 0.4
    assert max_drawdown([0.5, -0.2, -0.25, 0.1, 0.6]) == pytest.approx(0.4, abs=1e-12)


def test_max_drawdown_counts_a_loss_on_the_first_bar() -> None:
    # equity starts at 1 before the first return, so a first-bar loss of 10 % is a 10 % drawdown
    assert max_drawdown([-0.1, 0.2]) == pytest.approx(0.1, abs=1e-12)
    assert max_drawdown([0.01, 0.02]) == 0.0


def test_calmar_hand_series_and_zero_drawdown() -> None:
    # 3 bars at 3 bars/year is one year: CAGR = total = 0.0659; drawdown 0.05 -> 1.318
    assert calmar(SERIES, 3) == pytest.approx(0.0659 / 0.05, rel=1e-12)
    assert calmar(SERIES, 3) == pytest.approx(1.318, abs=1e-9)
    assert calmar([0.01, 0.02], 252) == math.inf  # gain without any drawdown
    assert calmar([0.0, 0.0], 252) == 0.0  # nothing gained, nothing lost


def test_hit_rate_ignores_flat_bars() -> None:
    assert hit_rate(SERIES) == pytest.approx(2 / 3)  # 0.1 and 0.02 win, -0.05 loses
    # two flat bars are no bet: wins 0.01, 0.03 of the three bars that moved
    assert hit_rate([0.0, 0.01, -0.02, 0.0, 0.03]) == pytest.approx(2 / 3)
    assert math.isnan(hit_rate([0.0, 0.0]))


def test_flat_series_has_no_risk_adjusted_edge() -> None:
    flat = [0.01] * 5
    assert per_period_sharpe(flat) == 0.0
    assert sharpe(flat, 252) == 0.0
    assert sortino(flat, 252) == math.inf  # positive mean, no downside at all
    assert sortino([0.0, 0.0], 252) == 0.0
    # PSR of a flat series: SR = 0 against benchmark 0 -> Phi(0) = 0.5
    assert probabilistic_sharpe(flat) == pytest.approx(0.5)


def test_one_bar_gives_nan_for_spread_statistics() -> None:
    one = [0.1]
    for value in (
        annual_volatility(one, 252),
        per_period_sharpe(one),
        sharpe(one, 252),
        sortino(one, 252),
        probabilistic_sharpe(one),
        deflated_sharpe(one, 10, 0.1),
    ):
        assert math.isnan(value)


@pytest.mark.parametrize(
    ("bad", "message"),
    [([], "empty"), ([0.1, math.nan], "non-finite"), ([math.inf], "non-finite")],
)
def test_invalid_returns_are_refused(bad: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        total_return(bad)
    with pytest.raises(ValueError, match=message):
        summarise(bad, 252)


def test_two_dimensional_returns_are_refused() -> None:
    with pytest.raises(ValueError, match="one-dimensional"):
        sharpe(np.zeros((2, 2)), 252)


def test_annualisation_continuous_hourly_and_daily() -> None:
    # YEAR_NS = 365.25 days; 365.25 · 24 = 8766 hourly bars
    hourly = annualisation(np.array([], dtype=np.int64), HOUR_NS, "continuous")
    assert hourly.periods_per_year == 8766.0
    assert hourly.description == "8,766 bars/year: 1h bars, 24/7 calendar"
    daily = annualisation(np.array([], dtype=np.int64), DAY_NS, "continuous")
    assert daily.periods_per_year == 365.25
    assert daily.description == "365.25 bars/year: 1d bars, 24/7 calendar"


def test_annualisation_sessions_measures_a_gappy_timeline() -> None:
    # daily bars on days 0-4 (Mon-Fri), weekend gap, days 7, 8, 10, 11 (day 9 a holiday): 9 bars
    # span = last open (day 11) + 1 bar - first open (day 0) = 12 days = 12/365.25 years
    # bars per year = 9 / (12/365.25) = 9 · 365.25 / 12 = 273.9375
    days = np.array([0, 1, 2, 3, 4, 7, 8, 10, 11], dtype=np.int64)
    result = annualisation(1_700_000_000 * 10**9 + days * DAY_NS, DAY_NS, "sessions")
    assert result.periods_per_year == pytest.approx(273.9375, rel=1e-12)
    assert (
        result.description == "274 bars/year: 1d bars, exchange sessions (measured from the data)"
    )


def test_annualisation_override_wins() -> None:
    result = annualisation(np.arange(3) * HOUR_NS, HOUR_NS, "sessions", override=252)
    assert result.periods_per_year == 252.0
    assert result.description == "252 bars/year: set by evaluation.periods_per_year"


def test_annualisation_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="calendar"):
        annualisation(np.arange(3), HOUR_NS, "weekdays")
    with pytest.raises(ValueError, match="increasing"):
        annualisation(np.array([2, 1]) * HOUR_NS, HOUR_NS, "sessions")
    with pytest.raises(ValueError, match="non-empty"):
        annualisation(np.array([], dtype=np.int64), HOUR_NS, "sessions")
    with pytest.raises(ValueError, match="periods_per_year"):
        annualisation(np.arange(3), HOUR_NS, "continuous", override=0.0)
    assert YEAR_NS == 31_557_600_000_000_000  # 365.25 · 86,400 · 1e9


def test_dsr_paper_worked_example() -> None:
    # Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", numerical example:
    # N = 100 trials, variance of the annualised trial SRs 1/2 -> per-day variance 0.5/250.
    # E[max SR] = sqrt(0.002) · ((1-γ)·Phi⁻¹(0.99) + γ·Phi⁻¹(1 - 1/(100e)))
    #           = 0.044721 · (0.422784·2.326348 + 0.577216·2.680210) ≈ 0.1132 per day.
    variance = 0.5 / 250
    benchmark = expected_max_sharpe(100, variance)
    assert benchmark == pytest.approx(0.1132, abs=1e-4)
    # Selected strategy: annualised SR 2.5 -> 2.5/√250 = 0.158114 per day, T = 1250 days,
    # skew -3, kurtosis 10: z = (0.158114 - 0.113172)·√1249 / √(1 + 3·0.158114 + 9/4·0.025)
    #   = 0.044942·35.341 / 1.2372 ≈ 1.2838 -> DSR = Phi(1.2838) ≈ 0.9004
    dsr = psr_from_moments(2.5 / math.sqrt(250), 1250, -3.0, 10.0, benchmark)
    assert dsr == pytest.approx(0.9004, abs=1e-3)


def test_psr_normal_case_matches_the_closed_form() -> None:
    # skew 0, kurtosis 3: the root is sqrt(1 + SR²/2). SR = 0.1, n = 101:
    # z = 0.1 · √100 / √1.005 = 0.997509, Phi(z) = 0.84074
    expected = phi(0.1 * math.sqrt(100) / math.sqrt(1 + 0.1**2 / 2))
    assert psr_from_moments(0.1, 101, 0.0, 3.0) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.84074, abs=1e-5)


def test_psr_is_one_half_at_the_benchmark() -> None:
    assert psr_from_moments(0.2, 50, -1.0, 6.0, benchmark_sr=0.2) == pytest.approx(0.5)


def test_psr_refuses_impossible_moments() -> None:
    with pytest.raises(ValueError, match="kurtosis"):
        psr_from_moments(0.1, 100, 1.0, 1.5)  # any distribution has kurt >= 1 + skew² = 2


def test_probabilistic_sharpe_uses_population_moments() -> None:
    # deviations of SERIES from its mean, in units of 1/300: [23, -22, -1]
    # mean k² = 1014/3 = 338, mean k³ = (12167 - 10648 - 1)/3 = 506,
    # mean k⁴ = (279841 + 234256 + 1)/3 = 171366
    # skew = 506 / 338^1.5 = 0.081428, kurtosis = 171366 / 338² = 1.5 exactly
    # z = 0.310881·√2 / √(1 - 0.081428·0.310881 + 0.5/4·0.310881²) = 0.44259 -> Phi = 0.67097
    expected = psr_from_moments(SERIES_SR, 3, 506 / 338**1.5, 1.5)
    assert probabilistic_sharpe(SERIES) == pytest.approx(expected, rel=1e-9)
    assert probabilistic_sharpe(SERIES) == pytest.approx(0.67097, abs=1e-5)


def test_expected_max_sharpe_edges() -> None:
    assert expected_max_sharpe(1, 0.3) == 0.0  # one trial, nothing selected
    assert expected_max_sharpe(50, 0.0) == 0.0  # trials that all agree
    with pytest.raises(ValueError, match="n_trials"):
        expected_max_sharpe(0, 0.1)
    with pytest.raises(ValueError, match="variance"):
        expected_max_sharpe(10, -0.1)


def test_summarise_keys_values_and_json() -> None:
    result = summarise(
        SERIES,
        3,
        turnover=[0.5, 1.0, 0.0],  # mean 0.5 · 3 bars/year = 1.5 per year
        cost=[0.001, 0.002, 0.0],  # mean 0.001 · 3 = 0.003 per year
        trades=[1, 2, 0],  # 3 in total
        exposure=[1.0, 0.5, 0.0],  # mean 0.5
        n_trials=10,
        trial_sharpe_variance=0.01,
    )
    assert list(result) == [
        *("total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown", "calmar"),
        *("hit_rate", "psr", "dsr", "bars", "turnover", "cost_drag", "trades", "exposure"),
    ]
    assert all(type(value) is float for value in result.values())
    assert result["total_return"] == pytest.approx(0.0659)
    assert result["cagr"] == pytest.approx(0.0659)  # 3 bars at 3 bars/year: one year
    assert result["max_drawdown"] == pytest.approx(0.05)
    assert result["bars"] == 3.0
    assert result["turnover"] == pytest.approx(1.5)
    assert result["cost_drag"] == pytest.approx(0.003)
    assert result["trades"] == 3.0
    assert result["exposure"] == pytest.approx(0.5)
    assert result["dsr"] < result["psr"]
    json.dumps(result)


def test_summarise_without_extras_and_misaligned_extras() -> None:
    assert "turnover" not in summarise(SERIES, 252)
    with pytest.raises(ValueError, match="turnover has 2 bars"):
        summarise(SERIES, 252, turnover=[0.1, 0.2])


grid_returns = st.lists(st.integers(-500, 500), min_size=3, max_size=80).map(
    lambda bps: np.array(bps, dtype=np.float64) / 10_000
)


@given(returns=grid_returns, scale=st.floats(1e-3, 1e3))
def test_sharpe_is_scale_invariant(returns: np.ndarray, scale: float) -> None:
    assert sharpe(returns * scale, 252) == pytest.approx(sharpe(returns, 252), rel=1e-9, abs=1e-12)


@given(
    returns=st.lists(
        st.floats(-1.0, 1.0, exclude_min=True, allow_subnormal=False), min_size=1, max_size=200
    )
)
def test_max_drawdown_is_a_fraction(returns: list[float]) -> None:
    assert 0.0 <= max_drawdown(returns) <= 1.0


@given(
    returns=grid_returns,
    n_trials=st.integers(2, 100_000),
    variance=st.floats(1e-8, 1.0),
)
def test_deflation_never_raises_psr(returns: np.ndarray, n_trials: int, variance: float) -> None:
    assert deflated_sharpe(returns, n_trials, variance) <= probabilistic_sharpe(returns)


@given(returns=grid_returns, variance=st.floats(0.0, 1.0))
def test_one_trial_dsr_is_psr(returns: np.ndarray, variance: float) -> None:
    assert deflated_sharpe(returns, 1, variance) == probabilistic_sharpe(returns)


@given(returns=grid_returns)
def test_cagr_over_one_year_of_bars_is_the_total_return(returns: np.ndarray) -> None:
    assert cagr(returns, returns.size) == pytest.approx(total_return(returns), rel=1e-9, abs=1e-12)
