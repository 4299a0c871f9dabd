"""The learner seam: one registry both learners sit in, what each refuses, the keys a group may
vary per member (and that a live member takes a new one), a pruned trial's members leaving a
group while the others train on, and PBT's copy of weights and Adam state."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from core.config import LearnerName, load_config
from core.errors import UserError
from tests.conftest import REPO_ROOT
from tests.helpers.launch import small_run
from training.learners.registry import LEARNERS
from training.population.member_values import shape_of, varies_per_member
from training.run.job import Hooks, LeaveTraining
from training.tuning.pbt import check_pbt, copy_member

SEAM = ("member", "population", "learners", "launcher")


def test_every_learner_name_has_one_entry_and_the_config_takes_only_those() -> None:
    assert set(LEARNERS) == set(get_args(LearnerName))
    assert all(name == learner.name for name, learner in LEARNERS.items())
    with pytest.raises(UserError, match=r"ensemble\.learner"):
        load_config(overrides=["ensemble.learner=grouped"])


def test_file_names_at_the_seam_are_unique() -> None:
    names: dict[str, list[str]] = {}
    for package in SEAM:
        for path in (REPO_ROOT / "training" / package).glob("*.py"):
            if path.name != "__init__.py":
                names.setdefault(path.name, []).append(package)
    assert {name: where for name, where in names.items() if len(where) > 1} == {}
    assert (REPO_ROOT / "training" / "population" / "__init__.py").exists()


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("ensemble.sync_optimizer=reset", "ensemble.sync_optimizer=reset"),
        ("policy.extractor=lstm", "policy.extractor=lstm"),
        ("ppo.use_sde=true", "ppo.use_sde"),
    ],
)
def test_the_population_learner_refuses_by_name_and_the_separate_one_does_not(
    override: str, named: str
) -> None:
    config = load_config(overrides=[override, "ensemble.mode=fedavg"])  # fedavg runs on both
    LEARNERS["separate"].refuse(config)
    with pytest.raises(UserError, match=r"ensemble\.learner=separate") as refused:
        LEARNERS["population"].refuse(config)
    assert str(refused.value).startswith(named)


@given(st.floats(1e-4, 0.1), st.floats(0.1, 100), st.sampled_from([64, 128, 256]), st.booleans())
def test_a_groups_shape_ignores_per_member_keys_only(
    ent_coef: float, scale: float, n_steps: int, lr: bool
) -> None:
    values = {"ppo.ent_coef": ent_coef, "reward.reward_scale": scale, "ppo.n_steps": n_steps}
    if lr:
        values["ppo.learning_rate"] = 1e-3
    assert shape_of(values) == shape_of({"ppo.n_steps": n_steps})
    assert shape_of(values) != shape_of({**values, "ppo.n_steps": n_steps * 2})
    assert varies_per_member("ppo.gae_lambda") and not varies_per_member("ppo.batch_size")
    assert not varies_per_member("env.cost_bps") and varies_per_member("reward.drawdown_penalty")


def test_pbt_needs_two_trials_a_group_and_says_how_to_get_them() -> None:
    tuning = load_config(overrides=["tuning.schedule=pbt"]).tuning
    check_pbt(tuning, 2, "population")
    with pytest.raises(UserError, match=r"at least 2 trials .*4 members") as refused:
        check_pbt(tuning, 1, "population")
    assert "tuning.trials_per_group" in str(refused.value)
    with pytest.raises(UserError, match="separate learner trains one trial at a time"):
        check_pbt(tuning, 1, "separate")
    check_pbt(load_config().tuning, 1, "separate")  # independent: any group size


def test_a_copied_member_has_the_sources_weights_and_adam_state_exactly() -> None:
    from core.policies.stacked import StackedPolicies
    from training.population.adam import StackedAdam

    class Params:  # the two attributes copy_member reads of a StackedPolicies
        def __init__(self) -> None:
            self.params = {"w": torch.randn(3, 4, 5), "b": torch.randn(3, 5)}

    stacked = Params()
    adam = StackedAdam.__new__(StackedAdam)
    adam.exp_avg = {name: torch.randn_like(v) for name, v in stacked.params.items()}
    adam.exp_avg_sq = {name: torch.rand_like(v) for name, v in stacked.params.items()}
    adam.steps = torch.tensor([3.0, 7.0, 11.0], dtype=torch.float64)
    untouched = {name: v[2].clone() for name, v in stacked.params.items()}
    copy_member(stacked, adam, 1, 0)
    for name, value in stacked.params.items():
        assert torch.equal(value[0], value[1]) and torch.equal(value[2], untouched[name])
        assert torch.equal(adam.exp_avg[name][0], adam.exp_avg[name][1])
        assert torch.equal(adam.exp_avg_sq[name][0], adam.exp_avg_sq[name][1])
    assert adam.steps.tolist() == [7.0, 7.0, 11.0]
    assert StackedPolicies  # the real class holds `params` the same way


@pytest.mark.slow
def test_a_pruned_trials_members_leave_the_group_and_the_others_train_to_the_end(
    tmp_path: Path,
) -> None:
    """Members 0 and 1 are one trial: 0's first validation prunes it, 1 leaves with it at the
    next rollout boundary; 2 and 3 (another trial) train all their steps."""
    run = small_run(tmp_path, 4, 6144)
    pruned: list[str] = []

    def prune(result: dict[str, float]) -> None:
        pruned.append("pruned at step 1")
        raise LeaveTraining(pruned[0])

    def over() -> str | None:
        return pruned[0] if pruned else None

    hooks = [Hooks(validated=prune, left=over), Hooks(left=over), Hooks(), Hooks()]
    trained = LEARNERS["population"].train_for_validation(run.jobs, Hooks(), hooks)
    assert [t.left for t in trained] == ["pruned at step 1"] * 2 + [None, None]
    assert all(t.error is None for t in trained)
    for t in trained[2:]:
        assert t.state is not None and t.state.finished and t.state.timesteps == 6144
        assert [e["timesteps"] for e in t.state.evaluations] == [2048, 4096, 6144]
    assert trained[1].state is not None and not trained[1].state.finished
    assert trained[1].state.timesteps < 6144  # it left early, untested and unfinished


def test_a_live_member_takes_new_per_member_values(tmp_path: Path) -> None:
    from core.envs.settings import env_settings
    from core.features.store import FeatureStore
    from training.member.checkpoints import TrainingState
    from training.member.member_build import member_model, member_vec_env
    from training.member.models import member_configs
    from training.population.member_values import set_live_value
    from training.run.job import NO_HOOKS

    run = small_run(tmp_path, 1, 2048)
    job = run.jobs[0]
    store = FeatureStore.attach(job.store_path)
    config, _ = member_configs(job, store)
    vec = member_vec_env(job, store, env_settings(config))
    model = member_model(job, config, store, vec, TrainingState(), NO_HOOKS)
    model._setup_learn(2048, None)
    for key, value in [("ppo.ent_coef", 0.037), ("ppo.vf_coef", 0.25), ("ppo.gamma", 0.95),
                       ("ppo.gae_lambda", 0.8), ("ppo.learning_rate", 1e-3),
                       ("ppo.clip_range", 0.1), ("reward.reward_scale", 7.0)]:  # fmt: skip
        set_live_value(model, key, value)
    assert model.ent_coef == 0.037 and model.vf_coef == 0.25
    assert model.gamma == model.rollout_buffer.gamma == 0.95
    assert model.rollout_buffer.gae_lambda == 0.8
    assert model.lr_schedule(0.5) == pytest.approx(1e-3) and model.clip_range(0.3) == 0.1
    assert model.env.venv.sim.reward_rules.scale == 7.0
    with pytest.raises(KeyError, match=r"ppo\.n_steps"):
        set_live_value(model, "ppo.n_steps", 128)
    vec.close()
    assert np.isfinite(model.ent_coef)


def _fake_group(scores: list[float], values: list[dict]) -> tuple[list, list, object, object]:
    """Two-seed trials as PbtGroup sees them: runs, members, stacked parameters and Adam."""
    from types import SimpleNamespace

    from core.envs.reward import RewardRules
    from training.tuning.objective import TrialRun

    rules = RewardRules(1.0, 1.0, 0.0, 0.0, (), 0.0)
    runs, members = [], []
    for number, (score, trial_values) in enumerate(zip(scores, values, strict=True)):
        folder = f"/trials/{number}"
        jobs = [SimpleNamespace(run_dir=folder, member=seed, fold=SimpleNamespace(index=0))
                for seed in range(2)]  # fmt: skip
        runs.append(TrialRun(SimpleNamespace(number=number), dict(trial_values), jobs))  # type: ignore[arg-type]
        for job in jobs:
            members.append(
                SimpleNamespace(
                    job=job, training=True,
                    model=SimpleNamespace(ent_coef=0.0, num_timesteps=0, env=SimpleNamespace(
                        venv=SimpleNamespace(sim=SimpleNamespace(reward_rules=rules)))),
                    state=SimpleNamespace(evaluations=[{"sharpe": score}]),
                    callback=SimpleNamespace(eval_every=100),
                )
            )  # fmt: skip
    size = len(members)
    stacked = SimpleNamespace(
        params={"w": torch.arange(size * 3, dtype=torch.float32).reshape(size, 3)},
        size=size, device=torch.device("cpu"), copy_to_members=lambda: None,
    )  # fmt: skip
    adam = SimpleNamespace(
        exp_avg={"w": torch.randn(size, 3)}, exp_avg_sq={"w": torch.rand(size, 3)},
        steps=torch.arange(size, dtype=torch.float64), save_to_members=lambda: None,
    )  # fmt: skip
    return runs, members, stacked, adam


def test_pbt_copies_the_top_trials_members_seed_for_seed_into_the_bottom_ones() -> None:
    from training.tuning.pbt import PbtGroup

    tuning = load_config(overrides=["tuning.schedule=pbt"]).tuning  # quantile 0.25
    values = [{"ppo.ent_coef": 0.01, "reward.reward_scale": 1.0}] * 4
    runs, members, stacked, adam = _fake_group([0.5, -1.0, 2.0, 1.0], values)
    for member in members:
        member.model.num_timesteps = 100
    group = PbtGroup(tuning, runs)
    group(members, stacked, adam)
    # 4 trials: the bottom one (trial 1, members 2 and 3) copies the top one (trial 2: 4 and 5)
    weights = stacked.params["w"]
    assert torch.equal(weights[2], weights[4]) and torch.equal(weights[3], weights[5])
    assert adam.steps.tolist() == [0, 1, 4, 5, 4, 5, 6, 7]
    (row,) = runs[1].lineage
    assert row["event"] == "exploit" and row["copied_from"] == 2 and runs[1].exploits == 1
    low, high = tuning.space["ppo.ent_coef"].low, tuning.space["ppo.ent_coef"].high
    assert low <= runs[1].values_now["ppo.ent_coef"] <= high
    assert (
        members[2].model.ent_coef == members[3].model.ent_coef == runs[1].values_now["ppo.ent_coef"]
    )
    group(members, stacked, adam)  # the same step count again: not the next interval yet
    assert len(runs[1].lineage) == 1


def test_a_diverged_pbt_member_is_replaced_by_the_best_finite_member_of_its_seed() -> None:
    from training.population.loop import _fail_non_finite
    from training.tuning.pbt import PbtGroup

    tuning = load_config(overrides=["tuning.schedule=pbt"]).tuning
    runs, members, stacked, adam = _fake_group([0.5, 3.0], [{"ppo.ent_coef": 0.02}] * 2)
    for member in members:
        member.error, member.config = None, None
    stacked.params["w"][1, 0] = float("nan")  # trial 0's second seed
    _fail_non_finite(members, stacked, adam, [0, 1, 2, 3], PbtGroup(tuning, runs).diverged)
    assert all(member.error is None for member in members)
    assert torch.equal(stacked.params["w"][1], stacked.params["w"][3])  # trial 1's seed 1
    (row,) = runs[0].lineage
    assert row["event"] == "diverged" and row["copied_from"] == 1 and row["member"] == 1


def test_trials_that_differ_in_a_shape_key_train_in_separate_groups() -> None:
    from types import SimpleNamespace

    from training.commands.sweep import _learner_line
    from training.tuning.objective import Objective, TrialRun

    objective = Objective.__new__(Objective)
    objective.learner = LEARNERS["population"]
    runs = [
        TrialRun(SimpleNamespace(number=n), {"ppo.ent_coef": 0.01 * (n + 1), "ppo.n_steps": steps}, [])  # type: ignore[arg-type]
        for n, steps in enumerate([64, 128, 64, 128, 64])
    ]  # fmt: skip
    groups = objective.groups(runs)
    assert [[run.trial.number for run in group] for group in groups] == [[0, 2, 4], [1, 3]]
    objective.learner = LEARNERS["separate"]
    assert [len(group) for group in objective.groups(runs)] == [1] * 5
    space = "tuning.space={ppo.ent_coef: {type: float, low: 0.001, high: 0.1}, ppo.n_steps: {type: categorical, choices: [64, 128]}}"
    line = _learner_line("population", 4, load_config(overrides=[space]).tuning)
    assert "4 trial(s) at a time" in line and "ppo.n_steps change(s) a group's shape" in line
    assert "ppo.ent_coef" not in line
