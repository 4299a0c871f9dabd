"""TradingEnv and BatchTradingEnv: checkers, hand-computed steps, episode bounds, equivalence."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from hypothesis import given
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from core.envs.make import make_env, make_trading_vec_env
from core.envs.trading_env import TradingEnv
from core.errors import UserError
from core.features.store import FeatureStore
from tests.helpers.datasets import HOUR_NS
from tests.helpers.stores import built_store, handmade_store, poisoned_copy, small_config

DAY_NS = 24 * HOUR_NS
NO_COSTS = {"fee_bps": 0.0, "half_spread_bps": 0.0, "slippage_bps": 0.0}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    return built_store(tmp_path_factory.mktemp("env-store"))


def ramp(n_time: int = 12, n_assets: int = 1) -> np.ndarray:
    """Bar i opens at 100 + i and closes at 100.5 + i (every asset alike)."""
    opens = 100.0 + np.arange(n_time)
    closes = opens + 0.5
    bar = np.stack([opens, closes + 1, opens - 1, closes], axis=-1)
    return np.broadcast_to(bar, (n_assets, n_time, 4)).copy()


def env_on(prices: np.ndarray, folder: Path, **overrides: object) -> TradingEnv:
    settings = {"window": 2, "episode_bars": 5, "min_trade": 0.0, **overrides}
    return make_env(small_config(), handmade_store(folder, prices), **settings)


# --------------------------------------------------------------------------- checkers


def test_trading_env_passes_gymnasium_and_sb3_checkers(store: FeatureStore) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not having a spec.*")
        gymnasium_check_env(make_env(small_config(), store))
    sb3_check_env(make_env(small_config(), store), warn=True)


def test_batch_env_trains_a_ppo_policy(store: FeatureStore) -> None:
    from stable_baselines3 import PPO

    vec = make_trading_vec_env(8, "batch", small_config(), store, episode_bars=24)
    model = PPO("MultiInputPolicy", vec, n_steps=32, batch_size=64, n_epochs=1, seed=0)
    model.learn(total_timesteps=512)
    assert model.num_timesteps >= 512


# --------------------------------------------------------------------------- one step by hand


def test_first_step_matches_hand_computation(tmp_path: Path) -> None:
    env = env_on(ramp(), tmp_path, fee_bps=10.0, half_spread_bps=0.0, slippage_bps=0.0)
    obs, info = env.reset(options={"start": 1})
    # window 2 at bar 1: feature rows 0 and 1 (the handmade features are bar index / 12).
    np.testing.assert_allclose(obs["market"], np.repeat([0, 1 / 12], 3).astype(np.float32))
    np.testing.assert_array_equal(obs["portfolio"], [0.0, 0.0, 0.0])
    assert info["equity"] == 10_000.0

    obs, reward, terminated, truncated, info = env.step(np.array([1.0], np.float32))
    qty = 10_000.0 / 102.0  # all equity at bar 2's open
    cost = 10_000.0 * 10e-4
    equity = 10_000.0 - 10_000.0 - cost + qty * 102.5
    assert info["equity"] == pytest.approx(equity)
    assert info["cost"] == pytest.approx(cost)
    assert reward == pytest.approx(100 * math.log(equity / 10_000.0))
    assert info["timestamp"] == int(env.sim.timestamps[2]) + HOUR_NS
    (receipt,) = list(info["receipts"])
    assert receipt["asset"] == 0 and receipt["bar"] == 2 and receipt["reason"] == "rebalance"
    assert receipt["price"] == 102.0 and receipt["delta_qty"] == pytest.approx(qty)
    assert receipt["timestamp"] == int(env.sim.timestamps[2])
    np.testing.assert_allclose(info["weights"], [qty * 102.5 / equity])
    assert info["trade_counts"]["episode"] == 1
    assert not terminated and not truncated
    np.testing.assert_allclose(obs["portfolio"][0], qty * 102.5 / equity, rtol=1e-6)
    assert obs["portfolio"][2] == pytest.approx(1 / (1 + 2))  # held one bar, window 2


def test_bankruptcy_liquidates_and_ends_with_the_worst_reward(tmp_path: Path) -> None:
    prices = ramp()
    prices[0, 2] = [100.0, 310.0, 99.0, 300.0]  # the short's bar triples
    env = env_on(prices, tmp_path, fee_bps=1.0, half_spread_bps=0.0, slippage_bps=0.0)
    env.reset(options={"start": 1})
    _, reward, terminated, truncated, info = env.step(np.array([-1.0], np.float32))
    assert terminated and not truncated
    assert reward == -5.0
    assert info["reward_components"]["unclipped"] < -5.0
    assert [r["reason"] for r in info["receipts"]] == ["rebalance", "liquidation"]
    assert info["receipts"][1]["timestamp"] == int(env.sim.timestamps[2]) + HOUR_NS
    assert info["equity"] < 0
    np.testing.assert_array_equal(info["weights"], [0.0])
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([0.0], np.float32))


def test_penalties_are_in_return_units_scaled_like_the_log_return(tmp_path: Path) -> None:
    prices = ramp()
    prices[0, 3] = [102.0, 103.0, 90.0, 91.0]  # a loss on bar 3 opens a drawdown
    env = env_on(prices, tmp_path, **NO_COSTS, turnover_penalty=0.001, drawdown_penalty=0.5)
    env.reset(options={"start": 1})
    _, _, _, _, first = env.step(np.array([1.0], np.float32))
    assert first["reward_components"]["turnover"] == pytest.approx(-100 * 0.001 * 1.0)
    assert first["reward_components"]["drawdown"] == 0.0
    _, reward, _, _, second = env.step(np.array([1.0], np.float32))
    peak = first["equity"]
    drawdown = 1 - second["equity"] / peak
    parts = second["reward_components"]
    assert parts["drawdown"] == pytest.approx(-100 * 0.5 * drawdown)
    assert parts["log_return"] == pytest.approx(math.log(second["equity"] / first["equity"]))
    total = parts["pnl"] + parts["drawdown"] + parts["turnover"] + parts["trade_band"]
    assert parts["unclipped"] == pytest.approx(total)
    assert reward == pytest.approx(max(-5.0, min(5.0, total)))


def test_trade_band_penalises_trading_above_the_band(tmp_path: Path) -> None:
    env = env_on(
        ramp(n_assets=2),
        tmp_path,
        **NO_COSTS,
        trade_band={"1h": [0, 12]},
        trade_band_penalty=0.01,
        min_trade=0.05,
    )
    env.reset(options={"start": 1})
    _, _, _, _, info = env.step(np.array([0.5, 0.5], np.float32))
    # Two receipts in the trailing hour = 48 trades per day, 36 above the band's 12.
    assert info["trade_counts"]["1h"] == 2
    assert info["reward_components"]["trade_band"] == pytest.approx(-0.01 * 36)
    _, _, _, _, info = env.step(np.array([0.5, 0.5], np.float32))
    assert info["trade_counts"]["1h"] == 0  # weights drifted less than min_trade: no trade
    assert info["reward_components"]["trade_band"] == 0.0


def test_day_counter_restarts_at_utc_midnight(tmp_path: Path) -> None:
    start_ns = 20_000 * DAY_NS - 3 * HOUR_NS  # bar 0 opens at 21:00 UTC
    store = handmade_store(tmp_path, ramp(n_assets=1), start_ns=start_ns)
    env = make_env(small_config(), store, window=1, episode_bars=8, min_trade=0.0, **NO_COSTS)
    env.reset(options={"start": 0})
    days = []
    for weight in (0.2, 0.4, 0.6, 0.8):
        _, _, _, _, info = env.step(np.array([weight], np.float32))
        (receipt,) = list(info["receipts"])
        days.append((receipt["timestamp"] // DAY_NS, info["trade_counts"]["day"]))
    # Trades fill at the opens of 22:00, 23:00, 00:00 (a new UTC day) and 01:00.
    assert days == [(19_999, 1), (19_999, 2), (20_000, 1), (20_000, 2)]
    assert info["trade_counts"]["episode"] == 4


# --------------------------------------------------------------------------- episode bounds


def test_episode_is_truncated_after_episode_bars(tmp_path: Path) -> None:
    env = env_on(ramp(), tmp_path, episode_bars=3)
    env.reset(options={"start": 1})
    flags = [env.step(np.zeros(1, np.float32))[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]


def test_episode_is_truncated_at_the_end_of_the_range(tmp_path: Path) -> None:
    store = handmade_store(tmp_path, ramp())
    env = make_env(small_config(), store, fold=(1, 6), window=2, episode_bars=100)
    env.reset(options={"start": 3})
    steps = 0
    while True:
        steps += 1
        *_, truncated, info = env.step(np.zeros(1, np.float32))
        if truncated:
            break
    assert steps == 2  # decisions at bars 3 and 4; bar 5 is the range's last
    assert info["timestamp"] == int(store.timestamps[5]) + HOUR_NS


def test_reset_start_accepts_a_time_and_rejects_bars_outside_the_range(store: FeatureStore) -> None:
    env = make_env(small_config(), store, fold=(100, 200))
    stamp = np.datetime64(int(store.timestamps[150]), "ns")
    _, info = env.reset(options={"start": str(stamp)})
    assert info["start"] == 150
    with pytest.raises(ValueError, match="outside the env's range"):
        env.reset(options={"start": 199})
    with pytest.raises(ValueError, match="outside the env's range"):
        env.reset(options={"start": 99})


def test_ranges_without_a_full_window_or_outside_the_store_are_refused(store: FeatureStore) -> None:
    with pytest.raises(UserError, match="observation needs the 32 feature rows"):
        make_env(small_config(), store, fold=(10, 100))
    with pytest.raises(UserError, match="not inside the feature store"):
        make_env(small_config(), store, fold=(100, 10_000))


def test_env_never_reads_outside_its_range(store: FeatureStore, tmp_path: Path) -> None:
    start, stop, window = 100, 250, 32
    poisoned = poisoned_copy(store, tmp_path / "poisoned", start, stop, window)
    vec = make_trading_vec_env(
        4, "batch", small_config(), poisoned, fold=(start, stop), episode_bars=60
    )
    obs = vec.reset()
    actions = np.random.default_rng(0).uniform(-1, 1, (600, 4, 3)).astype(np.float32)
    reached_end = False
    for batch in actions:
        obs, rewards, dones, infos = vec.step(batch)
        assert np.isfinite(obs["market"]).all() and np.isfinite(obs["portfolio"]).all()
        assert np.isfinite(rewards).all()
        reached_end |= any(
            info["timestamp"] == int(store.timestamps[stop - 1]) + HOUR_NS for info in infos
        )
        for k in np.flatnonzero(dones):
            assert np.isfinite(infos[k]["terminal_observation"]["market"]).all()
    assert reached_end
    single = make_env(small_config(), poisoned, fold=(start, stop))
    for first in (start, stop - 2):
        obs, _ = single.reset(options={"start": first})
        done = False
        while not done:
            obs, reward, terminated, truncated, info = single.step(single.action_space.sample())
            assert np.isfinite(obs["market"]).all() and math.isfinite(reward)
            assert math.isfinite(info["equity"])
            done = terminated or truncated


def test_poisoned_store_is_noticed_one_bar_past_the_range(
    store: FeatureStore, tmp_path: Path
) -> None:
    """Control for the test above: the poison is where an off-by-one would read it."""
    poisoned = poisoned_copy(store, tmp_path / "poisoned", 100, 250, 32)
    env = make_env(small_config(), poisoned, fold=(100, 251))
    env.reset(options={"start": 249})
    obs, reward, *_ = env.step(np.full(3, 0.3, np.float32))
    assert not (np.isfinite(obs["market"]).all() and math.isfinite(reward))


# --------------------------------------------------------------------------- accounting property


@given(
    actions=st.lists(
        st.lists(st.floats(-1.5, 1.5), min_size=3, max_size=3), min_size=1, max_size=25
    ),
    long_only=st.booleans(),
    min_trade=st.sampled_from([0.0, 0.05]),
)
def test_infos_agree_with_the_books_after_every_step(
    store: FeatureStore, actions: list[list[float]], long_only: bool, min_trade: float
) -> None:
    env = make_env(
        small_config(),
        store,
        long_only=long_only,
        min_trade=min_trade,
        fee_bps=7.0,
        episode_bars=30,
    )
    env.reset(seed=3)
    receipts = 0
    for action in actions:
        _, reward, terminated, truncated, info = env.step(np.array(action, np.float32))
        book, close = env.sim.book, env.sim.close
        marked = book.cash[0] + float((book.qty[0] * close[0]).sum())
        assert info["equity"] == pytest.approx(marked, rel=1e-12, abs=1e-9)
        assert info["cost"] == pytest.approx(float(info["receipts"]["cost"].sum()), abs=1e-9)
        receipts += len(info["receipts"])
        assert info["trade_counts"]["episode"] == receipts
        assert abs(reward) <= 5.0
        if long_only:
            assert (info["weights"] >= 0).all()
        if terminated or truncated:
            break


# --------------------------------------------------------------------------- equivalence


def run_together(kinds: list[str], store: FeatureStore, steps: int = 70) -> None:
    """Same seeds and actions: every kind returns the same observations, rewards, dones, infos."""
    envs = {
        kind: make_trading_vec_env(3, kind, small_config(), store, seed=11, episode_bars=20)
        for kind in kinds
    }
    try:
        first = {kind: vec.reset() for kind, vec in envs.items()}
        for kind in kinds[1:]:
            for key in first[kinds[0]]:
                np.testing.assert_array_equal(first[kinds[0]][key], first[kind][key])
        actions = np.random.default_rng(2).uniform(-1, 1, (steps, 3, 3)).astype(np.float32)
        resets = 0
        for batch in actions:
            results = {kind: vec.step(batch) for kind, vec in envs.items()}
            obs, rewards, dones, infos = results[kinds[0]]
            resets += int(dones.sum())
            for kind in kinds[1:]:
                other_obs, other_rewards, other_dones, other_infos = results[kind]
                for key in obs:
                    np.testing.assert_array_equal(obs[key], other_obs[key])
                np.testing.assert_array_equal(rewards, np.asarray(other_rewards, np.float32))
                np.testing.assert_array_equal(dones, other_dones)
                for info, other in zip(infos, other_infos, strict=True):
                    assert_same_info(info, other)
        assert resets >= 6  # auto-resets were exercised
    finally:
        for vec in envs.values():
            vec.close()


def assert_same_info(info: dict, other: dict) -> None:
    assert set(info) == set(other)
    for key, value in info.items():
        if key == "terminal_observation":
            for part in value:
                np.testing.assert_array_equal(value[part], other[key][part])
        elif key == "weights":
            np.testing.assert_array_equal(value, other[key])
        else:
            assert value == other[key], key


def test_batch_env_matches_trading_envs_in_a_dummy_vec_env(store: FeatureStore) -> None:
    run_together(["batch", "dummy"], store)


@pytest.mark.slow
def test_subproc_workers_attach_the_store_and_match_the_batch_env(store: FeatureStore) -> None:
    run_together(["batch", "subproc"], store, steps=45)


def test_seeds_decide_episode_starts(store: FeatureStore) -> None:
    starts = [make_env(small_config(), store, seed=seed).reset()[1]["start"] for seed in (1, 1, 2)]
    assert starts[0] == starts[1]
    other = [make_env(small_config(), store, seed=s).reset()[1]["start"] for s in range(2, 8)]
    assert len(set(other)) > 1


# --------------------------------------------------------------------------- entry points


def test_overrides_use_plain_names(store: FeatureStore) -> None:
    env = make_env(small_config(), store, window=16, fee_bps=5, reward_scale=10)
    assert env.observation_space["market"].shape == (3 * 16 * len(store.feature_names),)
    assert env.sim.execution.cost_rate == pytest.approx((5 + 1 + 1) * 1e-4)
    assert env.sim.reward_rules.scale == 10


def test_unknown_override_is_an_error_with_a_suggestion(store: FeatureStore) -> None:
    with pytest.raises(TypeError, match="did you mean 'fee_bps'"):
        make_env(small_config(), store, fee_bsp=5)


def test_bad_override_value_says_what_is_allowed(store: FeatureStore) -> None:
    with pytest.raises(UserError, match=r"env.window = 0 \(set in window=\)"):
        make_env(small_config(), store, window=0)


def test_vec_env_kind_must_be_known(store: FeatureStore) -> None:
    with pytest.raises(ValueError, match="kind must be"):
        make_trading_vec_env(2, "threads", small_config(), store)  # type: ignore[arg-type]
