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

from core.errors import UserError
from core.hardware.planner import plan
from tests.conftest import machine
from tests.helpers.launch import Interference, kill, small_run, wait_for_steps
from training.fedavg.average import average, sync_weights
from training.fedavg.collective import DistributedMeeting, Rendezvous
from training.fedavg.meeting import Arrival, InProcessMeeting, recorded
from training.fedavg.record import read_closed, read_fused
from training.launcher.settings import launch_settings
from training.learners.ensemble_launch import launch_ensemble
from training.member.checkpoints import TrainingState
from training.member.member_training import run_to_end
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
def _spawn(folder: Path, members: list[list[int]], weighting: str, die: int | None = None) -> None:
    """The meeting's tasks as processes over loopback, one round; `die`: that task exits first."""
    import multiprocessing
    import socket

    from tests.helpers.meeting_tasks import meet_once

    with socket.socket() as probe:  # a free port for the job's TCPStore
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    tasks = [
        context.Process(
            target=meet_once, args=(str(folder), rank, members, port, weighting, rank == die)
        )
        for rank in range(len(members))
    ]
    for task in tasks:
        task.start()
    for task in tasks:
        task.join(timeout=120)
        assert task.exitcode is not None, "a task hung"


@pytest.mark.parametrize(
    ("members", "weighting"),
    [([[0], [1]], "equal"), ([[0, 1], [2], [3]], "validation")],
)
def test_the_collective_gives_every_task_numpys_mean_of_the_members(
    tmp_path: Path, members: list[list[int]], weighting: str
) -> None:
    from tests.helpers.meeting_tasks import member_state

    _spawn(tmp_path, members, weighting)
    everyone = [m for task in members for m in task]
    states = [member_state(m) for m in everyone]
    shares = sync_weights([float(m) for m in everyone], weighting, 1.0)
    fused = [dict(np.load(tmp_path / f"fused_{rank}.npz")) for rank in range(len(members))]
    for key in ("mlp.0.weight", "mlp.0.bias", "log_std"):
        stack = np.stack([s[key].astype(np.float64) for s in states])
        expected = stack.mean(axis=0) if weighting == "equal" else np.average(stack, 0, shares)
        np.testing.assert_allclose(fused[0][key], expected.astype(np.float32), rtol=1e-6, atol=1e-7)
        assert all(np.array_equal(f[key], fused[0][key]) for f in fused), "tasks differ"
    assert fused[0]["steps"][0] == 0  # a counter is not averaged
    closed = read_closed(FedAvgFiles(tmp_path), 1)
    assert closed is not None and closed.participants == everyone
    assert closed.weights == pytest.approx(shares) and "all_reduce" in closed.reason
    recorded = read_fused(FedAvgFiles(tmp_path), 1)
    assert all(np.array_equal(recorded[k], fused[0][k]) for k in recorded)


def test_a_task_that_dies_fails_the_round_for_the_others_naming_its_member(
    tmp_path: Path,
) -> None:
    _spawn(tmp_path, [[0], [1, 2]], "equal", die=1)
    said = (tmp_path / "error_0.txt").read_text()
    assert "fedavg round 1" in said and "member(s) 1, 2 did not reach it" in said, said
    assert "--resume goes on from round 0" in said
    assert read_closed(FedAvgFiles(tmp_path), 1) is None  # nothing recorded: nobody commits


def test_one_task_with_the_whole_fold_averages_in_memory(tmp_path: Path) -> None:
    from tests.helpers.meeting_tasks import member_state

    meeting = DistributedMeeting(
        FedAvgFiles(tmp_path), Rendezvous(0, 1, "127.0.0.1", 0, "gloo", 5.0), [[0, 1, 2]]
    )
    arrivals = [Arrival(m, member_state(m), 0.0, 4096) for m in range(3)]
    agreed = run_to_end(meeting.meet(1, arrivals))
    expected = average([member_state(m) for m in range(3)], [1 / 3] * 3)
    for key in ("mlp.0.weight", "log_std"):
        np.testing.assert_allclose(agreed.fused[key], expected[key], rtol=1e-6, atol=1e-7)
    assert agreed.closed.reason == "one task: in memory" and agreed.closed.timesteps == 4096
    assert meeting.store is None  # no process group for one task


def test_members_taking_turns_in_one_process_meet_when_the_last_arrives(tmp_path: Path) -> None:
    meeting = InProcessMeeting(FedAvgFiles(tmp_path), [0, 1])
    state = {"w": np.full((2, 2), 1.0, np.float32)}
    first = meeting.meet(1, [Arrival(0, state, 0.5, 2048)])
    assert next(first) is None  # waits for member 1
    second = meeting.meet(1, [Arrival(1, {"w": np.full((2, 2), 3.0, np.float32)}, 0.1, 2048)])
    with pytest.raises(StopIteration) as done:
        next(second)
    assert np.array_equal(done.value.value.fused["w"], np.full((2, 2), 2.0, np.float32))
    with pytest.raises(StopIteration) as also:
        next(first)
    assert also.value.value == done.value.value
    assert recorded(FedAvgFiles(tmp_path), 1).closed == done.value.value.closed


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
def test_after_a_sync_every_member_holds_the_recorded_average_by_its_shares(
    tmp_path: Path,
) -> None:
    run = small_run(
        tmp_path, 3, 4096, *FEDAVG, "launcher.cluster=debug", "ensemble.sync_weighting=validation"
    )
    outcome = launch_ensemble(
        run.jobs,
        launch_settings(run.config, run.plan, run.run_dir, None),
        _quiet,
        "separate",
        1,
    )
    assert not outcome.failures
    fed = RunFiles(run.run_dir).fedavg(0)
    assert fed.rounds() == [1, 2]
    closed = read_closed(fed, 2)
    assert closed is not None and closed.participants == [0, 1, 2]
    assert closed.weights == pytest.approx(sync_weights(closed.scores, "validation", 1.0))
    fused = read_fused(fed, 2)
    for job in run.jobs:
        final = _final_weights(job)
        assert all(np.array_equal(final[k], fused[k]) for k in fused), job.name
    # The round's average differs from the one before: members trained between them.
    before = read_fused(fed, 1)
    assert not all(np.array_equal(before[k], fused[k]) for k in fused)


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
    while not fed.closed(2).exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.kill()  # SIGKILL: all three members die in round 3
    process.wait()
    assert not fed.closed(4).exists(), "the run ended before it could be killed mid-round"
    _resume(killed.run_dir)
    for a, b in zip(straight.jobs, killed.jobs, strict=True):
        first, second = _final_weights(a), _final_weights(b)
        assert all(np.array_equal(first[k], second[k]) for k in first), a.name
        results = [json.loads(job.files.result.read_text()) for job in (a, b)]
        assert results[0]["test"] == results[1]["test"]
        assert results[1]["rounds"]["done"] == 4
    fused = [read_fused(RunFiles(r.run_dir).fedavg(0), 4) for r in (straight, killed)]
    assert all(np.array_equal(fused[0][k], fused[1][k]) for k in fused[0])
    assert (RunFiles(killed.run_dir).fused_model(0)).exists()


@pytest.mark.slow
@pytest.mark.every_cpu  # its bound is the sync timeout: two tasks on one CPU eat the margin
def test_a_killed_task_fails_the_round_by_name_and_resume_goes_on_from_the_last_round(
    tmp_path: Path,
) -> None:
    run = small_run(tmp_path, 2, 8192, *FEDAVG, "ensemble.sync_timeout_s=120")
    settings = replace(launch_settings(run.config, run.plan, run.run_dir, None), max_retries=0)
    assert settings.cluster == "local" and len(settings.slots) == 2
    victim = run.jobs[1]
    killer = Interference(lambda: kill(wait_for_steps(victim, 4096)["pid"], signal.SIGKILL))
    started = time.time()
    outcome = launch_ensemble(run.jobs, settings, _quiet, "separate", 1)
    killer.join()
    (error,) = outcome.failures.values()
    assert time.time() - started < 120, "the survivor waited out the timeout"
    assert "did not reach it" in error and "member(s) 1" in error, error
    fed = RunFiles(run.run_dir).fedavg(0)
    kept = {index: read_closed(fed, index) for index in fed.rounds()}
    assert kept and max(kept) < 4, "the run ended before its task was killed"
    again = launch_ensemble(run.jobs, replace(settings, max_retries=1), _quiet, "separate", 1)
    assert not again.failures
    assert fed.rounds() == [1, 2, 3, 4]
    assert all(read_closed(fed, index) == closed for index, closed in kept.items())  # not redone
    results = [json.loads(job.files.result.read_text()) for job in run.jobs]
    assert all(r["rounds"]["done"] == 4 for r in results)
    finals = [_final_weights(job) for job in run.jobs]
    assert all(np.array_equal(finals[0][k], finals[1][k]) for k in finals[0])
    aggregate_run(run.run_dir)
    fuse_run(run.run_dir)
    summary = build_report(run.run_dir)
    assert set(summary["fedavg"]["compared"]) == {
        "fused model",
        "members' ensemble",
        "best member (by validation)",
    }


@pytest.mark.slow
def test_population_groups_average_in_memory_and_across_tasks_and_the_fused_model_loads(
    tmp_path: Path,
) -> None:
    from stable_baselines3 import PPO

    run = small_run(tmp_path, 4, 4096, *FEDAVG, "ensemble.learner=population")
    settings = launch_settings(run.config, run.plan, run.run_dir, None)
    outcome = launch_ensemble(run.jobs, settings, _quiet, "population", 2)
    assert not outcome.failures
    (status,) = outcome.statuses  # the fold: one job of two group tasks
    assert status.workload.members == [[0, 1], [2, 3]]
    fed = RunFiles(run.run_dir).fedavg(0)
    assert fed.rounds() == [1, 2]
    closed = read_closed(fed, 2)
    assert closed is not None and closed.participants == [0, 1, 2, 3]
    assert closed.reason == "all_reduce over 2 tasks (gloo)" and closed.weights == [0.25] * 4
    fused = read_fused(fed, 2)
    for job in run.jobs:
        final = _final_weights(job)
        assert all(np.array_equal(final[k], fused[k]) for k in fused), job.name
    aggregate_run(run.run_dir)
    fuse_run(run.run_dir)
    model = PPO.load(RunFiles(run.run_dir).fused_model(0), device="cpu")
    assert model.policy.state_dict().keys() == fused.keys()
