"""Federated averaging: exact averages, a file barrier that agrees on one list of participants
and does not wait forever, rounds that resume to the same weights, and a fused model that learns.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from training.fedavg.barrier import RoundBarrier, clear_left, mark_left, read_state

from core.errors import UserError
from core.hardware.planner import plan
from tests.conftest import machine
from tests.helpers.launch import Interference, kill, small_run, wait_for_steps
from training.fedavg.average import average, sync_weights
from training.launcher.settings import launch_settings
from training.member.checkpoints import TrainingState
from training.member.member_run import launch_members
from training.member.rounds import fresh_optimizer, round_ends
from training.post.ensemble import aggregate_run
from training.post.fuse import fuse_run
from training.post.report import build_report
from training.run.files import FedAvgFiles, RunFiles

REPO = Path(__file__).resolve().parents[1]
FEDAVG = ("ensemble.mode=fedavg", "ensemble.sync_steps=2048")


# Averages ---------------------------------------------------------------------------------------
finite32 = st.floats(-1e3, 1e3, width=32)


@given(
    st.lists(arrays(np.float32, (3, 2), elements=finite32), min_size=1, max_size=6),
    st.booleans(),
)
def test_the_average_is_numpys_mean_or_weighted_mean_and_stays_within_the_members(
    members: list[np.ndarray], weighted: bool
) -> None:
    states = [{"layer.weight": m, "log_std": m[0]} for m in members]
    shares = (
        sync_weights(list(range(len(members))), "validation", 2.0)
        if weighted
        else sync_weights([None] * len(members), "equal", 1.0)
    )
    fused = average(states, shares)
    stack = np.stack(members).astype(np.float64)
    expected = (
        np.average(stack, axis=0, weights=shares) if weighted else stack.mean(axis=0)
    ).astype(np.float32)
    assert np.array_equal(fused["layer.weight"], expected)
    assert fused["layer.weight"].dtype == np.float32
    assert np.all(fused["layer.weight"] >= stack.min(axis=0).astype(np.float32) - 1e-3)
    assert np.all(fused["layer.weight"] <= stack.max(axis=0).astype(np.float32) + 1e-3)


@given(st.lists(st.one_of(st.none(), st.floats(-50, 50)), min_size=1, max_size=8))
def test_validation_weights_are_a_softmax_of_the_finite_scores(scores: list) -> None:
    shares = np.array(sync_weights(scores, "validation", 0.5))
    assert shares.sum() == pytest.approx(1.0) and np.all(shares >= 0)
    finite = [s is not None for s in scores]
    if any(finite):
        assert np.all(shares[~np.array(finite)] == 0)
        best = int(np.argmax([s if s is not None else -np.inf for s in scores]))
        assert shares[best] == shares.max()
    else:
        assert np.allclose(shares, 1 / len(scores))


def test_a_different_network_cannot_be_averaged() -> None:
    with pytest.raises(ValueError, match="not the same network"):
        average([{"a": np.zeros(2)}, {"b": np.zeros(2)}], [0.5, 0.5])


@given(st.integers(1, 10**6), st.integers(1, 10**5), st.sampled_from([64, 512, 2048, 8192]))
def test_rounds_end_on_whole_rollouts_and_the_last_where_training_ends(
    timesteps: int, sync: int, rollout: int
) -> None:
    ends = round_ends(timesteps, sync, rollout)
    assert all(end % rollout == 0 for end in ends)
    assert ends == sorted(set(ends))
    assert ends[-1] == -(-timesteps // rollout) * rollout
    assert len(ends) == -(-ends[-1] // (-(-sync // rollout) * rollout))


# The barrier ------------------------------------------------------------------------------------
def _state(value: float) -> dict[str, np.ndarray]:
    return {"w": np.full((2, 2), value, np.float32), "b": np.array([value], np.float32)}


def _barriers(folder: Path, members: int, timeout_s: float = 60.0) -> list[RoundBarrier]:
    files = FedAvgFiles(folder)
    return [RoundBarrier(files, m, range(members), timeout_s) for m in range(members)]


def test_a_round_closes_when_every_member_is_there_and_all_take_one_average(
    tmp_path: Path,
) -> None:
    first, second, third = _barriers(tmp_path, 3)
    first.arrive(1, _state(1.0), 0.5, 2048)
    second.arrive(1, _state(2.0), 0.1, 2048)
    assert first.poll(1) is None and second.poll(1) is None
    third.arrive(1, _state(6.0), float("nan"), 2048)
    closed = third.poll(1)
    assert closed is not None and closed.participants == [0, 1, 2] and not closed.missing
    assert closed.closed_by == 2 and closed.reason == "every member arrived"
    assert first.poll(1) == closed == second.poll(1)
    fused = [b.fused(closed) for b in (first, second, third)]
    assert all(np.array_equal(f["w"], np.full((2, 2), 3.0, np.float32)) for f in fused)
    assert read_state(first.files.fused(1))[0]["b"][0] == 3.0


def test_a_late_member_does_not_hold_the_round_past_the_timeout(tmp_path: Path) -> None:
    first, second = _barriers(tmp_path, 2, timeout_s=0.3)
    first.arrive(1, _state(1.0), 0.0, 2048)
    assert first.poll(1) is None
    time.sleep(0.35)
    closed = first.poll(1)
    assert closed is not None and closed.participants == [0] and closed.missing == [1]
    assert "sync_timeout_s" in closed.reason and "member(s) 1 not there" in closed.reason
    # The late member finds the round closed without it and takes its average.
    second.arrive(1, _state(9.0), 0.0, 2048)
    assert second.poll(1) == closed
    assert np.array_equal(second.fused(closed)["w"], _state(1.0)["w"])


def test_a_member_that_left_is_not_waited_for(tmp_path: Path) -> None:
    first, _second = _barriers(tmp_path, 2)
    mark_left(first.files, 1, "failed after 1 attempt(s)")
    first.arrive(1, _state(4.0), 0.0, 2048)
    closed = first.poll(1)
    assert closed is not None and closed.participants == [0] and closed.missing == [1]
    clear_left(first.files, 1)  # launched again (--resume): waited for again
    first.arrive(2, _state(4.0), 0.0, 4096)
    assert first.poll(2) is None


def test_two_members_closing_at_once_agree_on_the_first_decision(tmp_path: Path) -> None:
    first, second = _barriers(tmp_path, 2, timeout_s=0.0)
    first.arrive(1, _state(1.0), 0.0, 2048)
    second.arrive(1, _state(2.0), 0.0, 2048)
    first._close(1, [0], "first")
    second._close(1, [0, 1], "second")  # loses: the round is already decided
    assert first.closed(1).reason == "first" and second.closed(1).participants == [0]
    assert not list(tmp_path.glob("round_0001/.*.tmp"))


def test_old_rounds_keep_their_average_but_drop_the_members_copies(tmp_path: Path) -> None:
    (only,) = _barriers(tmp_path, 1)
    for index in range(1, 5):
        only.arrive(index, _state(float(index)), 0.0, 2048 * index)
        only.fused(only.poll(index))
    assert [p.parent.name for p in sorted(tmp_path.glob("round_*/member_*.npz"))] == [
        "round_0003",
        "round_0004",
    ]
    assert len(list(tmp_path.glob("round_*/fused.npz"))) == 4


# The planner --------------------------------------------------------------------------------------
def test_fedavg_plans_every_member_of_a_fold_at_once(default_config) -> None:
    config = default_config.model_copy(
        update={"ensemble": default_config.ensemble.model_copy(update={"mode": "fedavg"})}
    )
    two_cpus = machine(2)
    resources = plan(two_cpus, config, 6)
    assert resources.members_concurrent == 6 and resources.torch_threads == 1
    assert any("fedavg" in reason and "share 2 CPU" in reason for reason in resources.reasons)
    fixed = config.model_copy(
        update={"hardware": config.hardware.model_copy(update={"members_concurrent": 2})}
    )
    with pytest.raises(UserError, match="trains every member of a fold at once"):
        plan(two_cpus, fixed, 6)


def test_a_reset_gives_adam_a_fresh_state_over_the_same_parameters() -> None:
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", gym.make("Pendulum-v1"), n_steps=64, batch_size=32, seed=1)
    model.learn(64)
    before = model.policy.optimizer
    assert before.state  # Adam has moments after an update
    fresh_optimizer(model)
    after = model.policy.optimizer
    assert after is not before and not after.state
    assert [p for g in after.param_groups for p in g["params"]] == list(model.policy.parameters())
    assert after.param_groups[0]["lr"] == pytest.approx(model.lr_schedule(1))
    assert isinstance(after, torch.optim.Adam)


# Runs ---------------------------------------------------------------------------------------------
def _final_weights(job) -> dict[str, np.ndarray]:
    from stable_baselines3 import PPO

    state = TrainingState.load(job.files.state)
    model = PPO.load(job.files.checkpoints / str(state.last_checkpoint), device="cpu")
    return {key: value.numpy() for key, value in model.policy.state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize("weighting", ["equal", "validation"])
def test_after_a_sync_every_member_holds_the_numpy_average_of_what_they_wrote(
    tmp_path: Path, weighting: str
) -> None:
    run = small_run(
        tmp_path, 3, 4096, *FEDAVG, "launcher.cluster=debug", f"ensemble.sync_weighting={weighting}"
    )
    outcome = launch_members(
        run.jobs, launch_settings(run.config, run.plan, run.run_dir, None), _quiet
    )
    assert not outcome.failures
    fed = RunFiles(run.run_dir).fedavg(0)
    assert fed.rounds() == [1, 2]
    closed = json.loads(fed.closed(2).read_text())
    assert closed["participants"] == [0, 1, 2]
    members = [read_state(fed.member(2, m)) for m in range(3)]
    stack = {k: np.stack([s[k].astype(np.float64) for s, _, _ in members]) for k in members[0][0]}
    if weighting == "equal":
        expected = {k: v.mean(axis=0).astype(np.float32) for k, v in stack.items()}
    else:
        shares = sync_weights([score for _, score, _ in members], "validation", 1.0)
        assert closed["weights"] == pytest.approx(shares)
        expected = {
            k: np.average(v, axis=0, weights=shares).astype(np.float32) for k, v in stack.items()
        }
    for job in run.jobs:
        final = _final_weights(job)
        assert all(np.array_equal(final[k], expected[k]) for k in expected), job.name
    # Before the sync the members differed: the average did something.
    assert not np.array_equal(stack["log_std"][0], stack["log_std"][1]) or not np.array_equal(
        stack["mlp_extractor.policy_net.0.weight"][0], stack["mlp_extractor.policy_net.0.weight"][1]
    )


def _quiet(statuses, event) -> None:
    pass


def _resume(run_dir: Path, wait: bool = True) -> subprocess.Popen:
    command = [
        sys.executable,
        str(REPO / "training" / "train_walk_forward.py"),
        "--resume",
        str(run_dir),
        "--no-progress",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait:
        out, _ = process.communicate(timeout=600)
        assert process.returncode == 0, out
    return process


@pytest.mark.slow
def test_a_run_killed_mid_round_resumes_to_the_same_final_weights(tmp_path: Path) -> None:
    overrides = (*FEDAVG, "launcher.cluster=debug")
    straight = small_run(tmp_path / "straight", 3, 8192, *overrides)
    _resume(straight.run_dir)
    killed = small_run(tmp_path / "killed", 3, 8192, *overrides)
    fed = RunFiles(killed.run_dir).fedavg(0)
    process = _resume(killed.run_dir, wait=False)
    deadline = time.time() + 300
    while not fed.member(2, 0).exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.kill()  # SIGKILL: all three members die mid-way through round 2
    process.wait()
    assert not fed.closed(4).exists(), "the run ended before it could be killed mid-round"
    _resume(killed.run_dir)
    for a, b in zip(straight.jobs, killed.jobs, strict=True):
        first, second = _final_weights(a), _final_weights(b)
        assert all(np.array_equal(first[k], second[k]) for k in first), a.name
        results = [json.loads(job.files.result.read_text()) for job in (a, b)]
        assert results[0]["test"] == results[1]["test"]
        assert results[1]["rounds"]["done"] == 4
    fused = [read_state(RunFiles(r.run_dir).fedavg(0).fused(4))[0] for r in (straight, killed)]
    assert all(np.array_equal(fused[0][k], fused[1][k]) for k in fused[0])
    assert (RunFiles(killed.run_dir).fused_model(0)).exists()


@pytest.mark.slow
def test_a_killed_member_leaves_and_the_others_finish_their_rounds(tmp_path: Path) -> None:
    run = small_run(tmp_path, 3, 8192, *FEDAVG, "ensemble.sync_timeout_s=120")
    settings = replace(launch_settings(run.config, run.plan, run.run_dir, None), max_retries=0)
    assert settings.cluster == "local" and len(settings.slots) == 3
    victim = run.jobs[1]
    killer = Interference(lambda: kill(wait_for_steps(victim, 2048)["pid"], signal.SIGKILL))
    started = time.time()
    outcome = launch_members(run.jobs, settings, _quiet)
    killer.join()
    assert list(outcome.failures) == [victim.name]
    assert time.time() - started < 120, "the others waited out the barrier timeout"
    survivors = [s.result for s in outcome.statuses if s.result]
    assert [r["member"] for r in survivors] == [0, 2]
    assert all(r["rounds"]["done"] == 4 for r in survivors)
    RunFiles(run.run_dir).failures.write_text(json.dumps(outcome.failures))
    aggregate_run(run.run_dir)
    fuse_run(run.run_dir)
    summary = build_report(run.run_dir)
    short = summary["fedavg"]["folds"][0]["short_rounds"]
    assert short and all(r["missing"] == [1] for r in short)
    report = (run.run_dir / "report.md").read_text()
    assert "without member(s) 1" in report and "Fused model vs members' ensemble" in report
    assert set(summary["fedavg"]["compared"]) == {
        "fused model",
        "members' ensemble",
        "best member (by validation)",
    }
