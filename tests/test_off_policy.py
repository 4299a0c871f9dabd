"""SAC and TQC through the same launcher: settings that do not fit are refused with a fix, the
plan sizes the replay buffer and refuses one that does not fit, and a tiny ensemble of each
trains through folds and report with checkpoints the plain libraries load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sb3_contrib import TQC
from stable_baselines3 import SAC

from core.algorithms import stored_transitions, transition_bytes
from core.config import load_config
from core.errors import UserError
from core.hardware.planner import plan
from tests.conftest import machine
from tests.test_replay import cli
from training.run.files import RunFiles


@pytest.mark.parametrize(
    "overrides, says",
    [
        (["training.algorithm=dqn"], "expected one of 'ppo', 'sac', 'tqc'"),
        (["training.algorithm=sac", "sac.buffer_size=0"], "holds nothing to learn from"),
        (["tqc.use_sde=true"], "fix: set training.algorithm=tqc, or tqc.use_sde=false"),
        (["training.algorithm=sac", "ppo.use_sde=true"], "set sac.use_sde=true"),
        (["training.algorithm=tqc", "tqc.learning_starts=10000000"], "it would never learn"),
        (["training.algorithm=sac", "policy.extractor=lstm"], "only RecurrentPPO trains"),
        (["training.algorithm=tqc", "ensemble.mode=fedavg"], "ensemble.mode=independent"),
        (["training.algorithm=tqc", "tqc.n_quantiles=5", "tqc.top_quantiles_to_drop_per_net=5"],
         "top_quantiles_to_drop_per_net"),
        (["training.algorithm=sac", "sac.ent_coef=warm"], "ent_coef"),
    ],
)  # fmt: skip
def test_settings_the_algorithm_cannot_use_are_refused_with_a_fix(
    overrides: list[str], says: str
) -> None:
    with pytest.raises(UserError, match="invalid configuration") as refused:
        load_config(overrides=overrides)
    assert says in str(refused.value)


def test_a_replay_buffer_beyond_memory_is_refused_naming_the_size_that_fits() -> None:
    config = load_config(
        overrides=["training.algorithm=sac", "ppo.total_timesteps=400000000",
                   "sac.buffer_size=400000000"]
    )  # fmt: skip
    with pytest.raises(UserError, match="most of it the replay buffer") as refused:
        plan(machine(8, memory_gb=16.0), config, 2)
    message = str(refused.value)
    assert "GB per member" in message and "fix: set sac.buffer_size to at most" in message
    fits = int(message.split("sac.buffer_size to at most ")[1].split(",", 99)[0].replace(",", ""))
    assert fits > 0
    small = load_config(overrides=["training.algorithm=sac", "sac.buffer_size=100000"])
    result = plan(machine(8, memory_gb=16.0), small, 2)
    assert result.learner == "separate"
    assert "SAC members train separate" in result.decisions["learner"].why
    assert "GB per member" in result.decisions["replay_buffer"].why


@given(
    st.integers(1, 10**7), st.integers(1, 10**7), st.integers(1, 256), st.integers(1, 5000),
    st.integers(1, 16),
)  # fmt: skip
def test_the_buffer_holds_at_most_its_size_and_never_more_rows_than_the_budget_fills(
    size: int, budget: int, n_envs: int, obs: int, action: int
) -> None:
    section = load_config(overrides=[f"sac.buffer_size={size}"]).sac
    stored = stored_transitions(section, budget, n_envs)
    assert stored % n_envs == 0 and stored >= n_envs
    assert stored <= max(size, n_envs) and stored < budget + 2 * n_envs
    assert transition_bytes(obs, action) == (2 * obs + action + 3) * 4


RUN = (
    "ensemble.size=2",
    "walk_forward.max_folds=1",
    "walk_forward.validation_months=1",  # plumbing: short walks (SAC / TQC act through predict)
    "walk_forward.test_months=1",
    "ppo.total_timesteps=768",
    "training.eval_every_steps=384",
)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm, library", [("sac", SAC), ("tqc", TQC)])
def test_an_off_policy_ensemble_trains_through_the_launcher_and_loads_with_its_library(
    algorithm: str, library: type, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    sets = [*RUN, f"training.algorithm={algorithm}", f"{algorithm}.learning_starts=128",
            f"{algorithm}.batch_size=64"]  # fmt: skip
    done = cli("--preset", "quick", "--output", str(out), *[a for s in sets for a in ("--set", s)])
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = out.iterdir()
    assert f"768 {algorithm.upper()} steps each" in done.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["strategies"]["agent"]["trades"] >= 0 and "constant_positions" in metrics
    assert (run_dir / "report.md").is_file()
    for member in (0, 1):
        checkpoints = RunFiles(run_dir).job(0, member).folder / "checkpoints"
        (best,) = checkpoints.glob("best-*.zip")
        model = library.load(best, device="cpu")  # the plain library, no Ploutos code
        assert type(model) is library and model.num_timesteps >= 384
    replay = tmp_path / "replay"
    again = cli("--evaluate", str(run_dir), "--window", "test", "--output", str(replay))
    assert again.returncode == 0, again.stderr[-3000:]
    assert (replay / "metrics.json").read_text() == (run_dir / "metrics.json").read_text()
    predicted = cli("--predict", str(run_dir), "--json")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
