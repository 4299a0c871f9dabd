"""Evaluation rollouts and baselines: same market model as the env, causal, as much turnover as
the agent; checkpoints are committed atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.bar_range import BarRange
from core.envs.make import make_env
from core.envs.market import ExecutionRules
from core.envs.settings import env_settings
from core.evaluation.baselines import (
    buy_and_hold,
    cash,
    ma_crossover,
    random_policy,
    redraw_turnover,
)
from core.evaluation.rollout import rollout
from core.features.store import FeatureStore
from tests.helpers.stores import built_store, restamp, small_config
from training.member.checkpoints import TrainingState, commit_state
from training.run.files import JobFiles

CONFIG = small_config("env.window=4")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    return built_store(tmp_path_factory.mktemp("eval"))


def rules_of(store: FeatureStore) -> ExecutionRules:
    return ExecutionRules.from_config(CONFIG.env, store.bar_ns, len(store.assets))


def test_rollout_matches_the_trading_env_step_by_step(store: FeatureStore) -> None:
    bars = BarRange(10, 200)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (len(bars) - 1, len(store.assets)))
    replay = {"replay": lambda obs, weights, t: actions[t - bars.start][None]}
    track = rollout(store, env_settings(CONFIG), bars, replay)["replay"]
    env = make_env(CONFIG, store, fold=bars, episode_bars=len(bars))
    env.reset(options={"start": bars.start})
    equity = [CONFIG.env.initial_equity]
    for action in actions:
        _, _, _, truncated, info = env.step(action)
        equity.append(info["equity"])
    assert truncated
    assert np.allclose(track.returns, np.diff(equity) / equity[:-1])
    assert track.bar[0] == bars.start + 1 and track.bar[-1] == bars.stop - 1
    assert len(track.returns) == len(bars) - 1


def test_cash_never_trades_and_buy_and_hold_buys_once(store: FeatureStore) -> None:
    n = len(store.assets)
    tracks = rollout(
        store,
        env_settings(CONFIG),
        BarRange(10, 300),
        {"cash": cash(n), "hold": buy_and_hold(n, rules_of(store))},
    )
    assert not tracks["cash"].returns.any() and not tracks["cash"].trades.any()
    hold = tracks["hold"]
    assert hold.trades[0] == n and hold.trades[1:].sum() <= n  # drift below min_trade is held
    assert hold.exposure.min() > 0.9


def test_ma_crossover_decides_from_closes_up_to_the_decision_bar(
    store: FeatureStore, tmp_path: Path
) -> None:
    import shutil

    shutil.copytree(store.path, tmp_path / "future")
    prices = np.load(tmp_path / "future" / "prices.npy")
    prices[:, 201:, :4] *= np.linspace(1, 3, prices.shape[1] - 201)[None, :, None]
    np.save(tmp_path / "future" / "prices.npy", prices)
    changed = restamp(tmp_path / "future")
    rules = rules_of(store)
    original, edited = ma_crossover(store, rules, 5, 20), ma_crossover(changed, rules, 5, 20)
    for t in range(20, 201):
        assert np.array_equal(original({}, np.zeros((1, 3)), t), edited({}, np.zeros((1, 3)), t))
    assert any(
        not np.array_equal(original({}, np.zeros((1, 3)), t), edited({}, np.zeros((1, 3)), t))
        for t in range(201, 400)
    )


def test_random_baseline_trades_about_as_much_as_asked(store: FeatureStore) -> None:
    rules = rules_of(store)
    per_redraw = redraw_turnover(3, rules, np.random.default_rng(1))
    wanted = 0.2 * per_redraw  # a redraw on one bar in five
    policy = random_policy(3, rules, wanted, seed=2)
    track = rollout(store, env_settings(CONFIG), BarRange(10, 418), {"random": policy})["random"]
    assert track.turnover.mean() == pytest.approx(wanted, rel=0.35)


def test_checkpoint_commit_keeps_only_the_files_the_state_names(tmp_path: Path) -> None:
    files = JobFiles(tmp_path)
    files.checkpoints.mkdir(parents=True)
    for name in ("last-000000000100.zip", "last-000000000200.zip", "best-000000000100.zip"):
        (files.checkpoints / name).write_bytes(b"zip")
    state = TrainingState(
        timesteps=200, last_checkpoint="last-000000000200.zip",
        best_checkpoint="best-000000000100.zip", best_score=1.5,
        evaluations=[{"timesteps": 100, "score": 1.5}],
    )  # fmt: skip
    commit_state(files, state)
    assert sorted(p.name for p in files.checkpoints.iterdir()) == [
        "best-000000000100.zip", "last-000000000200.zip", "state.json",
    ]  # fmt: skip
    assert TrainingState.load(files.state) == state
