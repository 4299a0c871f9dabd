"""End to end: walk-forward training learns what can be learned and claims nothing else.

Small AR(1) markets with one return feature: a planted autocorrelation must be exploited out of
sample, an oracle feature (the next bar's return) must be exploited, and neither pure noise nor
the planted returns shuffled in time may be reported as a significant edge.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers.walk_forward import (
    ar1_frames,
    bars_needed,
    learnable_config,
    oracle_store,
    store_of,
    walk_forward,
)

pytestmark = pytest.mark.slow
CONFIG = learnable_config("ppo.total_timesteps=16384")
N_BARS = bars_needed(CONFIG)


def fold_metrics(summary: dict) -> list[dict]:
    folder = summary["run_dir"] / "folds"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("fold_*/metrics.json"))]


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("planted")
    store = store_of(folder, ar1_frames(N_BARS, 2, 0.3, seed=3), CONFIG)
    return walk_forward(folder, store, CONFIG)


def test_planted_signal_beats_buy_and_hold_out_of_sample(planted: dict) -> None:
    folds = fold_metrics(planted)
    assert len(folds) == 3
    beats = [f["agent"]["sharpe"] > f["buy_and_hold"]["sharpe"] for f in folds]
    assert sum(beats) >= 2, [(f["agent"]["sharpe"], f["buy_and_hold"]["sharpe"]) for f in folds]
    assert planted["folds_beating_buy_and_hold"] == sum(beats)
    assert planted["significant"], planted["strategies"]["agent"]
    assert "Significant out of sample" in (planted["run_dir"] / "report.md").read_text()


def test_run_folder_holds_everything_the_report_was_made_from(planted: dict) -> None:
    run_dir: Path = planted["run_dir"]
    for name in ("config.yaml", "plan.json", "command.txt", "versions.json", "folds.json",
                 "jobs.json", "metrics.json", "oos_returns.csv", "report.md"):  # fmt: skip
        assert (run_dir / name).stat().st_size > 0, name
    for name in ("equity", "drawdown", "fold_sharpe", "validation"):
        assert (run_dir / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    oos = pd.read_csv(run_dir / "oos_returns.csv")
    assert list(oos.columns) == [
        "timestamp", "fold", "agent_return", "cash_return", "buy_and_hold_return",
        "random_return", "ma_crossover_return",
    ]  # fmt: skip
    assert len(oos) == planted["test_bars"] and oos["timestamp"].is_monotonic_increasing
    assert sorted(oos["fold"].unique()) == [0, 1, 2] and (oos["cash_return"] == 0).all()
    # The stitched agent return compounds to the reported total return.
    total = float(np.prod(1 + oos["agent_return"]) - 1)
    assert total == pytest.approx(planted["strategies"]["agent"]["total_return"], rel=1e-6)
    jobs = json.loads((run_dir / "jobs.json").read_text())
    assert len(set(jobs["seeds"].values())) == 3
    report = (run_dir / "report.md").read_text()
    assert "8,766 bars/year" in report and "Deflated Sharpe Ratio" in report
    assert "![Out-of-sample equity vs baselines](plots/equity.png)" in report


def test_oracle_feature_is_exploited(planted: dict, tmp_path: Path) -> None:
    noise = store_of(tmp_path / "noise", ar1_frames(N_BARS, 2, 0.0, seed=5), CONFIG)
    store = oracle_store(noise, tmp_path / "oracle_store")
    summary = walk_forward(tmp_path, store, CONFIG)
    for fold in fold_metrics(summary):
        assert fold["agent"]["sharpe"] > 10, fold["agent"]
        assert fold["agent"]["total_return"] > fold["buy_and_hold"]["total_return"]
    assert summary["significant"]


def test_no_signal_is_not_called_significant(tmp_path: Path) -> None:
    store = store_of(tmp_path, ar1_frames(N_BARS, 2, 0.0, seed=5), CONFIG)
    summary = walk_forward(tmp_path, store, CONFIG)
    assert not summary["significant"], summary["strategies"]["agent"]
    assert "No significant edge" in (summary["run_dir"] / "report.md").read_text()


def test_permuted_returns_lose_the_edge(planted: dict, tmp_path: Path) -> None:
    frames = ar1_frames(N_BARS, 2, 0.3, seed=3, permute=True)
    summary = walk_forward(tmp_path, store_of(tmp_path, frames, CONFIG), CONFIG)
    assert not summary["significant"], summary["strategies"]["agent"]
    shuffled = summary["strategies"]["agent"]["sharpe"]
    assert shuffled < planted["strategies"]["agent"]["sharpe"] / 3


def test_tensorboard_gets_rollout_trade_and_validation_scalars(planted: dict) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = planted["run_dir"] / "folds" / "fold_00" / "member_00" / "logs"
    events = EventAccumulator(str(next(logs.glob("events.out.tfevents.*"))))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "time/fps", "rollout/reward_mean", "rollout/reward_clip_fraction", "rollout/action_std",
        "train/entropy_loss", "train/approx_kl", "train/explained_variance", "trades/1h",
        "validation/sharpe", "validation/entropy",
    } <= tags  # fmt: skip


def test_collapse_alarms_and_entropy_floor_reach_the_report(tmp_path: Path) -> None:
    config = learnable_config(
        "ppo.total_timesteps=8192",
        "walk_forward.max_folds=1",
        "training.eval_every_steps=2048",
        "training.min_action_std=10",  # every rollout is "collapsed" by these floors
        "training.min_entropy=10",
        "training.entropy_target=10",
        "training.ent_coef_max=0.0015",
    )
    store = store_of(tmp_path, ar1_frames(N_BARS, 2, 0.0, seed=6), config)
    summary = walk_forward(tmp_path, store, config)
    result = json.loads((summary["run_dir"] / "folds/fold_00/member_00/result.json").read_text())
    coefs = [e["ent_coef"] for e in result["evaluations"]]
    assert coefs == pytest.approx([0.0, 0.001, 0.0015, 0.0015])  # x1.5 each time, capped
    report = (summary["run_dir"] / "report.md").read_text()
    assert "## Warnings" in report
    assert "collapse: action spread" in report and "collapse: policy entropy" in report


def test_tracks_stuck_on_one_position_raise_the_alarm_in_the_report(
    planted: dict, tmp_path: Path
) -> None:
    import shutil

    from training.post.report import build_report
    from training.run.tracks import load_tracks

    assert planted["constant_positions"]["flagged"] == []  # a learner that reads its signal moves
    run_dir = shutil.copytree(planted["run_dir"], tmp_path / "constant")
    for path in run_dir.glob("folds/fold_*/**/*tracks.npz"):  # each fold's and member's walk
        arrays = load_tracks(path)
        arrays["agent.weights"] = np.tile([0.85, 0.0], (len(arrays["agent.weights"]), 1))
        np.savez(path, **arrays)
    summary = build_report(run_dir)
    flagged = [f["track"] for f in summary["constant_positions"]["flagged"]]
    assert flagged == ["fold 0 member 0", "fold 1 member 0", "fold 2 member 0", "the agent"]
    saved = json.loads((run_dir / "metrics.json").read_text())["constant_positions"]
    assert saved["threshold"] == 0.01 and saved["flagged"][-1]["mean"]["A0"] == pytest.approx(0.85)
    report = (run_dir / "report.md").read_text()
    assert "> **ALARM: the agent holds a constant position out of sample: +0.85 long A0" in report
    assert "evaluation.constant_position_std 0.01" in report and "ppo.ent_coef" in report
