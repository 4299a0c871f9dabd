"""What SB3 and rl-zoo users expect: every PPO argument from config (with SB3's defaults), rl-zoo's
`lin_X` schedules, their own callbacks, rollout/ep_rew_mean in the logs, and the env a finished
run's models read (`make_run_env(run=...)`)."""

from __future__ import annotations

import csv
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.config import load_config
from core.errors import UserError
from core.hardware.groups import separate_because
from tests.helpers.launch import SmallRun, small_run
from tests.helpers.user_callback import CountSteps
from training.member.models import load_model, member_configs, schedule
from training.member.user_callbacks import callback_classes, user_callbacks
from training.population.limits import refuse_unbatched

# What the project fills in itself (env, network, seeds, device, logging, its rollout buffer).
PROJECT_FILLED = {
    "self",
    "policy",
    "env",
    "n_steps",  # the plan's (ppo.n_steps: auto or a number)
    "batch_size",  # the plan's (ppo.batch_size: auto or a number)
    "rollout_buffer_class",
    "rollout_buffer_kwargs",
    "tensorboard_log",
    "policy_kwargs",
    "verbose",
    "seed",
    "device",
    "_init_setup_model",
}
CALLBACK = "tests.helpers.user_callback:CountSteps"


@pytest.mark.parametrize("algorithm", ["ppo", "recurrent"])
def test_every_ppo_argument_is_a_config_key_with_sb3s_default(algorithm: str) -> None:
    from sb3_contrib import RecurrentPPO
    from stable_baselines3 import PPO

    cls = PPO if algorithm == "ppo" else RecurrentPPO
    config = load_config().ppo
    parameters = inspect.signature(cls.__init__).parameters
    missing = [
        name for name in parameters if name not in PROJECT_FILLED | set(type(config).model_fields)
    ]
    assert missing == []
    for name, parameter in parameters.items():
        if name not in PROJECT_FILLED:
            assert getattr(config, name) == parameter.default, name


def test_schedule_strings_are_validated_like_rl_zoo_writes_them() -> None:
    config = load_config(overrides=["ppo.learning_rate=lin_3e-4", "ppo.clip_range_vf=lin_0.5"])
    assert config.ppo.learning_rate == "lin_3e-4" and config.ppo.clip_range_vf == "lin_0.5"
    for bad, said in [
        ("ppo.learning_rate=lin_2", "at most 1"),
        ("ppo.clip_range=lin_zero", "needs a number X"),
        ("ppo.clip_range=lin_-0.1", "above 0"),
        ("ppo.clip_range=exp_0.2", "lin_X"),
        ("ppo.clip_range_vf=0", "above 0"),
        ("ppo.target_kl=-1", "> 0"),
    ]:
        with pytest.raises(UserError, match=said) as refused:
            load_config(overrides=[bad])
        assert bad.split("=")[0] in str(refused.value)


def test_gsde_refuses_the_entropy_settings_it_would_misread() -> None:
    assert load_config(overrides=["ppo.use_sde=true"]).ppo.use_sde
    with pytest.raises(UserError, match=r"training\.entropy_target to null") as refused:
        load_config(overrides=["ppo.use_sde=true", "training.entropy_target=0.5"])
    assert "ppo.use_sde (set in --set ppo.use_sde=true)" in str(refused.value)


@given(st.floats(1e-6, 1.0), st.floats(0.0, 1.0))
def test_lin_schedule_is_rl_zoos_linear_schedule(start: float, progress_remaining: float) -> None:
    """rl-zoo's linear_schedule(X)(p) = p * X: X at the start (p = 1), 0 at the end."""
    value = schedule(f"lin_{start!r}")(progress_remaining)
    assert value == pytest.approx(
        progress_remaining * start, rel=1e-12, abs=1e-15 * start
    )  # start - (1-p)·start
    assert schedule(start) == start and schedule(None) is None


def test_unknown_callbacks_are_refused_naming_the_key() -> None:
    cases = [
        ("no_such_module_x:Thing", "no module 'no_such_module_x'"),
        ("tests.helpers.user_callback:Missing", "has no 'Missing'"),
        ("tests.helpers.user_callback:NotACallback", "not a stable-baselines3 callback"),
    ]
    for name, said in cases:
        config = load_config(overrides=[f"training.callbacks=['{CALLBACK}', '{name}']"])
        with pytest.raises(UserError, match=said) as refused:
            callback_classes(config)
        assert f"training.callbacks[1] = {name!r}" in str(refused.value)
    config = load_config(
        overrides=["training.callbacks=['tests.helpers.user_callback:NeedsArgument']"]
    )
    callback_classes(config)  # the class is fine; building it with no arguments is not
    with pytest.raises(UserError, match=r"NeedsArgument\(\) failed"):
        user_callbacks(config)


def test_the_population_learner_refuses_what_it_cannot_run() -> None:
    refuse_unbatched(load_config())
    for override, key in [
        ("ppo.use_sde=true", "ppo.use_sde"),
        (f"training.callbacks=['{CALLBACK}']", "training.callbacks"),
    ]:
        with pytest.raises(UserError, match=r"ensemble\.learner=separate") as refused:
            refuse_unbatched(load_config(overrides=[override]))
        assert str(refused.value).startswith(key)
        # ensemble.learner auto never picks the population learner for them
        assert separate_because(load_config(overrides=[override]), 4, 100).startswith(key)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> SmallRun:
    """One member trained to its end with schedules, value clipping, target_kl and a callback."""
    from training.member.member_training import run_job

    run = small_run(
        tmp_path_factory.mktemp("habits"),
        1,
        2048,
        "env.episode_bars=16",
        "ppo.learning_rate=lin_1e-3",
        "ppo.clip_range=lin_0.2",
        "ppo.clip_range_vf=0.5",
        "ppo.target_kl=0.05",
        f"training.callbacks=['{CALLBACK}']",
    )
    CountSteps.seen.clear()
    run_job(run.jobs[0])
    return run


def logged(job: Any) -> list[dict[str, str]]:
    with open(job.files.logs / "progress.csv") as handle:
        return list(csv.DictReader(handle))


def test_a_run_trains_with_the_configured_ppo_arguments(finished: SmallRun) -> None:
    from core.features.store import FeatureStore

    job = finished.jobs[0]
    store = FeatureStore.attach(job.store_path)
    config, _ = member_configs(job, store)
    last = max(job.files.checkpoints.glob("last-*.zip"))
    model = load_model(config, last, store)  # the lin_ schedules are trusted, not unpickled
    assert model.lr_schedule(0.5) == pytest.approx(5e-4)
    assert model.clip_range(0.25) == pytest.approx(0.05)
    assert model.clip_range_vf(0.3) == 0.5 and model.target_kl == 0.05
    rows = [row for row in logged(job) if row.get("train/clip_range")]
    assert rows and float(rows[-1]["train/clip_range_vf"]) == 0.5
    assert float(rows[-1]["train/learning_rate"]) < 1e-3  # decayed from lin_1e-3


def test_a_users_callback_runs_in_the_member_learn(finished: SmallRun) -> None:
    job = finished.jobs[0]
    assert len(CountSteps.seen) == 1
    seen = CountSteps.seen[0]
    assert seen["start"] == 0 and seen["end"] == job.timesteps
    assert seen["steps"] == job.timesteps // job.n_envs


def test_episode_return_and_length_are_logged_as_sb3_names_them(finished: SmallRun) -> None:
    rows = [row for row in logged(finished.jobs[0]) if row.get("rollout/ep_len_mean")]
    assert rows, "no rollout/ep_len_mean in progress.csv"
    assert float(rows[-1]["rollout/ep_len_mean"]) == 16  # env.episode_bars
    assert np.isfinite(float(rows[-1]["rollout/ep_rew_mean"]))


def test_make_env_of_a_run_gives_what_its_models_read(finished: SmallRun) -> None:
    from core.envs.settings import env_settings
    from core.features.store import FeatureStore
    from training.member.run_env import make_run_env

    job = finished.jobs[0]
    store = FeatureStore.attach(job.store_path)
    config, _ = member_configs(job, store)
    model = load_model(config, next(job.files.checkpoints.glob("best-*.zip")), store)
    whole = make_run_env(run=finished.run_dir)
    assert whole.observation_space == model.observation_space
    env = make_run_env(run=finished.run_dir, fold=0, part="validation")
    assert env.sim.settings == env_settings(config)
    obs, info = env.reset(seed=1)
    assert job.fold.validation.start <= info["start"] < job.fold.validation.stop
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action.astype(env.action_space.dtype))
    env.step(action)
    with pytest.raises(UserError, match="no fold 7 member 0"):
        make_run_env(run=finished.run_dir, fold=7)


def test_launch_refuses_before_any_job(finished: SmallRun) -> None:
    from training.learners.ensemble_launch import launch_ensemble

    with pytest.raises(UserError, match=r"^training\.callbacks \(.*cannot run with the population"):
        launch_ensemble(finished.jobs, None, None, "population", 2)  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_group_logs_episode_return_and_length_per_member(tmp_path: Path) -> None:
    from training.population.group_training import run_group
    from training.run.job import NO_HOOKS

    run = small_run(tmp_path, 2, 2048, "env.episode_bars=16", "ppo.stats_window_size=5")
    run_group(run.jobs, NO_HOOKS)
    for job in run.jobs:
        rows = [row for row in logged(job) if row.get("rollout/ep_len_mean")]
        assert rows and float(rows[-1]["rollout/ep_len_mean"]) == 16
        assert np.isfinite(float(rows[-1]["rollout/ep_rew_mean"]))
