"""--predict: the target weights a finished run's agent decides at the close of FOLDER's last bar,
from a stated portfolio (flat unless --holding says otherwise).

The decision is the one a test walk makes: the observation is the window of feature rows
ending at that bar plus the portfolio vector (core.envs.simulator.portfolio_vector), the action
goes through the same execution rules (core.envs.market.target_weights), and each model answers
with the code that walked it in the run (training.replay.agents). Only the window's rows are
read at decision time; the features themselves are computed over FOLDER from its first bar,
because the recursive indicators and the normalisation start there, as they did in the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.data.timestamps import format_utc
from core.envs.market import ExecutionRules, target_weights
from core.envs.simulator import portfolio_vector
from core.errors import UserError
from core.features.store import FeatureStore
from training.member.models import agent_policy, recurrent
from training.post.ensemble import ensemble_policy
from training.replay.agents import FoldAgents, finished_folds, load_fold_agents, run_rows
from training.replay.dataset import replay_store
from training.replay.evaluate import load_run_jobs
from training.run.folder import job_store

DEFAULT_BARS_HELD = 1  # a stated position without @BARS: as if opened at the last decision


@dataclass(frozen=True)
class Portfolio:
    """What the decision assumes is held at the close: weights, drawdown, bars each was held."""

    weights: np.ndarray  # [assets]
    drawdown: float
    bars_held: np.ndarray  # [assets] int

    def to_json(self, assets: list[str]) -> dict[str, Any]:
        return {
            "weights": dict(zip(assets, map(float, self.weights), strict=True)),
            "drawdown": self.drawdown,
            "bars_held": dict(zip(assets, map(int, self.bars_held), strict=True)),
        }


def parse_holding(items: list[str], drawdown: float, assets: list[str]) -> Portfolio:
    """`ASSET=WEIGHT[@BARS]` items (weights as fractions of equity, shorts negative)."""
    weights = np.zeros(len(assets))
    held = np.zeros(len(assets), np.int64)
    for item in items:
        name, _, value = item.partition("=")
        weight, _, bars = value.partition("@")
        if name not in assets:
            raise UserError(
                f"--holding {item}: {name!r} is not an asset of the run\n"
                f"  fix: use ASSET=WEIGHT with ASSET one of {', '.join(assets)}"
            )
        try:
            w = float(weight)
            n = int(bars) if bars else (DEFAULT_BARS_HELD if w else 0)
        except ValueError:
            w, n = float("nan"), -1
        if not np.isfinite(w) or n < 0:
            raise UserError(
                f"--holding {item}: expected ASSET=WEIGHT or ASSET=WEIGHT@BARS, e.g. "
                f"{assets[0]}=0.25@12 (a quarter of equity, held for 12 bars)\n"
                "  fix: give the weight as a fraction of equity and the bars as a whole number"
            )
        weights[assets.index(name)], held[assets.index(name)] = w, n
    if not 0.0 <= drawdown < 1.0:
        raise UserError(
            f"--drawdown {drawdown:g} is not a fraction in [0, 1)\n"
            "  fix: pass how far the account is below its peak, e.g. --drawdown 0.05"
        )
    return Portfolio(weights, float(drawdown), held)


def predict(
    run_dir: Path,
    data: Path | None,
    holding: list[str],
    drawdown: float = 0.0,
    fold: int | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """The decision as one JSON-ready object."""
    run_dir = run_dir.resolve()
    store, config = replay_store(run_dir, data, show_progress)
    jobs = load_run_jobs(run_dir)
    done = finished_folds(run_dir, jobs)
    times = np.asarray(store.timestamps)
    t = len(times) - 1
    window = config.env.window
    if t < window - 1:
        raise UserError(
            f"the data has {len(times):,} bar(s) after the features' warm-up; a decision needs "
            f"{window} (env.window)\n  fix: give more history before the bar to decide at"
        )
    index, why = _fold_for(run_dir, sorted(done), int(times[t]), fold)
    # With regime columns, the fold's fitted HMM (after the test windows: the last fold's)
    # runs over FOLDER's bars.
    store = job_store(done[index][0], store)
    agents = load_fold_agents(run_dir, index, done[index], jobs, store)
    if any(recurrent(model) for model in agents.models):
        raise UserError(
            "--predict does not decide for recurrent policies: their memory of earlier bars is "
            "part of the decision\n  fix: use --evaluate (it walks the bars in order)"
        )
    assets = list(store.assets)
    portfolio = parse_holding(holding, drawdown, assets)
    obs = observation(store, t, window, portfolio)
    agent, ensemble, members = decide(agents, obs, t, store.bar_ns)
    spread = np.stack(list(members.values()))
    return {
        "run": str(run_dir),
        "timestamp": format_utc(int(times[t])),
        "decided_at": format_utc(int(times[t]) + store.bar_ns),
        "fold": index,
        "fold_choice": why,
        "agent": agents.kind,
        "weights": dict(zip(assets, map(float, agent), strict=True)),
        "members": {
            asset: {
                "min": float(spread[:, a].min()),
                "median": float(np.median(spread[:, a])),
                "max": float(spread[:, a].max()),
            }
            for a, asset in enumerate(assets)
        },
        "ensemble_weights": dict(zip(assets, map(float, ensemble), strict=True)),
        "member_weights": {
            str(m): dict(zip(assets, map(float, w), strict=True)) for m, w in members.items()
        },
        "portfolio": portfolio.to_json(assets),
    }


def _fold_for(run_dir: Path, folds: list[int], decided: int, chosen: int | None) -> tuple[int, str]:
    """The fold whose test walk decides at `decided`; after every test window, the last."""
    if chosen is not None:
        if chosen not in folds:
            raise UserError(
                f"--fold {chosen}: the run has no finished fold {chosen}\n"
                f"  fix: pass one of {', '.join(map(str, folds))}"
            )
        return chosen, "--fold"
    starts = {f: _first_decision(run_dir, f) for f in folds}
    before = [f for f in folds if starts[f] <= decided]
    if not before:
        first = folds[0]
        raise UserError(
            f"the data's last bar ({format_utc(decided)}) is before fold {first}'s first test "
            f"decision ({format_utc(starts[first])}): every model of the run trained or "
            "validated on it\n  fix: pass data that reaches the run's test windows (or later), "
            "or --fold K to ask fold K's models anyway"
        )
    index = before[-1]
    last = int(run_rows(run_dir, index)["timestamp"][-1])
    where = "inside its test window" if decided < last else "after the run's test windows"
    return index, f"fold {index}'s models: the bar is {where}"


def _first_decision(run_dir: Path, fold: int) -> int:
    rows = run_rows(run_dir, fold)
    if "decision_timestamp" in rows:
        return int(rows["decision_timestamp"][0])
    return int(rows["timestamp"][0]) - 1  # a run from before decisions were recorded


def observation(
    store: FeatureStore, t: int, window: int, portfolio: Portfolio
) -> dict[str, np.ndarray]:
    """The observation at the close of bar t, laid out as core.envs.simulator.observe lays it."""
    market = np.asarray(store.features)[:, t - window + 1 : t + 1, :]
    return {
        "market": np.ascontiguousarray(market).reshape(1, -1),
        "portfolio": portfolio_vector(
            portfolio.weights[None], np.array([portfolio.drawdown]), portfolio.bars_held[None],
            window,
        ),
    }  # fmt: skip


def decide(
    agents: FoldAgents, obs: dict[str, np.ndarray], t: int, bar_ns: int
) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """(the agent's target weights, the members' ensemble's, each member's), after the
    execution rules; the agent is the fused model in fedavg runs, else the ensemble."""
    n_assets = obs["portfolio"].shape[1] // 2
    held = obs["portfolio"][:, :n_assets].astype(np.float64)
    members = {
        job.member: _targets(
            _member_action(agents, k, obs, held, t), agents.configs[k], n_assets, bar_ns
        )
        for k, job in enumerate(agents.jobs)
    }
    if len(agents.models) == 1:  # the ensemble of one member is that member (training.post)
        ensemble = members[agents.jobs[0].member]
    else:
        action = ensemble_policy(agents.models, agents.config.ensemble.aggregate)(obs, held, t)
        ensemble = _targets(action, agents.config, n_assets, bar_ns)
    if agents.fused is None:
        return ensemble, ensemble, members
    action = agent_policy(agents.fused)(obs, held, t)
    return _targets(action, agents.config, n_assets, bar_ns), ensemble, members


def _member_action(
    agents: FoldAgents, k: int, obs: dict[str, np.ndarray], held: np.ndarray, t: int
) -> np.ndarray:
    """Member k's action the way its test walk computed it (stacked forward or predict)."""
    if not agents.population[k]:
        return agent_policy(agents.models[k])(obs, held, t)
    from core.evaluation.walks import joint_policy
    from core.policies.stacked import StackedPolicies

    space = agents.models[k].policy.action_space
    stacked = StackedPolicies([agents.models[k].policy])
    return joint_policy(stacked, [0], space.low, space.high)(obs, held, t, np.ones(1, bool))


def _targets(action: np.ndarray, config: Any, n_assets: int, bar_ns: int) -> np.ndarray:
    rules = ExecutionRules.from_config(config.env, bar_ns, n_assets)
    return target_weights(np.asarray(action, np.float64).reshape(1, n_assets), rules)[0]
