"""Out-of-sample judgement of one window: the agent and every baseline through one market model.

The random baseline trades as much as the agent did on the same window, so it needs the agent's
track first; the other baselines do not depend on the agent.
"""

from __future__ import annotations

import numpy as np

from core.bar_range import BarRange
from core.config import Config
from core.data.calendar import infer_calendar
from core.envs.market import ExecutionRules
from core.envs.settings import EnvSettings
from core.evaluation import metrics
from core.evaluation.baselines import buy_and_hold, cash, ma_crossover, random_policy
from core.evaluation.metrics import Annualisation
from core.evaluation.rollout import Policy, Track, rollout
from core.features.store import FeatureStore
from core.features.windows import window_bars

AGENT = "agent"


def annualisation_of(store: FeatureStore, config: Config) -> Annualisation:
    """Bars per year for the store's calendar: data.calendar, or (auto) the one the store's build
    inferred; the description says when the calendar was inferred."""
    wanted = config.evaluation.periods_per_year
    resolved = store.meta.get("resolved") or {}
    calendar = config.data.calendar
    if calendar == "auto":
        calendar = (
            resolved.get("calendar")
            or infer_calendar(np.asarray(store.timestamps), store.bar_ns)[0]
        )
    annual = metrics.annualisation(
        np.asarray(store.timestamps),
        store.bar_ns,
        calendar,
        None if wanted == "auto" else float(wanted),
    )
    inferred = any(item.get("key") == "data.calendar" for item in store.meta.get("inferred", []))
    if wanted != "auto" or not inferred or calendar != resolved.get("calendar"):
        return annual
    return Annualisation(
        annual.periods_per_year,
        f"{annual.description}; calendar inferred from the data (set data.calendar if wrong)",
    )


def evaluate_window(
    store: FeatureStore,
    settings: EnvSettings,
    bars: BarRange,
    agent: Policy,
    config: Config,
    seed: int,
) -> dict[str, Track]:
    """Tracks of the agent and the baselines (cash, buy_and_hold, random, ma_crossover)."""
    track = rollout(store, settings, bars, {AGENT: agent})[AGENT]
    return with_baselines(store, settings, bars, [track], config, [seed])[0]


def with_baselines(
    store: FeatureStore,
    settings: EnvSettings,
    bars: BarRange,
    agents: list[Track],
    config: Config,
    seeds: list[int],
) -> list[dict[str, Track]]:
    """Each agent's track with the baselines beside it. The baselines that do not depend on the
    agent walk once for all of them; agent k's random baseline trades as much as agent k did,
    drawn with seeds[k]."""
    n_assets = len(store.assets)
    rules = ExecutionRules.from_config(settings.env, store.bar_ns, n_assets)
    shared = {
        "cash": cash(n_assets),
        "buy_and_hold": buy_and_hold(n_assets, rules),
        "ma_crossover": ma_crossover(
            store,
            rules,
            window_bars("evaluation", "ma_fast_bars", config.evaluation.ma_fast_bars, store.meta),
            window_bars("evaluation", "ma_slow_bars", config.evaluation.ma_slow_bars, store.meta),
        ),
    }
    randoms = {}
    for k, (agent, seed) in enumerate(zip(agents, seeds, strict=True)):
        turnover = float(agent.turnover.mean()) if len(agent.turnover) else 0.0
        randoms[f"random.{k}"] = random_policy(n_assets, rules, turnover, seed)
    walked = rollout(store, settings, bars, shared | randoms)
    return [
        {
            AGENT: agent,
            "cash": walked["cash"],
            "buy_and_hold": walked["buy_and_hold"],
            "random": walked[f"random.{k}"],
            "ma_crossover": walked["ma_crossover"],
        }
        for k, agent in enumerate(agents)
    ]


def track_metrics(
    track: Track, annual: Annualisation, n_trials: int = 1, trial_variance: float = 0.0
) -> dict[str, float]:
    return metrics.summarise(
        track.returns,
        annual.periods_per_year,
        turnover=track.turnover,
        cost=track.cost,
        trades=track.trades,
        exposure=track.exposure,
        n_trials=n_trials,
        trial_sharpe_variance=trial_variance,
    )


def score(track: Track, annual: Annualisation, metric: str) -> float:
    """The validation metric that ranks checkpoints (higher is better; nan counts as worst)."""
    ppy = annual.periods_per_year
    value = {
        "sharpe": lambda: metrics.sharpe(track.returns, ppy),
        "sortino": lambda: metrics.sortino(track.returns, ppy),
        "calmar": lambda: metrics.calmar(track.returns, ppy),
        "total_return": lambda: metrics.total_return(track.returns),
    }[metric]()
    return -np.inf if np.isnan(value) else float(value)
