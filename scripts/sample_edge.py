"""How big the sample's planted edge is: a simple rule's Sharpe on the generated sample, before and
after the default costs, with and without the drift (README's "Synthetic data" numbers).

    .venv/bin/python scripts/sample_edge.py [--signal 0.15] [--years 7]

The rule holds, per asset and with equal weights, the sign of the trailing N-bar return, decided
at a bar's close and held over the next bar (the execution contract), paying the default costs
on every change of position.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import load_config
from core.data.synthetic import bars_for_years, generate
from core.units import HOUR_NS

LOOKBACKS = (24, 96, 240)  # 1, 4 and 10 days of hourly bars


def annual_sharpe(returns: np.ndarray, periods: float) -> float:
    return float(returns.mean() / returns.std() * np.sqrt(periods))


def main() -> int:
    defaults = load_config()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signal", type=float, default=defaults.data.synthetic_signal)
    parser.add_argument("--years", type=float, default=defaults.data.synthetic_years)
    args = parser.parse_args()
    env = defaults.env
    cost_rate = (env.fee_bps + env.half_spread_bps + env.slippage_bps) * 1e-4
    periods = 365.25 * 24
    for signal in (0.0, args.signal):
        frames = generate(
            defaults.data.synthetic_assets,
            bars_for_years(args.years, HOUR_NS),
            HOUR_NS,
            signal,
            defaults.data.seed,
        )
        closes = np.stack([frame["close"].to_numpy() for frame in frames.values()])
        moves = np.diff(np.log(closes), axis=1)
        held = np.exp(moves).mean(axis=0) - 1
        print(f"signal {signal:g}: buy-and-hold Sharpe {annual_sharpe(held, periods):.2f}")
        cumulative = np.cumsum(moves, axis=1)
        for lookback in LOOKBACKS:
            trailing = np.zeros_like(moves)
            trailing[:, lookback:] = cumulative[:, lookback:] - cumulative[:, :-lookback]
            weights = np.sign(trailing) / len(frames)
            gross = (weights[:, :-1] * (np.exp(moves[:, 1:]) - 1)).sum(axis=0)
            turnover = np.abs(np.diff(weights, axis=1, prepend=0)).sum(axis=0)[:-1]
            net = gross - turnover * cost_rate
            print(
                f"  trailing {lookback:>3} bars: Sharpe {annual_sharpe(gross, periods):5.2f} "
                f"before costs, {annual_sharpe(net, periods):5.2f} after; turnover "
                f"{turnover.mean() * periods:,.0f} a year, cost drag "
                f"{turnover.mean() * periods * cost_rate:.1%} a year"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
