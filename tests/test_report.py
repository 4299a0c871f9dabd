"""What the report says: a strategy whose costs outweigh its gross return is named; the agent is
compared with the strongest baseline, and a simple rule ahead of it is said first."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.config import load_config
from core.evaluation import metrics
from training.post.ensemble import vote
from training.post.report import alarm_lines, baseline_verdict, cost_lines
from training.post.results import (
    MEMBERS_ENSEMBLE,
    STRATEGIES,
    FoldResult,
    FoldTracks,
    best_baseline,
    collapse_alarms,
    constant_position_alarms,
    constant_positions,
    cost_dominated,
    fold_result,
    strongest_baseline,
)
from training.run.tracks import SERIES


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


def fold_with_members(*alone: tuple[float, float]) -> FoldResult:
    """A fold whose members traded (trades, exposure) alone on their test window."""
    members = [{"test": {"agent": {"trades": t, "exposure": e}}} for t, e in alone]
    return FoldResult(0, pd.DataFrame(), members, pd.DataFrame())


def test_an_ensemble_that_cancels_its_members_out_raises_the_alarm_with_the_fix() -> None:
    config = load_config(overrides=["ensemble.size=2"])
    flat = {"agent": {"trades": 0.0, "exposure": 0.0}}
    (alarm,) = collapse_alarms(flat, [fold_with_members((40, 0.6), (35, 0.5))], config, 4)
    assert alarm.startswith("the ensemble collapsed out of sample: 0 trades")
    assert "2 of 2 member test(s) traded alone" in alarm and "ensemble.aggregate=vote" in alarm
    (alarm,) = collapse_alarms(flat, [fold_with_members((0, 0.0), (0, 0.0))], config, 4)
    assert "its members never traded either" in alarm
    trading = {"agent": {"trades": 12.0, "exposure": 0.4}}
    assert collapse_alarms(trading, [fold_with_members((40, 0.6))], config, 4) == []
    fused = load_config(overrides=["ensemble.size=2", "ensemble.mode=fedavg"])
    both = flat | {MEMBERS_ENSEMBLE: {"trades": 0.0, "exposure": 0.0}}
    alarms = collapse_alarms(both, [fold_with_members((40, 0.6), (35, 0.5))], fused, 4)
    assert [a.split(" collapsed")[0] for a in alarms] == [
        "the fused model",
        "the members' ensemble",
    ]


@given(arrays(np.float64, (5, 3), elements=st.floats(-1, 1)))
def test_a_vote_takes_the_majority_direction_at_the_mean_size(actions: np.ndarray) -> None:
    voted = vote(actions)
    majority = np.sign(np.sign(actions).sum(axis=0))
    np.testing.assert_array_equal(np.sign(voted), majority * (np.abs(actions).mean(axis=0) > 0))
    np.testing.assert_allclose(np.abs(voted), np.abs(actions).mean(axis=0) * np.abs(majority))


def test_disagreeing_members_keep_a_position_under_a_vote() -> None:
    actions = np.array([[0.5], [0.4], [-0.6]])  # the mean, 0.1, falls inside a 0.2 band
    assert abs(np.mean(actions)) < 0.2 < abs(vote(actions)[0])


TEST_BARS = 120


def track(weights: np.ndarray) -> dict[str, np.ndarray]:
    """A tracks file's arrays whose agent decided `weights` [bars, assets] on every bar."""
    arrays = {"timestamp": np.arange(TEST_BARS, dtype=np.int64)}
    arrays |= {f"{name}.{series}": np.zeros(TEST_BARS) for name in STRATEGIES for series in SERIES}
    return arrays | {"agent.weights": weights}


def fold_of(index: int, ensemble: np.ndarray, *members: tuple[np.ndarray, float]) -> FoldResult:
    """A fold from its test tracks: the ensemble's weights and each member's (weights, trades)."""
    results = [
        {
            "member": m,
            "evaluations": [{"score": 1.0}],
            "test": {"agent": {"trades": trades, "exposure": np.abs(w).sum(axis=1).mean()}},
        }
        for m, (w, trades) in enumerate(members)
    ]
    tracks = FoldTracks(index, track(ensemble), {m: track(w) for m, (w, _) in enumerate(members)})
    return fold_result(tracks, results, list(range(len(members))), None)


LONG = np.tile([0.85, 0.0], (TEST_BARS, 1))  # +85 % long the first asset, whatever the market
MOVING = np.column_stack([0.5 * np.sin(np.arange(TEST_BARS) / 5.0), np.zeros(TEST_BARS)])
FLAT = np.zeros((TEST_BARS, 2))
ASSETS = ["BTC", "ETH"]


def test_members_stuck_on_one_position_are_named_with_the_measure_and_the_fix() -> None:
    config = load_config(overrides=["ensemble.size=3"])
    folds = [fold_of(i, MOVING, (LONG, 40), (MOVING, 90), (FLAT, 0)) for i in (0, 1)]
    trading = {"agent": {"trades": 50.0, "exposure": 0.3}}
    positions = constant_positions(trading, folds, config, ASSETS)
    assert [f["track"] for f in positions["flagged"]] == ["fold 0 member 0", "fold 1 member 0"]
    assert positions["members_judged"] == 4  # the flat member is the no-trade alarm's
    assert positions["flagged"][0]["mean"]["BTC"] == pytest.approx(0.85)
    (alarm,) = constant_position_alarms(positions, config)
    assert alarm.startswith("2 of 4 trading member test(s) hold a constant position")
    assert "fold 1 member 0 (+0.85 long BTC" in alarm
    assert "evaluation.constant_position_std 0.01" in alarm and "ppo.ent_coef" in alarm
    sde = load_config(overrides=["ensemble.size=3", "ppo.use_sde=true"])
    assert "ppo.use_sde=false" in constant_position_alarms(positions, sde)[0]


def test_an_ensemble_stuck_on_one_position_raises_the_alarm_in_the_report() -> None:
    config = load_config(overrides=["ensemble.size=2"])
    folds = [fold_of(i, LONG, (LONG, 40), (MOVING, 90)) for i in (0, 1)]
    trading = {"agent": {"trades": 2.0, "exposure": 0.85}}
    positions = constant_positions(trading, folds, config, ASSETS)
    assert [f["track"] for f in positions["flagged"]][-1] == "the ensemble"
    assert positions["flagged"][-1]["bars"] == 2 * TEST_BARS  # the stitched walk
    alarms = constant_position_alarms(positions, config)
    assert alarms[0].startswith("the ensemble holds a constant position out of sample: +0.85")
    (shown, _) = alarm_lines({"alarms": alarms})
    assert (
        shown.startswith("> **ALARM: the ensemble holds a constant position") and " fix: " in shown
    )
    # The same walk that never traded is the no-trade alarm's, not this one's.
    flat = {"agent": {"trades": 0.0, "exposure": 0.0}}
    assert "the ensemble" not in [
        f["track"] for f in constant_positions(flat, folds, config, ASSETS)["flagged"]
    ]
    # A fold whose ensemble moves breaks the stitched constant; runs without weights are not judged.
    mixed = [folds[0], fold_of(1, MOVING, (LONG, 40), (MOVING, 90))]
    assert (
        constant_positions(trading, mixed, config, ASSETS)["flagged"][-1]["track"] != "the ensemble"
    )
    old = FoldResult(0, pd.DataFrame(), folds[0].members, pd.DataFrame())
    assert constant_positions(trading, [old], config, ASSETS)["judged"] == 0
