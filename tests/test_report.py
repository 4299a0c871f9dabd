"""What the report says: a strategy whose costs outweigh its gross return is named; the agent is
compared with the strongest baseline, and a simple rule ahead of it is said first."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.evaluation import metrics
from training.post.report import baseline_verdict, cost_lines
from training.post.results import best_baseline, cost_dominated, strongest_baseline


def strategy(gross: float, cost: float) -> dict[str, float]:
    return {"gross_return": gross, "cost_drag": cost}


def test_costs_larger_than_the_gross_return_are_flagged_either_sign() -> None:
    strategies = {
        "churner": strategy(gross=0.10, cost=0.80),  # an edge churned away
        "noise_trader": strategy(gross=-0.05, cost=0.40),  # pays to trade noise
        "holder": strategy(gross=-0.20, cost=0.0006),  # lost to the market, not to costs
        "earner": strategy(gross=0.30, cost=0.02),
        "cash": strategy(gross=0.0, cost=0.0),
    }
    assert cost_dominated(strategies) == ["churner", "noise_trader"]


def test_flagged_strategies_get_one_readable_line_each() -> None:
    summary = {
        "strategies": {"agent": strategy(gross=0.10, cost=0.80)},
        "cost_dominated": ["agent"],
    }
    (line,) = cost_lines(summary)
    assert line.startswith("agent: cost drag 80.0 %/y exceeds its gross return 10.0 %/y")


def stitched(agent: np.ndarray, rule: np.ndarray) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Test bars where the agent earns `agent` and the MA crossover `rule`; other baselines flat."""
    frame = pd.DataFrame({"agent.returns": agent, "ma_crossover.returns": rule})
    for name in ("cash", "buy_and_hold", "random"):
        frame[f"{name}.returns"] = 0.0
    strategies = {
        name: {"sharpe": metrics.sharpe(frame[f"{name}.returns"].to_numpy(), 8766)}
        for name in ("agent", "cash", "buy_and_hold", "random", "ma_crossover")
    }
    return frame, strategies


def test_a_simple_rule_ahead_of_the_agent_is_said_first() -> None:
    rng = np.random.default_rng(0)
    agent = rng.normal(2e-4, 1e-3, 5_000)
    frame, strategies = stitched(agent, agent + rng.normal(3e-4, 2e-4, 5_000))
    best = best_baseline(frame, strategies)
    assert best["name"] == "ma_crossover" and not best["agent_ahead"]
    assert best["excess_psr"] < 0.01  # behind by far more than noise
    same, _ = stitched(agent, agent + 3e-4)  # behind by the same amount on every bar
    assert best_baseline(same, strategies)["excess_psr"] == 0.0
    summary = {
        "best_baseline": best | {"folds_agent_ahead": 0},
        "strategies": strategies,
        "folds": 3,
    }
    line = baseline_verdict(summary)
    assert line.startswith("A simple rule beats the agent: ma_crossover") and "0 of 3" in line


def test_an_agent_ahead_of_every_baseline_gets_its_psr() -> None:
    rng = np.random.default_rng(1)
    rule = rng.normal(0.0, 1e-3, 5_000)
    frame, strategies = stitched(rule + 2e-4, rule)
    best = best_baseline(frame, strategies)
    assert best["agent_ahead"] and best["excess_psr"] > 0.99
    summary = {
        "best_baseline": best | {"folds_agent_ahead": 2},
        "strategies": strategies,
        "folds": 2,
    }
    assert baseline_verdict(summary).startswith("The agent beats the best baseline")
    assert (
        strongest_baseline(
            {n: {"sharpe": np.nan} for n in strategies} | {"random": {"sharpe": 0.1}}
        )
        == "random"
    )
