"""Sweeps: the search space from config, storages, a global trial budget across workers, a killed
worker's trial retried, failing trials that stop with their reason, and the sweep's files."""

from __future__ import annotations

import csv
import json
import os
import signal
import stat
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from hypothesis import given
from hypothesis import strategies as st
from optuna.storages import RetryHeartbeatStaleTrialCallback

from core.config import TuningParam, load_config
from core.errors import UserError
from tests.conftest import ENTRY, PYTHON, REPO_ROOT
from tests.helpers.datasets import write_csv
from tests.helpers.walk_forward import LEARNABLE, ar1_frames, bars_needed, learnable_config
from training.tuning.space import check_space, overrides, suggest
from training.tuning.study import open_storage, pruner_of

POSTGRES_SCRIPT = REPO_ROOT / "scripts" / "postgres_server.sh"
PASSWORD = "s3cret-PW"


# The space ----------------------------------------------------------------------------------------
@given(st.integers(0, 10_000))
def test_suggested_values_respect_each_distribution(seed: int) -> None:
    space = {
        "ppo.ent_coef": TuningParam(type="float", low=1e-4, high=0.05, log=True),
        "ppo.n_epochs": TuningParam(type="int", low=1, high=20),
        "policy.extractor": TuningParam(type="categorical", choices=["flat", "shared_asset"]),
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    values = suggest(study.ask(), space)
    assert 1e-4 <= values["ppo.ent_coef"] <= 0.05
    assert isinstance(values["ppo.n_epochs"], int) and 1 <= values["ppo.n_epochs"] <= 20
    config = load_config(overrides=overrides(values))
    assert config.ppo.ent_coef == values["ppo.ent_coef"]
    assert config.ppo.n_epochs == values["ppo.n_epochs"]
    assert config.policy.extractor == values["policy.extractor"]


def test_a_space_is_checked_against_the_config_with_the_key_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"tuning\.space"):
        load_config(
            overrides=["tuning.space={ppo.ent_coef: {type: float, low: 0, high: 1, log: true}}"]
        )
    with pytest.raises(UserError, match=r"SECTION\.KEY"):
        load_config(overrides=["tuning.space={ent_coef: {type: float, low: 0.1, high: 1}}"])
    with pytest.raises(UserError, match="low < high"):
        load_config(overrides=["tuning.space={ppo.ent_coef: {type: float, low: 1, high: 0.1}}"])
    bad = {"ppo.ent_coef": TuningParam(type="float", low=0.5, high=5.0)}  # above its max of 1
    with pytest.raises(UserError, match=r"tuning.space.ppo.ent_coef: the value 5.0"):
        check_space([], [], bad)
    unknown = {"ppo.ent_cof": TuningParam(type="float", low=0.1, high=0.5)}
    with pytest.raises(UserError, match="ent_coef"):  # did you mean
        check_space([], [], unknown)
    with pytest.raises(UserError, match="nothing to tune"):
        check_space([], [], {})


def test_sqlite_is_refused_for_parallel_workers_and_the_journal_is_the_default(
    tmp_path: Path,
) -> None:
    with pytest.raises(UserError, match="SQLite locks the whole database"):
        open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "journal.log", 2)
    assert open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "j.log", 1) is not None
    journal = open_storage(None, tmp_path / "tuning" / "journal.log", 4)
    assert type(journal).__name__ == "JournalStorage"
    with pytest.raises(UserError, match="cannot open the study storage"):
        open_storage("postgresql://nobody@127.0.0.1:1/none", tmp_path / "j.log", 2)


def test_the_pruner_is_chosen_by_config(default_config) -> None:
    def tuned(name: str) -> object:
        tuning = default_config.tuning.model_copy(update={"pruner": name})
        return pruner_of(tuning)

    assert isinstance(tuned("wilcoxon"), optuna.pruners.WilcoxonPruner)
    assert isinstance(tuned("median"), optuna.pruners.MedianPruner)
    assert isinstance(tuned("none"), optuna.pruners.NopPruner)


def test_a_sweep_folder_is_not_resumed_as_a_training_run(tmp_path: Path) -> None:
    from training.train_walk_forward import main

    (tmp_path / "tuning").mkdir()
    (tmp_path / "config.yaml").write_text("{}\n")
    assert main(["--resume", str(tmp_path)]) == 2


# Sweeps through the command line ------------------------------------------------------------------
def _sweep(folder: Path, *extra: str, wait: bool = True) -> subprocess.Popen:
    config = learnable_config("walk_forward.max_folds=1")
    dataset = folder / "dataset"
    if not dataset.exists():
        write_csv(dataset, ar1_frames(bars_needed(config), 2, 0.3, seed=5))
    sets = [*LEARNABLE, "walk_forward.max_folds=1", "tuning.seeds_per_trial=2",
            "launcher.dead_after_s=20"]  # fmt: skip
    # 4,096 steps a member: two rollouts, one validation (a pruning report): the sweep's plumbing
    command = [PYTHON, str(ENTRY), "--tune", "--data", str(dataset), "--timesteps", "4096",
               "--output", str(folder / "runs"), "--no-progress"]  # fmt: skip
    for item in sets:
        command += ["--set", item]
    command += extra  # after the helper's settings: a test's --set wins
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT
    )
    if wait:
        process.communicate(timeout=900)
    return process


def _kill_worker_mid_trial(runs: Path) -> int:
    """SIGKILL worker 0 once it trains (its batch's trials running); its pid. Once a batch is
    told the worker says so ("between trials"), so a kill here always lands inside trials."""
    deadline = time.time() + 300
    while time.time() < deadline:
        for progress in runs.glob("*/tuning/workers/worker_00/progress.json"):
            try:
                beat = json.loads(progress.read_text())
            except ValueError:
                continue
            if beat["phase"] == "training":  # its batch is asked and training: running trials
                os.kill(beat["pid"], signal.SIGKILL)
                return int(beat["pid"])
        time.sleep(0.1)
    raise AssertionError("worker 0 never started training")


def _trials(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "tuning" / "trials.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
@pytest.mark.every_cpu  # two sweep workers: the plan gives one a CPU
def test_two_workers_share_one_budget_and_write_the_sweeps_results(tmp_path: Path) -> None:
    process = _sweep(tmp_path, "--workers", "2", "--n-trials", "5", wait=False)
    out, _ = process.communicate(timeout=900)
    assert process.returncode == 0, out[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    trials = _trials(run_dir)
    ended = [t for t in trials if t["state"] in ("COMPLETE", "PRUNED")]
    assert len(ended) == 5, trials  # the budget is the study's, not each worker's
    assert {t["worker"] for t in ended} == {"0", "1"}  # both workers took trials
    summary = json.loads((run_dir / "tuning" / "tuning.json").read_text())
    assert summary["trials"] == 5 and 0 <= summary["best"]["dsr"] <= 1
    best = load_config([run_dir / "tuning" / "best_params.yaml"])
    assert best.ppo.ent_coef == pytest.approx(summary["best"]["params"]["ppo.ent_coef"])
    assert (run_dir / "tuning" / "plots" / "history.png").exists()
    assert "Best trial" in (run_dir / "tuning" / "tuning.md").read_text()
    assert "Deflated Sharpe Ratio" in out
    # The sweep never walked a test window: no trial member has test tracks or a result.
    trial_files = list((run_dir / "tuning" / "trials").rglob("*"))
    assert trial_files and not [
        p for p in trial_files if p.name in ("test_tracks.npz", "result.json")
    ]
    # A sweep keeps its trials' numbers, not their weights: no checkpoint is left behind.
    assert [p for p in trial_files if p.suffix == ".zip"] == []
    assert all(p.name == "state.json" for p in trial_files if p.parent.name == "checkpoints")


def _retried_once(trials: list[dict[str, str]], died: list[dict[str, str]]) -> None:
    """Every trial of the killed worker's batch (one population group) ran again, once."""
    assert died and len({t["group"] for t in died}) == 1, trials
    for dead in died:
        retried = [t for t in trials if t["retry of"] == dead["trial"]]
        assert len(retried) == 1 and retried[0]["state"] in ("COMPLETE", "PRUNED"), trials


@pytest.mark.slow
def test_a_killed_worker_loses_only_its_batch_which_is_run_again(tmp_path: Path) -> None:
    """2 workers, 4 trials: each worker's batch is 2 trials trained as one group."""
    process = _sweep(tmp_path, "--workers", "2", "--n-trials", "4", wait=False)
    runs = tmp_path / "runs"
    _kill_worker_mid_trial(runs)
    out, _ = process.communicate(timeout=900)
    assert process.returncode == 0, out[-3000:]
    assert "2 trial(s) at a time as one population group of up to 4 members" in out
    (run_dir,) = runs.iterdir()
    trials = _trials(run_dir)
    died = [t for t in trials if t["reason"] == "its worker died"]
    assert len(died) == 2, trials
    _retried_once(trials, died)
    assert sum(t["state"] in ("COMPLETE", "PRUNED") for t in trials) == 4


@pytest.mark.slow
@pytest.mark.parametrize(("learner", "failed"), [("separate", 3), ("population", 8)])
def test_trials_that_keep_failing_stop_the_sweep_with_their_reason(
    tmp_path: Path, learner: str, failed: int
) -> None:
    """One trial after another (separate), or a batch of 8 at once (population groups)."""
    # A valid config that cannot train: a 4,096-bar window needs more bars before the train
    # window than the data has (the env refuses it when a trial builds it).
    space = "tuning.space={env.window: {type: categorical, choices: [4096]}}"
    process = _sweep(tmp_path, "--n-trials", "10", "--set", space, "--set",
                     "launcher.max_retries=0", "--set", f"ensemble.learner={learner}",
                     wait=False)  # fmt: skip
    out, _ = process.communicate(timeout=900)
    assert process.returncode == 1, out[-3000:]
    assert f"{failed} trials in a row failed" in out and "an observation needs" in out, out[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    trials = _trials(run_dir)
    assert [t["state"] for t in trials] == ["FAIL"] * failed
    assert all(t["reason"] for t in trials)
    assert "failed" in (run_dir / "tuning" / "tuning.md").read_text()


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A real PostgreSQL server on localhost (scripts/postgres_server.sh), torn down after."""
    up = subprocess.run([str(POSTGRES_SCRIPT), "up"], capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    exported = [line for line in up.stdout.splitlines() if line.startswith("export ")]
    yield exported[-1].split("=", 1)[1]
    subprocess.run([str(POSTGRES_SCRIPT), "down"], capture_output=True, timeout=120)


@pytest.mark.slow
@pytest.mark.postgres
def test_on_postgresql_a_killed_workers_batch_is_retried_and_the_budget_is_exact(
    tmp_path: Path, postgres: str
) -> None:
    # The server trusts localhost, so a password in the URL is accepted: it must stay secret.
    with_password = postgres.replace("://postgres@", f"://postgres:{PASSWORD}@", 1)
    process = _sweep(
        tmp_path, "--workers", "2", "--n-trials", "4", "--storage", with_password,
        "--study-name", "killed-worker", "--set", "tuning.heartbeat_s=1",
        "--set", "tuning.grace_s=4", wait=False,
    )  # fmt: skip
    killed = _kill_worker_mid_trial(tmp_path / "runs")
    (run_dir,) = (tmp_path / "runs").iterdir()
    secret = run_dir / "tuning" / "storage.url"  # how the workers got the URL: 0600
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    out, _ = process.communicate(timeout=900)
    assert process.returncode == 0, out[-3000:]
    assert PASSWORD not in out and "postgres:***@127.0.0.1" in (run_dir / "command.txt").read_text()
    assert not secret.exists()  # removed once the workers are done
    assert [
        p for p in run_dir.rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()
    ] == []
    for folder in (run_dir, run_dir / "launcher"):  # submitit's pickles and logs: private too
        assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0
    trials = _trials(run_dir)
    died = [t for t in trials if t["state"] == "FAIL"]
    assert len(died) == 2 and {t["reason"] for t in died} == {"its worker died"}, trials
    assert {t["worker"] for t in died} == {"0"} and killed
    assert sum(t["state"] in ("COMPLETE", "PRUNED") for t in trials) == 4  # exactly the budget
    study = optuna.load_study(study_name="killed-worker", storage=postgres)
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials) == 4
    # Each dead trial is enqueued again once by Optuna's heartbeat retry. A worker may sample a
    # fresh trial between the two enqueues; the late retry is then over budget, given way to.
    with warnings.catch_warnings():  # experimental in Optuna, which the project pins
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retries = [RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in study.trials]
    assert sorted(n for n in retries if n is not None) == sorted(int(t["trial"]) for t in died)
    assert "Best trial" in (run_dir / "tuning" / "tuning.md").read_text()


@pytest.mark.slow
def test_then_train_fits_the_best_params_on_train_and_validation_and_counts_the_sweep(
    tmp_path: Path,
) -> None:
    process = _sweep(tmp_path, "--n-trials", "2", "--then-train", "--ensemble", "2", wait=False)
    out, _ = process.communicate(timeout=900)
    assert process.returncode == 0, out[-3000:]
    sweep_dir, final_dir = sorted((tmp_path / "runs").iterdir())  # the final run is named -final
    assert final_dir.name.endswith("-final")
    best = json.loads((sweep_dir / "tuning" / "tuning.json").read_text())["best"]
    final = load_config([final_dir / "config.yaml"])
    assert final.ppo.ent_coef == pytest.approx(best["params"]["ppo.ent_coef"])
    assert final.ensemble.size == 2 and final.training.select == "last"
    swept = json.loads((sweep_dir / "folds.json").read_text())[0]
    trained = json.loads((final_dir / "folds.json").read_text())[0]
    assert trained["train"]["first"] == swept["train"]["first"]
    assert trained["train"]["last"] == swept["validation"]["last"]  # train + validation
    assert trained["test"] == swept["test"]  # the windows the sweep never read
    metrics = json.loads((final_dir / "metrics.json").read_text())
    evaluations = sum(
        len(json.loads(p.read_text())["evaluations"]) for p in final_dir.rglob("result.json")
    )
    assert metrics["n_trials"] == evaluations + 2 and metrics["sweep"]["trials"] == 2
    assert "trial(s) of the sweep" in (final_dir / "report.md").read_text()


# Collapsed trials -----------------------------------------------------------------------------------
def finished_trial(value: float, trades: list[int], ent_coef: float) -> optuna.trial.FrozenTrial:
    """A complete trial as the objective records it: its members' trades in validation."""
    return optuna.trial.create_trial(
        params={"ppo.ent_coef": ent_coef},
        distributions={"ppo.ent_coef": optuna.distributions.FloatDistribution(1e-4, 0.05)},
        value=value,
        user_attrs={
            "instance_sharpes": [value] * len(trades),
            "instance_trades": trades,
            "sharpe_per_bar": value / 90,
            "bars": 4_000,
            "skew": 0.0,
            "kurtosis": 3.0,
        },
    )


def test_a_sweep_whose_every_trial_collapsed_names_no_winner(tmp_path: Path) -> None:
    from training.run.files import RunFiles
    from training.tuning.results import write_results

    files = RunFiles(tmp_path)
    files.tuning.mkdir()
    files.best_params.write_text("ppo: {ent_coef: 0.01}\n")  # left by an earlier write
    study = optuna.create_study(direction="maximize", study_name="flat")
    for ent_coef in (0.001, 0.01, 0.02):
        study.add_trial(finished_trial(0.0, [0, 0], ent_coef))
    summary = write_results(tmp_path, study, 8_766)
    assert summary["best"] is None and summary["collapsed"] == [0, 1, 2]
    assert not files.best_params.exists()
    assert "No winner: every one of the 3 complete trial(s) collapsed" in (
        files.tuning_summary.read_text()
    )
    # one trial that traded, even at a negative Sharpe, is the winner over the flat ones
    study.add_trial(finished_trial(-0.4, [12, 3], 0.04))
    summary = write_results(tmp_path, study, 8_766)
    assert summary["best"]["trial"] == 3 and files.best_params.exists()
    assert "3 trial(s) collapsed" in files.tuning_summary.read_text()


@pytest.mark.slow
def test_trials_trained_as_one_population_group_score_as_separate_processes(
    tmp_path: Path,
) -> None:
    """Same sampler seed, same trials: one batch of 3 trials x 2 seeds as one group scores each
    trial as the separate learner's one process per member does (the group is exact)."""
    found = {}
    for learner in ("separate", "population"):
        process = _sweep(tmp_path / learner, "--n-trials", "3",
                         "--set", f"ensemble.learner={learner}", "--set", "tuning.pruner=none",
                         wait=False)  # fmt: skip
        out, _ = process.communicate(timeout=900)
        assert process.returncode == 0, out[-3000:]
        (run_dir,) = (tmp_path / learner / "runs").iterdir()
        found[learner] = _trials(run_dir)
    grouped = found["population"]
    assert "3 trial(s) at a time as one population group of up to 6 members" in out
    assert {t["group"] for t in grouped} == {"0"}  # one group: the batch's first trial
    assert [t["group"] for t in found["separate"]] == ["0", "1", "2"]
    for alone, together in zip(found["separate"], grouped, strict=True):
        assert alone["param ppo.ent_coef"] == together["param ppo.ent_coef"]
        assert float(together["value"]) == pytest.approx(float(alone["value"]), rel=1e-4)


@pytest.mark.slow
def test_a_pbt_sweep_copies_between_trials_records_each_copy_and_counts_it(
    tmp_path: Path,
) -> None:
    process = _sweep(tmp_path, "--n-trials", "4", "--set", "ensemble.learner=population",
                     "--set", "tuning.schedule=pbt", "--set", "training.eval_every_steps=1024",
                     "--set", "tuning.pruner=none", "--set", "tuning.pbt.quantile=0.5",
                     wait=False)  # fmt: skip
    out, _ = process.communicate(timeout=900)
    assert process.returncode == 0, out[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    with open(run_dir / "tuning" / "pbt_lineage.csv") as handle:
        lineage = list(csv.DictReader(handle))
    # a rollout is 2,048 steps: validations at 2,048 while training (4,096 is the end), and the
    # bottom half (2 of 4 trials) copies the top half
    assert [int(row["interval"]) for row in lineage] == [2048, 2048]
    for row in lineage:
        assert row["event"] == "exploit" and row["trial"] != row["copied_from"]
        assert float(row["score"]) <= float(row["copied_score"])
        before, after = json.loads(row["values_before"]), json.loads(row["values_after"])
        assert set(before) == set(after) == {"reward.reward_scale", "ppo.ent_coef"}
    summary = json.loads((run_dir / "tuning" / "tuning.json").read_text())
    assert summary["pbt_copies"] == 2 and summary["evaluations"] == summary["trials"] + 2
    assert "counting all 6 evaluations" in (run_dir / "tuning" / "tuning.md").read_text()
    copies = sum(int(t["pbt copies"] or 0) for t in _trials(run_dir))
    assert copies == 2
    assert "PBT" in (run_dir / "tuning" / "best_params.yaml").read_text() or not any(
        int(t["pbt copies"] or 0) for t in _trials(run_dir) if t["trial"] == str(
            summary["best"]["trial"])
    )  # fmt: skip
