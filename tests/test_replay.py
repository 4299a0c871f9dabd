"""After the report: a finished run's agents replayed. `--evaluate --window test` on the run's own
data gives its metrics.json; `--predict` on the sample cut at a test bar gives the decision the
test walk recorded there (each member, the members' ensemble, the fused model); a forward test
reads no bar after its data's cut; bad inputs are refused with what, where and the fix."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import UserError
from tests.conftest import ENTRY, PYTHON, REPO_ROOT
from training.replay.evaluate import Request, evaluate
from training.replay.predict import predict
from training.run.files import RunFiles
from training.run.tracks import load_tracks

pytestmark = pytest.mark.slow

# A fedavg run has all three kinds of test track: members alone, their ensemble, the fused model.
RUN_SETTINGS = (
    "ensemble.size=2",
    "ensemble.mode=fedavg",
    # one SB3 model a member: a population group walks its members' tests batched (vmapped),
    # which a single model's replay matches to float rounding (5e-8), not bit for bit
    "ensemble.learner=separate",
    "ppo.total_timesteps=4096",
    "walk_forward.max_folds=2",
    "training.eval_every_steps=2048",
    "walk_forward.validation_months=3",  # short windows: the walks check plumbing and exactness
    "walk_forward.test_months=2",
)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, str(ENTRY), "--no-progress", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=900,
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    sets = [arg for setting in RUN_SETTINGS for arg in ("--set", setting)]
    done = cli("--preset", "quick", "--output", str(out), *sets)
    assert done.returncode == 0, done.stderr[-3000:]
    (found,) = out.iterdir()
    return found


def sample_dir(run: Path) -> Path:
    """The generated sample the run read (its store's meta.json names it)."""
    store = Path(json.loads((run / "jobs.json").read_text())["store"])
    return Path(json.loads((store / "meta.json").read_text())["dataset"])


def cut_copy(source: Path, folder: Path, last: int, drop: str | None = None) -> Path:
    """The dataset with every bar after `last` (UTC ns) removed: what a user had at that close."""
    folder.mkdir(parents=True)
    for path in sorted(source.glob("*.parquet")):
        if path.stem == drop:
            continue
        frame = pd.read_parquet(path)
        frame[frame["timestamp"].astype("int64") <= last].to_parquet(folder / path.name)
    return folder


def test_evaluate_test_window_reproduces_the_runs_metrics(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "replay"
    done = cli("--evaluate", str(run_dir), "--window", "test", "--output", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "metrics.json").read_text() == (run_dir / "metrics.json").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # every bar of the test windows carries one return: none is lost at a fold boundary
    assert metrics["test_bars"] == metrics["coverage"]["tested_bars"]
    files, mine = RunFiles(run_dir), RunFiles(out)
    for fold in (0, 1):
        assert mine.fold_metrics(fold).read_text() == files.fold_metrics(fold).read_text()
    assert (out / "oos_returns.csv").read_text() == (run_dir / "oos_returns.csv").read_text()
    report = (out / "report.md").read_text()
    assert "each fold's own test window" in report and "positions.png" in report
    assert (out / "plots" / "positions.png").stat().st_size > 0
    assert "Fold 1's models (fused model)" in done.stdout


@pytest.mark.parametrize("fold, step", [(0, 0), (0, 777), (1, 1_301)])
def test_predict_on_data_cut_at_a_test_bar_is_the_recorded_decision(
    run_dir: Path, tmp_path: Path, fold: int, step: int
) -> None:
    files = RunFiles(run_dir)
    recorded = {
        "fused": load_tracks(files.fused_tracks(fold)),
        "ensemble": load_tracks(files.ensemble_tracks(fold)),
        **{m: load_tracks(files.job(fold, m).tracks) for m in (0, 1)},
    }
    decided = int(recorded["fused"]["decision_timestamp"][step])
    data = cut_copy(sample_dir(run_dir), tmp_path / "cut", decided)
    assets = json.loads((run_dir / "jobs.json").read_text())["assets"]
    for who, tracks in recorded.items():
        held = tracks["agent.held"][step]
        holding = [
            f"{asset}={float(held[a])!r}@{int(tracks['agent.bars_held'][step][a])}"
            for a, asset in enumerate(assets)
        ]
        drawdown = float(tracks["agent.drawdown"][step])
        decision = predict(run_dir, data, holding, drawdown, show_progress=False)
        assert decision["fold"] == fold
        key = {"fused": "weights", "ensemble": "ensemble_weights"}.get(who)
        got = decision[key] if key else decision["member_weights"][str(who)]
        np.testing.assert_array_equal(
            [got[a] for a in assets], tracks["agent.weights"][step], err_msg=str(who)
        )
        spread = decision["members"][assets[0]]
        assert spread["min"] <= spread["median"] <= spread["max"]


def test_forward_window_reads_no_bar_after_its_data(run_dir: Path, tmp_path: Path) -> None:
    """Forward from the run's last test bar, on the sample cut 500 bars later, equals the same
    window on the whole sample: the features crossing the run's last bar are causal."""
    last_test = int(load_tracks(RunFiles(run_dir).fused_tracks(1))["timestamp"][-1])
    cut_at = last_test + 500 * 3_600_000_000_000
    data = cut_copy(sample_dir(run_dir), tmp_path / "cut", cut_at)
    on_cut = evaluate(Request(run_dir, data, output=tmp_path / "cut-eval", show_progress=False))
    end = pd.Timestamp(cut_at, tz="UTC").isoformat()
    done = cli("--evaluate", str(run_dir), "--to", end, "--output", str(tmp_path / "whole"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Out of sample: none of these bars" in (tmp_path / "whole" / "report.md").read_text()
    whole = pd.read_csv(tmp_path / "whole" / "oos_returns.csv")
    cut = pd.read_csv(on_cut.folder / "oos_returns.csv")
    pd.testing.assert_frame_equal(cut, whole)
    assert len(cut) == 500 and cut["fold"].eq(1).all()
    assert pd.Timestamp(cut["timestamp"].iloc[0]).value > last_test
    record = on_cut.record
    assert not record["in_sample"] and record["folds"][0]["overlap"]["tested"] == 0


def test_forward_window_from_inside_training_is_said_loudly(run_dir: Path, tmp_path: Path) -> None:
    done = cli(
        "--evaluate", str(run_dir), "--fold", "1", "--from", "2019-06-01", "--to", "2019-07-01",
        "--output", str(tmp_path / "early"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "WARNING: IN SAMPLE" in done.stderr
    assert "WARNING: IN SAMPLE" in (tmp_path / "early" / "report.md").read_text()
    assert json.loads((tmp_path / "early" / "evaluation.json").read_text())["in_sample"]


def test_predict_json_from_the_command_line(run_dir: Path) -> None:
    done = cli("--predict", str(run_dir), "--json", "--holding", "SYN01=0.25@3")
    assert done.returncode == 0, done.stderr[-3000:]
    decision = json.loads(done.stdout)
    assert decision["fold"] == 1 and "after the run's test windows" in decision["fold_choice"]
    assert set(decision["weights"]) == {"SYN01", "SYN02", "SYN03", "SYN04"}
    assert decision["portfolio"]["weights"]["SYN01"] == 0.25
    assert decision["portfolio"]["bars_held"]["SYN01"] == 3
    assert decision["timestamp"] == "2024-01-01 17:00 UTC"


def refusal(call: object) -> str:
    with pytest.raises(UserError) as caught:
        call()  # type: ignore[operator]
    return str(caught.value)


def test_refusals_name_the_problem_and_the_fix(run_dir: Path, tmp_path: Path) -> None:
    sample = sample_dir(run_dir)
    end = int(load_tracks(RunFiles(run_dir).fused_tracks(1))["timestamp"][-1])
    fewer = cut_copy(sample, tmp_path / "three", end, drop="SYN04")
    message = refusal(lambda: predict(run_dir, fewer, [], show_progress=False))
    assert "missing: SYN04" in message and "fix:" in message
    two_hourly = tmp_path / "2h"
    two_hourly.mkdir()
    for path in sample.glob("*.parquet"):
        frame = pd.read_parquet(path)
        frame.iloc[::2].to_parquet(two_hourly / path.name)
    message = refusal(lambda: evaluate(Request(run_dir, two_hourly, show_progress=False)))
    assert "2h bars" in message and "1h bars" in message
    short = cut_copy(sample, tmp_path / "short", int(pd.Timestamp("2017-01-20", tz="UTC").value))
    message = refusal(lambda: predict(run_dir, short, [], show_progress=False))
    assert "warm up" in message and "bars of history are needed" in message
    message = refusal(
        lambda: evaluate(Request(run_dir, None, start=end + 10**18, show_progress=False))
    )
    assert "forward window has no bar" in message
    message = refusal(lambda: predict(run_dir, None, ["XYZ=0.5"], show_progress=False))
    assert "'XYZ' is not an asset of the run" in message
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.yaml", "config_inferred.yaml", "jobs.json", "folds.json"):
        shutil.copy(run_dir / name, unfinished / name)
    message = refusal(lambda: evaluate(Request(unfinished, None, show_progress=False)))
    assert "has no finished fold" in message and "--resume" in message
    done = cli("--evaluate", str(run_dir), "--holding", "SYN01=1")
    assert done.returncode == 2 and "--holding only apply to --predict" in done.stderr


@pytest.fixture(scope="module")
def population_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Members trained (and tested) together by the population learner: one stacked forward."""
    out = tmp_path_factory.mktemp("population")
    settings = ("ensemble.size=2", "ensemble.learner=population", "ppo.total_timesteps=2048",
                "walk_forward.max_folds=1", "training.eval_every_steps=2048",
                "walk_forward.validation_months=3", "walk_forward.test_months=2")  # fmt: skip
    sets = [arg for setting in settings for arg in ("--set", setting)]
    done = cli("--preset", "quick", "--output", str(out), *sets)
    assert done.returncode == 0, done.stderr[-3000:]
    (found,) = out.iterdir()
    assert list((found / "folds" / "fold_00").glob("group_*/group.json"))
    return found


def test_a_population_run_is_replayed_with_its_stacked_forward(
    population_run: Path, tmp_path: Path
) -> None:
    done = evaluate(
        Request(population_run, None, window="test", output=tmp_path / "r", show_progress=False)
    )
    assert (done.folder / "metrics.json").read_text() == (
        population_run / "metrics.json"
    ).read_text()
    member = load_tracks(RunFiles(population_run).job(0, 1).tracks)
    step = 1_000  # of about 1,460 test bars
    decided = int(member["decision_timestamp"][step])
    data = cut_copy(sample_dir(population_run), tmp_path / "cut", decided)
    assets = json.loads((population_run / "jobs.json").read_text())["assets"]
    held, bars = member["agent.held"][step], member["agent.bars_held"][step]
    holding = [f"{a}={float(held[i])!r}@{int(bars[i])}" for i, a in enumerate(assets)]
    decision = predict(
        population_run, data, holding, float(member["agent.drawdown"][step]), show_progress=False
    )
    got = decision["member_weights"]["1"]
    np.testing.assert_array_equal([got[a] for a in assets], member["agent.weights"][step])
