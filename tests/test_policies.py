"""Policies for market observations: exact sizes, what each extractor reads, the rollout buffer,
recurrent walks, and the --autotune probe the planner uses."""

from __future__ import annotations

import functools
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import load_config
from core.hardware.autotune import (
    Autotune,
    Candidate,
    Measurement,
    autotune_key,
    load_autotune,
    save_autotune,
)
from core.hardware.machine import Hardware
from core.hardware.planner import MIN_MINIBATCHES, estimate_policy_shape, plan
from core.policies.build import algorithm_class, policy_arguments
from core.policies.layout import ObservationLayout, layout_from_names
from core.policies.multi_timeframe_cnn import MultiTimeframeCNN, branch_bars
from core.policies.registry import EXTRACTORS as REGISTERED
from core.policies.shared_asset import SharedAssetExtractor
from core.policies.size import policy_parameters
from tests.conftest import PYTHON, REPO_ROOT
from tests.helpers.stores import built_store
from training.member.autotune import batch_options, grid, thread_options
from training.member.models import agent_policy, load_model, new_model, store_layout
from training.member.rollout_buffer import FewCopiesDictRolloutBuffer

EXTRACTORS = list(REGISTERED)  # every extractor the registry offers is counted and built
DEFAULT_LAYOUT = ObservationLayout(4, 32, (10, 10, 10), (1, 4, 24), 4)


def _spaces(layout: ObservationLayout) -> tuple[spaces.Dict, spaces.Box]:
    observation = spaces.Dict(
        {
            "market": spaces.Box(-5, 5, (layout.market_dim,), np.float32),
            "portfolio": spaces.Box(-5, 5, (layout.portfolio_dim,), np.float32),
        }
    )
    return observation, spaces.Box(-1, 1, (layout.n_assets,), np.float32)


def _real_parameters(config: object, layout: ObservationLayout) -> int:
    policy, kwargs = policy_arguments(config, layout)  # type: ignore[arg-type]
    aliases = algorithm_class(config).policy_aliases  # type: ignore[arg-type]
    policy_class = aliases[policy] if isinstance(policy, str) else policy
    policy = policy_class(*_spaces(layout), lambda _: 3e-4, **kwargs)
    return sum(p.numel() for p in policy.parameters())


layouts = st.builds(
    lambda assets, window, groups, shared: ObservationLayout(
        assets, window, tuple(groups), tuple(4**i for i in range(len(groups))), shared
    ),
    st.integers(1, 5),
    st.integers(1, 40),
    st.lists(st.integers(1, 12), min_size=1, max_size=3),
    st.integers(0, 4),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    layout=layouts,
    extractor=st.sampled_from(EXTRACTORS),
    share=st.booleans(),
    channels=st.integers(1, 24),
    patch=st.integers(1, 12),
    kernel=st.integers(1, 6),
    embedding=st.integers(1, 24),
    hidden=st.lists(st.integers(1, 32), min_size=1, max_size=2),
)
def test_the_planner_counts_every_parameter_the_real_policy_has(
    layout: ObservationLayout,
    extractor: str,
    share: bool,
    channels: int,
    patch: int,
    kernel: int,
    embedding: int,
    hidden: list[int],
) -> None:
    config = load_config(
        overrides=[
            f"policy.extractor={extractor}",
            f"policy.share_extractor={str(share).lower()}",
            f"policy.channels={channels}",
            f"policy.patch={patch}",
            f"policy.kernel={kernel}",
            f"policy.embedding={embedding}",
            "policy.lstm_hidden=8",
            f"ppo.net_arch={hidden}",
        ]
    )
    expected = _real_parameters(config, layout)
    assert policy_parameters(config.policy, hidden, layout) == expected


def test_the_plan_uses_the_extractors_real_size() -> None:
    names = [f"{tf}_{c}" for tf in ("1h", "4h", "1d") for c in range(10)] + ["hour_sin"] * 4
    for extractor in EXTRACTORS:
        config = load_config(overrides=[f"policy.extractor={extractor}"])
        shape = estimate_policy_shape(config, 4, names)
        assert shape.params == _real_parameters(config, DEFAULT_LAYOUT)
    # Without a store the estimate uses the same layout for the default features.
    assert estimate_policy_shape(load_config()).obs_dim == DEFAULT_LAYOUT.obs_dim


def test_a_store_layout_groups_columns_by_timeframe(tmp_path: Path) -> None:
    store = built_store(tmp_path)  # timeframes [1h, 4h], return horizons [1, 4]
    config = load_config(overrides=["env.window=8"])
    layout = store_layout(store, config)
    assert layout.timeframe_multiples == (1, 4)
    assert sum(layout.timeframe_columns) + layout.shared_columns == len(store.feature_names)
    assert layout.timeframe_columns[0] == layout.timeframe_columns[1]
    assert layout_from_names(2, 3, ["vix", "oil"]).timeframe_columns == (2,)


def _observation(layout: ObservationLayout, rows: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "market": torch.randn(rows, layout.market_dim, generator=generator),
        "portfolio": torch.randn(rows, layout.portfolio_dim, generator=generator),
    }


@settings(max_examples=15, deadline=None)
@given(st.permutations(range(4)), st.integers(0, 1000))
def test_shared_asset_uses_the_same_weights_for_every_asset(order: list[int], seed: int) -> None:
    """Permuting the assets' blocks permutes their outputs: one encoder reads them all."""
    layout = DEFAULT_LAYOUT
    torch.manual_seed(0)
    extractor = SharedAssetExtractor(_spaces(layout)[0], **layout.as_kwargs(), embedding=8)
    obs = _observation(layout, 3, seed)
    shuffled = {
        "market": obs["market"].view(3, 4, -1)[:, order].reshape(3, -1),
        "portfolio": obs["portfolio"],
    }
    block = 8 + layout.n_features  # an asset's embedding and its newest feature row
    with torch.no_grad():
        before = extractor(obs)[:, : 4 * block].view(3, 4, block)
        after = extractor(shuffled)[:, : 4 * block].view(3, 4, block)
    assert torch.allclose(after, before[:, order], atol=1e-6)


def test_each_timeframe_branch_reads_only_its_own_closed_bars() -> None:
    """A 4h branch samples every 4th bar from the newest; a 4h value on any other row (a row the
    feature store repeats until the 4h bar closes) cannot change the output."""
    layout = DEFAULT_LAYOUT
    torch.manual_seed(0)
    extractor = MultiTimeframeCNN(_spaces(layout)[0], **layout.as_kwargs())
    obs = _observation(layout, 2, 1)
    read = set(branch_bars(layout, 4))
    edited = {key: value.clone() for key, value in obs.items()}
    market = edited["market"].view(2, 4, layout.window, layout.n_features)
    unread = next(bar for bar in range(layout.window) if bar not in read)
    market[:, :, unread, 10:20] += 100.0  # the 4h columns on a row the 4h branch skips
    with torch.no_grad():
        assert torch.equal(extractor(obs), extractor(edited))
        market[:, :, max(read), 10:20] += 100.0  # ... and on the newest row, which it reads
        assert not torch.equal(extractor(obs), extractor(edited))


def test_the_few_copies_buffer_yields_the_same_transitions_as_sb3s() -> None:
    from stable_baselines3.common.buffers import DictRolloutBuffer

    layout = ObservationLayout(2, 3, (2,), (1,), 0)
    observation, action = _spaces(layout)
    buffers = [
        kind(8, observation, action, "cpu", gae_lambda=0.9, gamma=0.95, n_envs=4)
        for kind in (DictRolloutBuffer, FewCopiesDictRolloutBuffer)
    ]
    rng = np.random.default_rng(0)
    for rollout in range(2):  # the second fill reuses the first's arrays
        steps = [
            (
                {k: rng.standard_normal((4, *s.shape)).astype(np.float32) for k, s in observation.items()},
                rng.standard_normal((4, 2)).astype(np.float32),
                rng.standard_normal(4).astype(np.float32),
                rng.random(4) < 0.2,
                torch.as_tensor(rng.standard_normal(4), dtype=torch.float32),
                torch.as_tensor(rng.standard_normal(4), dtype=torch.float32),
            )
            for _ in range(8)
        ]  # fmt: skip
        rows = []
        for buffer in buffers:
            buffer.reset()
            for step in steps:
                buffer.add(*step)
            buffer.compute_returns_and_advantage(torch.ones(4), np.zeros(4))
            samples = [  # each minibatch read before the next, as PPO does (arrays are reused)
                np.concatenate(
                    [s.observations["market"], s.observations["portfolio"], s.actions,
                     s.old_values[:, None], s.old_log_prob[:, None], s.advantages[:, None],
                     s.returns[:, None]], axis=1,
                )
                for s in buffer.get(8)
            ]  # fmt: skip
            assert len(samples) == 4 and all(len(s) == 8 for s in samples), rollout
            table = np.concatenate(samples)
            uneven = [s.observations["market"].numpy().copy() for s in buffer.get(12)]
            assert [len(m) for m in uneven] == [12, 12, 8]  # a short last minibatch
            assert np.array_equal(
                np.sort(np.concatenate(uneven), axis=0),
                np.sort(table[:, : layout.market_dim], axis=0),
            )
            rows.append(table[np.lexsort(table.T[::-1])])
        assert np.array_equal(rows[0], rows[1])


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_every_extractor_trains_saves_and_walks_the_same_after_loading(
    tmp_path: Path, extractor: str
) -> None:
    from core.bar_range import BarRange
    from core.envs.settings import env_settings
    from core.envs.vec_env import vec_env
    from core.evaluation.rollout import rollout

    store = built_store(tmp_path, n_bars=600, n_assets=2)
    n_time = len(store.timestamps)
    config = load_config(overrides=[f"policy.extractor={extractor}", "env.window=8"])
    settings_ = env_settings(config.model_copy(update={"features": config.features.model_copy(
        update={"timeframes": ["1h", "4h"]})}))  # fmt: skip
    vec = vec_env(4, "batch", store, settings_, BarRange(7, n_time - 100), 0)
    model = new_model(config, vec, store_layout(store, config), 16, 32, 0, "cpu", 4096)
    model.learn(128)
    model.save(tmp_path / "model.zip")
    loaded = load_model(config, tmp_path / "model.zip", store)
    walks = [
        rollout(store, settings_, BarRange(n_time - 100, n_time), {"a": agent_policy(m)})["a"]
        for m in (model, loaded, loaded)
    ]
    assert all(len(walk.returns) == 99 for walk in walks)
    assert np.array_equal(walks[0].returns, walks[1].returns)
    assert np.array_equal(walks[1].returns, walks[2].returns)
    assert type(loaded).__name__ == ("RecurrentPPO" if extractor == "lstm" else "PPO")


def test_a_recurrent_walk_carries_its_memory_from_bar_to_bar(tmp_path: Path) -> None:
    """The same observation gives another action once the LSTM has seen earlier bars."""
    from core.bar_range import BarRange
    from core.envs.settings import env_settings
    from core.envs.vec_env import vec_env

    store = built_store(tmp_path, n_bars=500, n_assets=2)
    config = load_config(overrides=["policy.extractor=lstm", "env.window=4"])
    settings_ = env_settings(config.model_copy(update={"features": config.features.model_copy(
        update={"timeframes": ["1h", "4h"]})}))  # fmt: skip
    vec = vec_env(2, "batch", store, settings_, BarRange(3, len(store.timestamps)), 0)
    model = new_model(config, vec, store_layout(store, config), 16, 16, 0, "cpu", 4096)
    obs = vec.reset()
    single = {key: value[:1] for key, value in obs.items()}
    walk = agent_policy(model)
    first = walk(single, np.zeros((1, 2)), 0)
    other = {key: -value for key, value in single.items()}
    walk(other, np.zeros((1, 2)), 1)
    later = walk(single, np.zeros((1, 2)), 2)
    assert not np.allclose(first, later)
    assert np.allclose(first, agent_policy(model)(single, np.zeros((1, 2)), 0))  # fresh walk


@settings(max_examples=30, deadline=None)
@given(
    n_seq=st.integers(1, 6),
    length=st.integers(1, 9),
    layers=st.integers(1, 2),
    data=st.data(),
)
def test_the_lstm_sequence_pass_equals_sb3_contribs_step_by_step_one(
    n_seq: int, length: int, layers: int, data: st.DataObject
) -> None:
    """One LSTM call per sequence with reset initial states = sb3-contrib's loop over steps, for
    sequences that start an episode (or not) at their first step, as RecurrentPPO cuts them;
    a start inside a sequence takes sb3-contrib's own path."""
    from sb3_contrib.common.recurrent.policies import RecurrentMultiInputActorCriticPolicy

    from core.policies.recurrent import EpisodeStartLstmPolicy

    torch.manual_seed(data.draw(st.integers(0, 2**16)))
    lstm = torch.nn.LSTM(5, 3, num_layers=layers)
    features = torch.randn(n_seq * length, 5)
    states = (torch.randn(layers, n_seq, 3), torch.randn(layers, n_seq, 3))
    starts = torch.zeros(n_seq, length)
    starts[:, 0] = torch.tensor(data.draw(st.lists(st.sampled_from([0.0, 1.0]),
                                                   min_size=n_seq, max_size=n_seq)))  # fmt: skip
    if data.draw(st.booleans()) and length > 1:  # a start inside: must agree all the same
        starts[data.draw(st.integers(0, n_seq - 1)), data.draw(st.integers(1, length - 1))] = 1.0
    ours = EpisodeStartLstmPolicy._process_sequence(features, states, starts.flatten(), lstm)
    theirs = RecurrentMultiInputActorCriticPolicy._process_sequence(
        features, states, starts.flatten(), lstm
    )
    torch.testing.assert_close(ours[0], theirs[0])
    torch.testing.assert_close(ours[1][0], theirs[1][0])
    torch.testing.assert_close(ours[1][1], theirs[1][1])


# Autotune ---------------------------------------------------------------------------------------
HARDWARE = Hardware(usable_cpus=8, logical_cpus=8, physical_cores=8, memory_gb=64.0,
                    memory_available_gb=60.0)  # fmt: skip


def _probe(*rows: tuple[int, int, int, int, float]) -> Autotune:
    measured = tuple(Measurement(Candidate(*row[:4]), row[4]) for row in rows)
    return Autotune("key", "machine", measured, "cache.json")


def test_the_plan_takes_the_fastest_measured_candidate_that_fits_a_member() -> None:
    config = load_config()
    probe = _probe((8, 64, 128, 1024, 900.0), (4, 32, 256, 2048, 1500.0), (16, 64, 128, 512, 9e9))
    result = plan(HARDWARE, config, 1, autotune=probe)
    assert (result.torch_threads, result.n_envs, result.n_steps, result.batch_size) == (
        4, 32, 256, 2048)  # fmt: skip
    assert result.decisions["n_envs"].chosen == "measured"
    assert "--autotune" in result.decisions["batch_size"].why
    # Two members at once: 4 CPUs each; the 4-thread candidate still fits.
    two = plan(HARDWARE, config, 2, autotune=probe)
    assert two.members_concurrent == 2 and two.torch_threads == 4
    assert (two.n_envs * two.n_steps) % two.batch_size == 0


def test_configured_values_win_over_measurements() -> None:
    config = load_config(overrides=["hardware.n_envs=64"])
    probe = _probe((8, 64, 128, 1024, 900.0), (4, 32, 256, 2048, 1500.0))
    result = plan(HARDWARE, config, 1, autotune=probe)
    assert result.n_envs == 64 and result.decisions["n_envs"].chosen == "config"
    assert result.torch_threads == 8  # the fastest candidate that agrees with n_envs=64
    nothing = plan(HARDWARE, load_config(overrides=["hardware.n_envs=7"]), 1, autotune=probe)
    assert nothing.n_envs == 7 and any("no measured candidate" in r for r in nothing.reasons)


def test_the_cache_round_trips_and_its_key_follows_machine_and_network(tmp_path: Path) -> None:
    probe = _probe((2, 64, 128, 1024, 1234.5))
    save_autotune(tmp_path / "a" / "k.json", probe)
    loaded = load_autotune(tmp_path / "a" / "k.json")
    assert loaded is not None and loaded.measurements == probe.measurements
    assert load_autotune(tmp_path / "missing.json") is None
    (tmp_path / "old.json").write_text(json.dumps({"format": 0}))
    assert load_autotune(tmp_path / "old.json") is None
    config = load_config()
    key = autotune_key(config, "cpu x 2", 4361, 4)
    assert key == autotune_key(load_config(), "cpu x 2", 4361, 4)
    assert key != autotune_key(config, "cpu x 4", 4361, 4)
    assert key != autotune_key(load_config(overrides=["policy.extractor=lstm"]), "cpu x 2", 4361, 4)


@given(st.integers(1, 64), st.sampled_from([1024, 2048, 8192, 16384]))
def test_every_candidate_keeps_the_planners_invariants(cpus: int, target: int) -> None:
    assert max(thread_options(cpus)) == cpus and min(thread_options(cpus)) == 1
    for cell in grid(cpus, target):
        rollout = cell.n_envs * cell.n_steps
        assert rollout % cell.batch_size == 0 and rollout // cell.batch_size >= MIN_MINIBATCHES
        assert cell.torch_threads <= cpus
    assert all(b >= 1 for b in batch_options(1024))


@pytest.mark.slow
def test_autotune_probes_caches_and_the_next_plan_uses_it(tmp_path: Path) -> None:
    settings_ = ["--preset", "quick", "--set", "hardware.target_rollout_steps=1024",
                 "--set", f"data.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    command = [PYTHON, "training/train_walk_forward.py", *settings_, "--dry-run", "--no-progress"]
    first = subprocess.run([*command, "--autotune"], capture_output=True, text=True,
                           cwd=REPO_ROOT, timeout=900)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Autotune: cached in" in first.stdout and "env-steps/s" in first.stdout
    (cached,) = (tmp_path / "cache" / "autotune").glob("*.json")
    measured = json.loads(cached.read_text())["measurements"]
    assert len(measured) >= 5 and all(row["steps_per_s"] > 0 for row in measured)
    second = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "measured" in second.stdout and "Autotune:" not in second.stdout
    best = max(measured, key=lambda row: row["steps_per_s"])
    row = rf"n_envs\s+│\s+{best['n_envs']:,}\s+│"
    assert re.search(row, second.stdout.replace("┃", "│"))
    refused = subprocess.run([*command, "--autotune", "--hardware", "config/hardware/server-256core-rtx3090.yaml"],
                             capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)  # fmt: skip
    assert refused.returncode == 2 and "--autotune times training on this machine" in refused.stderr


def _real_macs(config: object, layout: ObservationLayout) -> int:
    """Multiply-adds of one observation's forward pass (actor and critic), as torch counts the
    matmuls (FlopCounterMode counts 2 FLOPs per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    policy, kwargs = policy_arguments(config, layout)  # type: ignore[arg-type]
    policy_class = algorithm_class(config).policy_aliases[policy]  # type: ignore[arg-type]
    built = policy_class(*_spaces(layout), lambda _: 3e-4, **kwargs)
    observation = {key: torch.zeros(1, *space.shape) for key, space in _spaces(layout)[0].items()}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        built.evaluate_actions(observation, torch.zeros(1, layout.n_assets))
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("extractor", ["flat", "shared_asset", "multi_timeframe_cnn"])
def test_the_device_rule_counts_the_real_multiply_adds(extractor: str) -> None:
    from core.policies.size import policy_macs

    config = load_config(overrides=[f"policy.extractor={extractor}"])
    counted = policy_macs(config.policy, list(config.ppo.net_arch), DEFAULT_LAYOUT)
    real = _real_macs(config, DEFAULT_LAYOUT)
    assert abs(counted - real) <= 0.1 * real, (counted, real)


def _policy(config: object, layout: ObservationLayout, **extra: object) -> object:
    policy, kwargs = policy_arguments(config, layout)  # type: ignore[arg-type]
    aliases = algorithm_class(config).policy_aliases  # type: ignore[arg-type]
    policy_class = aliases[policy] if isinstance(policy, str) else policy
    return policy_class(*_spaces(layout), lambda _: 3e-4, **kwargs, **extra)


FEED_FORWARD = [name for name in EXTRACTORS if name != "lstm"]


@functools.cache
def _seeded_policy(extractor: str) -> tuple[object, torch.Tensor]:
    """(a policy, its action net's initial weights): built once, rescaled by each example."""
    torch.manual_seed(0)
    policy = _policy(load_config(overrides=[f"policy.extractor={extractor}"]), DEFAULT_LAYOUT)
    return policy, policy.action_net.weight.detach().clone()  # type: ignore[attr-defined]


@pytest.mark.parametrize("extractor", FEED_FORWARD)
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.integers(1, 3), scale=st.floats(0.1, 50.0))
def test_the_fast_actor_acts_bit_identically_to_predict(
    extractor: str, seed: int, rows: int, scale: float
) -> None:
    """Weights scaled so that some actions leave [-1, 1] and are clipped, random observations:
    the walk's fast path gives exactly predict's deterministic actions."""
    from core.policies.deterministic import fast_actor

    policy, weight = _seeded_policy(extractor)
    with torch.no_grad():
        policy.action_net.weight.copy_(weight * scale)  # type: ignore[attr-defined]
    actor = fast_actor(policy)
    assert actor is not None
    obs = {key: value.numpy() for key, value in _observation(DEFAULT_LAYOUT, rows, seed).items()}
    expected = policy.predict(obs, deterministic=True)[0]  # type: ignore[attr-defined]
    actual = actor(obs)
    assert actual.dtype == expected.dtype and np.array_equal(actual, expected)


@pytest.mark.parametrize(
    ("overrides", "extra"),
    [(["policy.extractor=lstm"], {}), ([], {"use_sde": True})],
    ids=["lstm", "gsde"],
)
def test_policies_without_a_plain_gaussian_mean_keep_predict(
    overrides: list[str], extra: dict[str, object]
) -> None:
    from core.policies.deterministic import fast_actor

    policy = _policy(load_config(overrides=overrides), DEFAULT_LAYOUT, **extra)
    assert fast_actor(policy) is None
