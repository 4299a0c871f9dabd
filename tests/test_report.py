"""What the report says about costs: a strategy whose costs outweigh its gross return is named."""

from __future__ import annotations

from training.post.report import cost_lines
from training.post.results import cost_dominated


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
