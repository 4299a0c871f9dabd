"""The population learner: a group's update is each member's own SB3 update, a member's checkpoint
predicts what the group predicted, one member leaving does not move the others, and a killed group
resumes to the same step counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from core.evaluation.walks import walk_members
from core.features.store import FeatureStore
from core.policies.stacked import StackedPolicies
from tests.helpers.launch import PreemptAfter, Requeued, small_run
from training.member.checkpoints import TrainingState
from training.member.member_build import member_model
from training.member.models import load_model, member_configs
from training.population.adam import StackedAdam
from training.population.group_training import run_group
from training.population.update import group_train
from training.run.job import NO_HOOKS, Job

RELATIVE = 1e-5


def models_of(jobs: list[Job]) -> list[Any]:
    """Each job's new SB3 model with one rollout collected by SB3 itself."""
    from core.envs.settings import env_settings
    from core.envs.vec_env import vec_env

    store = FeatureStore.attach(jobs[0].store_path)
    models = []
    for job in jobs:
        config, _ = member_configs(job, store)
        vec = vec_env(job.n_envs, "batch", store, env_settings(config), job.fold.train, job.seed)
        model = member_model(job, config, store, vec, TrainingState(), NO_HOOKS)
        _, callback = model._setup_learn(job.timesteps, None)
        model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        models.append(model)
    return models


def snapshot(model: Any) -> tuple[dict, dict]:
    policy = model.policy
    return (
        {k: v.clone() for k, v in policy.state_dict().items()},
        _clone(policy.optimizer.state_dict()),
    )


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def restore(model: Any, saved: tuple[dict, dict]) -> None:
    model.policy.load_state_dict(saved[0])
    model.policy.optimizer.load_state_dict(saved[1])


def assert_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    """||got - want|| / ||want|| per tensor (float32 sums in another order differ by ulps)."""
    for name, expected in want.items():
        scale = float(expected.norm()) or 1.0
        difference = float((got[name] - expected).norm())
        assert difference / scale <= RELATIVE, f"{name}: relative difference {difference / scale}"


def sb3_and_group_updates(models: list[Any], seeds: list[int]) -> None:
    """SB3's train() on each model from a saved state, then the group's update from the same
    state with the same minibatch orders: the parameters must agree member by member."""
    saved = [snapshot(model) for model in models]
    expected = []
    for model, seed, state in zip(models, seeds, saved, strict=True):
        np.random.seed(seed)
        model.train()
        expected.append({k: v.clone() for k, v in model.policy.state_dict().items()})
        restore(model, state)
    stacked = StackedPolicies([model.policy for model in models])
    adam = StackedAdam(stacked.params, [model.policy.optimizer for model in models])
    generators = [np.random.RandomState(seed) for seed in seeds]
    group_train(models, stacked, adam, range(len(models)), generators)
    for model, want in zip(models, expected, strict=True):
        assert_close(dict(model.policy.state_dict()), want)


@pytest.fixture(scope="module")
def four(tmp_path_factory: pytest.TempPathFactory) -> list[Job]:
    run = small_run(tmp_path_factory.mktemp("population"), 4, 4096, "ppo.n_epochs=2")
    return run.jobs


def test_one_member_group_update_equals_sb3_train(four: list[Job]) -> None:
    models = models_of(four[:1])
    sb3_and_group_updates(models, [11])


@pytest.mark.parametrize("extractor", ["flat", "shared_asset", "multi_timeframe_cnn"])
def test_each_member_of_a_mixed_group_updates_as_its_own_sb3_model(
    four: list[Job], extractor: str, tmp_path: Path
) -> None:
    """Different seeds, ent_coef, clip_range, vf_coef, max_grad_norm and learning rates; one
    member with value clipping; one stopped by target_kl after its first minibatch; a second
    update proves Adam's step counts and moments carried."""
    from stable_baselines3.common.utils import FloatSchedule

    jobs = four
    if extractor != "flat":
        jobs = small_run(tmp_path, 4, 4096, "ppo.n_epochs=2", f"policy.extractor={extractor}").jobs
    from training.population.member_values import set_live_value

    models = models_of(jobs)
    for model, ent_coef in zip(models, (0.0, 0.01, 0.05, 0.002), strict=True):
        model.ent_coef = ent_coef
    per_member = [(0.2, 0.5, 0.5, 3e-4), (0.1, 1.0, 0.3, 1e-3), (0.3, 0.25, 2.0, 1e-4),
                  (0.15, 0.7, 10.0, 5e-4)]  # fmt: skip
    for model, (clip, vf_coef, norm, lr) in zip(models, per_member, strict=True):
        set_live_value(model, "ppo.clip_range", clip)
        set_live_value(model, "ppo.vf_coef", vf_coef)
        set_live_value(model, "ppo.max_grad_norm", norm)
        set_live_value(model, "ppo.learning_rate", lr)
    models[1].clip_range_vf = FloatSchedule(0.05)
    models[2].target_kl = 1e-9
    sb3_and_group_updates(models, [1, 2, 3, 4])
    sb3_and_group_updates(models, [5, 6, 7, 8])


def test_a_members_checkpoint_predicts_what_the_group_predicted(
    four: list[Job], tmp_path: Path
) -> None:
    models = models_of(four[:3])
    stacked = StackedPolicies([model.policy for model in models])
    adam = StackedAdam(stacked.params, [model.policy.optimizer for model in models])
    group_train(models, stacked, adam, range(3), [np.random.RandomState(k) for k in range(3)])
    store = FeatureStore.attach(four[0].store_path)
    config, _ = member_configs(four[1], store)
    from core.envs.settings import env_settings
    from core.evaluation.judge import AGENT
    from core.evaluation.rollout import rollout
    from training.member.models import agent_policy

    bars = four[1].fold.validation
    together = walk_members(store, env_settings(config), bars, stacked, [0, 1, 2])
    models[1].save(tmp_path / "member1.zip")
    loaded = load_model(config, tmp_path / "member1.zip", store)
    alone = rollout(store, env_settings(config), bars, {AGENT: agent_policy(loaded)})[AGENT]
    np.testing.assert_allclose(together[1].returns, alone.returns, rtol=1e-6, atol=1e-9)
    assert together[1].trades.sum() == alone.trades.sum()


def results_of(jobs: list[Job]) -> dict[int, dict]:
    return {job.member: json.loads(job.files.result.read_text()) for job in jobs}


def test_a_group_trains_tests_and_writes_each_members_result(tmp_path: Path) -> None:
    from training.run.job import Hooks

    run = small_run(tmp_path, 3, 4096)
    parts: dict[str, int] = {}
    total: list[int] = []

    def part(name: str, steps: int) -> None:
        parts[name] = parts.get(name, 0) + steps

    outcome = run_group(run.jobs, Hooks(advance=total.append, part=part))
    assert sorted(outcome["members"]) == [0, 1, 2]
    # each member's steps reach its own line on the board, and the group's sum
    assert sorted(parts) == ["member 0", "member 1", "member 2"]
    assert all(steps >= 4096 for steps in parts.values()) and sum(total) == sum(parts.values())
    for job in run.jobs:
        result = json.loads(job.files.result.read_text())
        assert result["timesteps"] >= 4096
        assert {"agent", "buy_and_hold", "random"} <= set(result["test"])
        state = TrainingState.load(job.files.state)
        assert state.finished and state.evaluations
        assert (job.files.checkpoints / str(state.last_checkpoint)).exists()


@pytest.fixture(scope="module")
def without_member_1(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict]:
    """Members 0 and 2 trained as a group of their own: the trajectories the next test's members
    must keep whatever member 1 does (one reference run for both of its cases)."""
    alone = small_run(tmp_path_factory.mktemp("alone"), 3, 6144)
    run_group([alone.jobs[0], alone.jobs[2]], NO_HOOKS)
    return results_of([alone.jobs[0], alone.jobs[2]])


@pytest.mark.parametrize("what", ["fails", "stops"])
def test_a_member_that_fails_or_stops_leaves_the_others_trajectories_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str, without_member_1: dict[int, dict]
) -> None:
    from training.member.callbacks import WalkForwardCallback

    expected = without_member_1
    original = WalkForwardCallback._on_rollout_end

    def interfere(self: WalkForwardCallback) -> None:
        original(self)
        if self.files.folder.name == "member_01":
            if what == "fails":
                raise RuntimeError("injected")
            self.stop = self.state.stopped_early = True

    monkeypatch.setattr(WalkForwardCallback, "_on_rollout_end", interfere)
    together = small_run(tmp_path / "together", 3, 6144)
    if what == "fails":
        with pytest.raises(RuntimeError, match="member 1: RuntimeError: injected"):
            run_group(together.jobs, NO_HOOKS)
        assert not together.jobs[1].files.result.exists()
    else:
        run_group(together.jobs, NO_HOOKS)
        stopped = json.loads(together.jobs[1].files.result.read_text())
        assert stopped["stopped_early"] and stopped["timesteps"] < 6144
    got = results_of([together.jobs[0], together.jobs[2]])
    for member in (0, 2):
        want, have = expected[member], got[member]
        assert have["timesteps"] == want["timesteps"]
        assert [e["score"] for e in have["evaluations"]] == pytest.approx(
            [e["score"] for e in want["evaluations"]], rel=1e-9
        )
        assert have["test"]["agent"]["sharpe"] == pytest.approx(
            want["test"]["agent"]["sharpe"], rel=1e-9
        )


@pytest.mark.slow
def test_a_killed_group_resumes_to_the_same_step_counts(tmp_path: Path) -> None:
    import math
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers.datasets import write_csv
    from tests.helpers.walk_forward import LEARNABLE, ar1_frames, bars_needed, learnable_config

    timesteps, rollout = 6144, 2048  # killed after 2 rollouts, resumed for the third
    config = learnable_config()
    dataset = write_csv(tmp_path / "dataset", ar1_frames(bars_needed(config), 2, 0.3, seed=4))
    entry = Path(__file__).resolve().parents[1] / "training" / "train_walk_forward.py"
    settings = [f"--set={item}" for item in [*LEARNABLE, f"data.cache_dir={tmp_path / 'cache'}"]]
    command = [
        sys.executable, str(entry), "--data", str(dataset), *settings, "--folds", "1",
        "--ensemble", "2", "--timesteps", str(timesteps), "--output", str(tmp_path / "runs"),
        "--no-progress", "--set=hardware.members_concurrent=1",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        found = list((tmp_path / "runs").glob("*/folds/fold_00/member_01/checkpoints/state.json"))
        if found and json.loads(found[0].read_text())["timesteps"] >= 2 * rollout:
            state = found[0]
            break
        time.sleep(0.05)
    assert state is not None, process.communicate()
    run_dir = state.parents[4]
    assert json.loads(state.read_text())["timesteps"] < timesteps  # killed mid-training
    group = json.loads((run_dir / "folds/fold_00/group_00/progress.json").read_text())["pid"]
    os.kill(group, signal.SIGKILL)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    resumed = subprocess.run(
        [sys.executable, str(entry), "--resume", str(run_dir), "--no-progress"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    expected = math.ceil(timesteps / rollout) * rollout
    for member in range(2):
        folder = run_dir / "folds" / "fold_00" / f"member_{member:02d}"
        result = json.loads((folder / "result.json").read_text())
        assert result["timesteps"] == expected
        steps = [e["timesteps"] for e in result["evaluations"]]
        assert steps == sorted(set(steps)) and steps[-1] == expected
    assert (run_dir / "report.md").exists()


def test_a_preempted_group_commits_every_member_then_resumes_to_the_same_steps(
    tmp_path: Path,
) -> None:
    from training.run.job import Hooks

    run = small_run(tmp_path, 2, 8192)
    preemption = PreemptAfter(2 * 2 * 2048)  # two rollouts of each of the two members
    with pytest.raises(Requeued):
        run_group(run.jobs, Hooks(advance=preemption.advance, preemption=preemption))
    for job in run.jobs:
        state = TrainingState.load(job.files.state)
        assert state.preempted_at == [state.timesteps] and 0 < state.timesteps < 8192
        assert not job.files.result.exists()
    run_group(run.jobs, NO_HOOKS)
    for job in run.jobs:
        result = json.loads(job.files.result.read_text())
        assert result["timesteps"] == 8192 and result["preempted_at"]
        steps = [e["timesteps"] for e in result["evaluations"]]
        assert steps == sorted(set(steps)) and steps[-1] == 8192


def test_a_member_in_a_group_takes_the_actions_and_minibatches_it_takes_alone(
    tmp_path: Path,
) -> None:
    """Two rollout + update iterations: member 0 trained in a group of two and trained alone by
    SB3's learn() collect the same second rollout and end with the same weights (docs/population.md)."""
    from core.evaluation.judge import annualisation_of
    from training.member.member_training import _train, run_to_end
    from training.population.loop import train_members

    alone, grouped = (small_run(tmp_path / name, 2, 4096) for name in ("alone", "group"))
    job = alone.jobs[0]
    store = FeatureStore.attach(job.store_path)
    config, run = member_configs(job, store)
    annual = annualisation_of(store, config)
    model, _ = run_to_end(_train(job, config, run, store, annual, job.files, NO_HOOKS))
    store = FeatureStore.attach(grouped.jobs[0].store_path)
    members = train_members(grouped.jobs, store, annual, NO_HOOKS)
    together = members[0].model
    assert together.num_timesteps == model.num_timesteps == 4096
    assert_close(
        {"actions": torch.from_numpy(together.rollout_buffer.actions)},
        {"actions": torch.from_numpy(model.rollout_buffer.actions)},
    )
    assert_close(dict(together.policy.state_dict()), dict(model.policy.state_dict()))
