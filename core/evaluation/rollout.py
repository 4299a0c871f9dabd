"""Deterministic rollouts over a whole window: how agents and baselines are judged.

Every strategy trades the window as one episode through the same `Simulator` (so the same
market model, costs and fills as training): flat at the window's first decision bar, one step
per bar until its last bar. Strategies run side by side as the simulator's envs, so a window
is walked once whatever the number of strategies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from core.bar_range import BarRange
from core.envs.market import target_weights
from core.envs.settings import EnvSettings
from core.envs.simulator import Simulator
from core.features.store import FeatureStore

# A strategy's decision at the close of bar t: (its observation rows [1, ...], the weights it
# holds [1, assets], t) -> target weights [1, assets] in [-1, 1].
Policy = Callable[[dict[str, np.ndarray], np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class Track:
    """One strategy's bars over a window; every array is aligned with `timestamp`."""

    bar: np.ndarray  # index of the bar traded through
    # UTC ns open time of that bar: the row of the user's file whose move the return is (a
    # daily Friday's return is stamped Friday, not Saturday 00:00, the instant it closed)
    timestamp: np.ndarray
    returns: np.ndarray  # simple equity return over the bar (-1 at bankruptcy, then 0)
    turnover: np.ndarray  # traded notional / equity at the open
    cost: np.ndarray  # costs paid / equity at the start of the bar
    trades: np.ndarray  # receipts (executed position changes)
    exposure: np.ndarray  # gross weight held at the close
    rewards: np.ndarray  # the training reward the step would have paid
    # The decision of each step: made at the close of bar `decision_timestamp` (UTC ns open time
    # of the bar before `timestamp`'s), from the portfolio held then (`held` weights, `drawdown`,
    # `bars_held` per asset) to target `weights` [bars, assets] after the execution rules.
    decision_timestamp: np.ndarray
    weights: np.ndarray
    held: np.ndarray
    drawdown: np.ndarray
    bars_held: np.ndarray

    @property
    def equity(self) -> np.ndarray:
        """Growth of one unit of capital, one value per bar."""
        return np.cumprod(1.0 + self.returns)


# Every strategy's decision at once: (observation rows [K, ...], weights [K, assets], t, alive [K])
# -> target weights [K, assets]; rows of dead strategies are ignored.
JointPolicy = Callable[[dict[str, np.ndarray], np.ndarray, int, np.ndarray], np.ndarray]


def rollout(
    store: FeatureStore, settings: EnvSettings, bars: BarRange, policies: Mapping[str, Policy]
) -> dict[str, Track]:
    """Walk `bars` once with every policy as its own env; return each one's track."""
    names = list(policies)
    deciders = [policies[name] for name in names]

    def decide(
        obs: dict[str, np.ndarray], weights: np.ndarray, t: int, alive: np.ndarray
    ) -> np.ndarray:
        actions = np.zeros(weights.shape)
        for k, policy in enumerate(deciders):
            if alive[k]:
                rows = {key: value[k : k + 1] for key, value in obs.items()}
                actions[k] = np.asarray(policy(rows, weights[k : k + 1], t)).reshape(-1)
        return actions

    return dict(zip(names, walk(store, settings, bars, len(names), decide), strict=True))


def walk(
    store: FeatureStore, settings: EnvSettings, bars: BarRange, count: int, decide: JointPolicy
) -> list[Track]:
    """Walk `bars` once with `count` envs whose actions `decide` gives together (a group of
    members answers with one batched forward per bar); return each env's track."""
    whole = settings.env.model_copy(update={"episode_bars": len(bars)})
    sim = Simulator(store, EnvSettings(whole, settings.reward, settings.timeframes), bars, count)
    envs = np.arange(count)
    sim.reset(envs, np.full(count, bars.start))
    steps = len(bars) - 1
    columns = {
        key: np.zeros((steps, count))
        for key in ("returns", "turnover", "cost", "trades", "exposure", "rewards", "drawdown")
    }
    per_asset = {
        key: np.zeros((steps, count, sim.n_assets), dtype)
        for key, dtype in (("weights", np.float64), ("held", np.float64), ("bars_held", np.int64))
    }
    bar = np.zeros(steps, np.int64)
    timestamp = np.zeros(steps, np.int64)
    decided = np.zeros(steps, np.int64)
    alive = np.ones(count, bool)
    for i in range(steps):
        t = int(sim.t[0])
        decided[i] = sim.timestamps[t]
        per_asset["held"][i], per_asset["bars_held"][i] = sim.weights, sim.held
        columns["drawdown"][i] = sim.drawdown()
        actions = np.asarray(decide(sim.observe(), sim.weights, t, alive), dtype=np.float64)
        actions = np.where(alive[:, None], actions.reshape(count, sim.n_assets), 0.0)
        per_asset["weights"][i] = target_weights(actions, sim.execution)
        equity_before = sim.equity
        out = sim.step(actions)
        bar[i], timestamp[i] = out.bar[0], sim.timestamps[out.bar[0]]
        before = np.where(alive, equity_before, 1.0)  # the dead hold nothing: avoid 0 / 0
        columns["returns"][i] = np.where(alive, np.maximum(out.equity / before - 1.0, -1.0), 0.0)
        columns["turnover"][i] = np.where(alive, out.turnover, 0.0)
        columns["cost"][i] = np.where(alive, out.cost / before, 0.0)
        columns["trades"][i] = np.where(alive, out.raw_receipts.per_env(count, "count"), 0)
        columns["exposure"][i] = np.where(alive, np.abs(out.weights).sum(axis=1), 0.0)
        columns["rewards"][i] = np.where(alive, out.rewards, 0.0)
        alive &= ~out.terminated
    return [
        Track(
            bar,
            timestamp,
            decision_timestamp=decided,
            **{key: value[:, k] for key, value in (columns | per_asset).items()},
        )
        for k in range(count)
    ]
