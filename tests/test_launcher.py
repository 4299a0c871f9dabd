"""The launcher: slots from the plan, cluster profiles, and real submitit jobs on this machine
(concurrency gate, a SIGKILLed member reported while the other finishes, retries, preemption
with requeue that resumes to the same step count, debug mode that never opens a debugger)."""

from __future__ import annotations

import json
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from core.atomic import write_json
from core.errors import UserError
from tests.conftest import machine
from tests.helpers.launch import Interference, kill, small_run, wait_for_steps
from training.launcher.launch import LaunchSettings, Outcome
from training.launcher.profile import (
    ClusterProfile,
    check_shared,
    load_cluster_profile,
    sbatch_options,
)
from training.launcher.settings import launch_settings, local_slots
from training.member.member_run import MemberRun, launch_members
from training.post.ensemble import aggregate_run
from training.post.report import build_report
from training.run.files import RunFiles


def test_slots_pin_disjoint_cpus_and_hand_out_gpus(default_config) -> None:
    from core.hardware.planner import plan

    resources = plan(machine(2), default_config, 4)
    slots = local_slots(resources, 5.0)
    assert len(slots) == resources.members_concurrent
    cpus = [cpu for slot in slots for cpu in slot.cpus]
    assert len(cpus) == len(set(cpus))  # no CPU shared by two slots
    assert all(slot.gpu is None for slot in slots)
    wide = replace(resources, members_concurrent=3, gpu_assignment=(0, 1))
    slots = local_slots(wide, 5.0)
    assert [slot.gpu for slot in slots] == [0, 1, None]
    assert all(slot.cpus == () for slot in slots) or len(slots[0].cpus) == wide.threads_per_member


def test_sbatch_lines_become_submitit_parameters() -> None:
    assert sbatch_options(["--exclusive", "#SBATCH --reservation=r1", " --gres-flags=enforce"]) == {
        "exclusive": True,
        "reservation": "r1",
        "gres_flags": "enforce",
    }
    with pytest.raises(UserError, match="not a long option"):
        sbatch_options(["-p short"])


def test_cluster_profile_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="did you mean 'localhost'"):
        load_cluster_profile("localhots")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ncpus_per_task: 0\npartitoin: x\n")
    with pytest.raises(UserError) as error:
        load_cluster_profile(str(bad))
    assert "cpus_per_task" in str(error.value) and "partitoin" in str(error.value)


def test_the_slurm_plan_is_for_the_allocation_not_the_login_node(default_config) -> None:
    from core.hardware.planner import plan

    profile = ClusterProfile(name="p", cpus_per_task=8, mem_gb=32)
    resources = plan(profile.allocation(), default_config, 1)
    assert resources.usable_cpus == 8
    assert resources.threads_per_member <= 8
    parameters = profile.executor_parameters()
    assert parameters["cpus_per_task"] == 8 and parameters["mem"] == "32768MB"


def test_slurm_paths_must_not_be_node_local(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="local to each node"):
        check_shared(Path("/tmp/run/launcher"), "the log folder", "use a shared one")
    check_shared(Path("/work/shared/run/launcher"), "the log folder", "use a shared one")


def settings_for(run, **changes) -> LaunchSettings:
    return replace(launch_settings(run.config, run.plan, run.run_dir, None), **changes)


def run_launch(run, settings: LaunchSettings) -> tuple[Outcome, list[str]]:
    events: list[str] = []
    outcome = launch_members(run.jobs, settings, lambda statuses, event: events.append(event or ""))
    return outcome, [e for e in events if e]


@pytest.mark.slow
def test_local_gate_runs_the_plan_and_a_killed_member_is_reported(tmp_path: Path) -> None:
    run = small_run(tmp_path, members=2, timesteps=16384)
    settings = settings_for(run, max_retries=0, slots=local_slots(run.plan, 1.0)[:1])
    victim = run.jobs[0]
    killer = Interference(lambda: kill(wait_for_steps(victim, 2048)["pid"], signal.SIGKILL))
    outcome, events = run_launch(run, settings)
    killer.join()
    failed = {s.job.name: s for s in outcome.statuses if s.state == "failed"}
    assert list(failed) == [victim.name], events
    assert "without a result" in failed[victim.name].error
    survivor = next(s for s in outcome.statuses if s.job is not victim)
    assert survivor.state == "done" and survivor.result["timesteps"] >= 16384
    assert survivor.job.files.result.exists() and not victim.files.result.exists()
    # One slot: the second job started only after the first had ended.
    starts = [i for i, e in enumerate(events) if e.startswith("start")]
    ends = [i for i, e in enumerate(events) if e.startswith(("done", "failed"))]
    assert starts[1] > ends[0], events
    # The report is built from the survivor and names the failed member.
    write_json(RunFiles(run.run_dir).failures, outcome.failures)
    aggregate_run(run.run_dir)
    summary = build_report(run.run_dir)
    assert [m["member"] for m in summary["member_metrics"]] == [1]
    assert list(summary["failed_jobs"]) == [victim.name]
    assert "failed after every retry" in (run.run_dir / "report.md").read_text()


@pytest.mark.slow
def test_a_job_whose_heartbeat_stops_is_cancelled_and_failed(tmp_path: Path) -> None:
    run = small_run(tmp_path, 1, 16384, "launcher.dead_after_s=4")
    settings = settings_for(run, max_retries=0)
    (job,) = run.jobs
    frozen: list[int] = []

    def freeze() -> None:
        frozen.append(wait_for_steps(job, 2048)["pid"])
        kill(frozen[0], signal.SIGSTOP)  # alive to the OS, silent to the launcher

    thread = Interference(freeze)
    outcome, events = run_launch(run, settings)
    thread.join()
    (status,) = outcome.statuses
    assert status.state == "failed" and "no heartbeat" in status.error, events
    assert _process_state(frozen[0]) == "Z"  # killed before the launcher went on


def _process_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return "Z"  # gone, reaped


@pytest.mark.slow
def test_a_failed_job_is_retried_and_a_preempted_one_resumes_to_the_same_steps(
    tmp_path: Path,
) -> None:
    run = small_run(tmp_path, members=2, timesteps=16384)
    settings = settings_for(run, max_retries=1, slots=local_slots(run.plan, 1.0)[:1] * 2)
    killed, preempted = run.jobs

    def interfere() -> None:
        kill(wait_for_steps(killed, 2048)["pid"], signal.SIGKILL)
        kill(wait_for_steps(preempted, 2048)["pid"], signal.SIGUSR2)

    thread = Interference(interfere)
    outcome, events = run_launch(run, settings)
    thread.join()
    first, second = outcome.statuses
    assert first.state == "done" and first.attempts == 2, events
    assert any(e.startswith(f"retry {killed.name}") for e in events)
    assert second.state == "done" and second.attempts == 1, events
    result = second.result
    assert len(result["preempted_at"]) == 1 and 2048 <= result["preempted_at"][0] < 16384
    assert result["timesteps"] == first.result["timesteps"]  # resumed to the same count
    state = json.loads(preempted.files.state.read_text())
    assert state["finished"] and state["preempted_at"] == result["preempted_at"]


@pytest.mark.slow
def test_debug_mode_reports_an_error_without_a_debugger(tmp_path: Path) -> None:
    run = small_run(tmp_path, members=1, timesteps=2048)
    broken = [replace(job, store_path=str(tmp_path / "no-store")) for job in run.jobs]
    settings = settings_for(run, cluster="debug", max_retries=2)
    events: list[str] = []
    outcome = launch_members(broken, settings, lambda statuses, event: events.append(event or ""))
    assert [s.state for s in outcome.statuses] == ["failed"]
    assert "no-store" in outcome.statuses[0].error
    assert outcome.statuses[0].attempts == 1  # a user's mistake is not retried


@pytest.mark.slow
def test_the_ensemble_action_is_the_mean_or_median_of_what_members_predict(tmp_path: Path) -> None:
    import numpy as np
    from stable_baselines3 import PPO

    from core.envs.make import make_env
    from tests.helpers.walk_forward import ar1_frames, learnable_config, store_of
    from training.post.ensemble import MEMBER_BY_MEMBER, ensemble_policy

    config = learnable_config()
    store = store_of(tmp_path, ar1_frames(600, 3, 0.3, seed=1), config)
    env = make_env(config, store)
    obs, _ = env.reset(seed=0)
    batch = {key: value[None] for key, value in obs.items()}
    # member by member (bit for bit), and past MEMBER_BY_MEMBER one vmapped forward (to rounding)
    for count, tolerance in ((3, 0.0), (MEMBER_BY_MEMBER + 2, 1e-6)):
        models = [PPO("MultiInputPolicy", env, seed=seed, device="cpu") for seed in range(count)]
        each = np.stack([model.predict(batch, deterministic=True)[0] for model in models])
        for aggregate, combine in (("mean", np.mean), ("median", np.median)):
            got = ensemble_policy(models, aggregate)(batch, np.zeros((1, 3)), 0)
            expected = np.clip(combine(each, axis=0), -1, 1)
            np.testing.assert_allclose(got, expected, atol=tolerance, rtol=0)


@pytest.mark.slow
def test_debug_mode_trains_members_with_their_risk_profiles(tmp_path: Path) -> None:
    import numpy as np

    from training.run.tracks import load_tracks

    profiles = "ensemble.risk_profiles={calm: {env: {max_leverage: 0.5}}, bold: {}}"
    run = small_run(tmp_path, 2, 2048, profiles)
    assert [job.risk_profile for job in run.jobs] == ["calm", "bold"]
    outcome, events = run_launch(run, settings_for(run, cluster="debug"))
    assert [s.state for s in outcome.statuses] == ["done", "done"], events
    assert [s.result["risk_profile"] for s in outcome.statuses] == ["calm", "bold"]
    calm = load_tracks(run.jobs[0].files.tracks)["agent.exposure"]
    assert np.max(calm) <= 0.5 + 1e-9  # the member traded under its own leverage cap
    aggregate_run(run.run_dir)
    summary = build_report(run.run_dir)
    assert {m["risk_profile"] for m in summary["member_metrics"]} == {"calm", "bold"}
    assert "risk profiles in turn" in (run.run_dir / "report.md").read_text()


def test_a_job_error_is_its_exception_and_a_user_error_is_not_retried(tmp_path: Path) -> None:
    import traceback

    from submitit.core.utils import cloudpickle_dump

    from training.launcher.launch import _read_outcome
    from training.launcher.task import Placement, TrainTask
    from training.launcher.workload import user_error_of

    # A crash is the traceback's last line (and the indented ones after it), to be retried.
    try:
        raise RuntimeError("out of luck\n  at step 3")
    except RuntimeError:
        text = traceback.format_exc()
    cloudpickle_dump(("error", text), tmp_path / "crash.pkl")
    assert _read_outcome(tmp_path / "crash.pkl") == (
        "error",
        "RuntimeError: out of luck\n  at step 3",
        False,
    )
    # A user's mistake crosses the process boundary as a result, not as text to match.
    run = small_run(tmp_path, members=1, timesteps=2048)
    broken = MemberRun(replace(run.jobs[0], store_path=str(tmp_path / "no-store")))
    result = TrainTask()(broken, Placement(heartbeat_s=60))
    assert user_error_of(result) is not None and "no-store" in user_error_of(result)
    cloudpickle_dump(("success", result), tmp_path / "result.pkl")
    outcome, error, mistake = _read_outcome(tmp_path / "result.pkl")
    assert outcome == "error" and mistake and "no-store" in error


@pytest.mark.slow
def test_ctrl_c_cancels_the_running_jobs_and_says_how_to_resume(tmp_path: Path) -> None:
    import os
    import subprocess
    import time

    from tests.conftest import ENTRY, PYTHON, REPO_ROOT

    run = small_run(tmp_path, 1, 65536)
    command = [PYTHON, str(ENTRY), "--resume", str(run.run_dir), "--no-progress"]
    # A new session, as a terminal's foreground job: Ctrl-C reaches the whole process group, and
    # SIGINT has its default action (a test run started in the background inherits it ignored).
    child = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    (job,) = run.jobs
    pid = wait_for_steps(job, 2048)["pid"]
    os.killpg(child.pid, signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert f"--resume {run.run_dir}" in err
    deadline = time.time() + 15
    while Path(f"/proc/{pid}").exists() and _process_state(pid) != "Z" and time.time() < deadline:
        time.sleep(0.1)
    assert _process_state(pid) == "Z"  # the job's process is gone
    assert not job.files.result.exists()


def test_the_board_counts_jobs_and_caps_steps_at_each_jobs_total(tmp_path: Path) -> None:
    from rich.console import Console

    from core.bar_range import BarRange
    from core.folds import Fold
    from training.launcher.board import JobBoard
    from training.launcher.launch import JobStatus
    from training.run.job import Job

    part = BarRange(0, 10)
    fold = Fold(index=0, train=part, validation=part, test=part, embargo_bars=0)
    jobs = [
        Job(str(tmp_path), str(tmp_path), fold, m, m, 1000, "batch", 8, 64, 64, "cpu", 1)
        for m in range(3)
    ]
    statuses = [
        JobStatus(jobs[0], state="running", attempts=2, steps=1536, phase="training"),
        JobStatus(jobs[1], state="done", steps=1024),
        JobStatus(jobs[2], state="failed", error="boom"),
    ]
    console = Console(record=True, width=160)
    console.print(JobBoard("3 job(s) on local", live=False).render(statuses))
    text = console.export_text()
    assert "0 queued, 1 running, 1 done, 1 failed, 1 retried" in text
    assert "2,000/3,000 steps" in text and "1,000/1,000" in text  # PPO's overshoot not shown
    assert "fold 0 member 0" in text and "try 2" in text and "fold 0 member 2" not in text
    testing = [JobStatus(jobs[0], state="running", steps=1000, phase="testing")]
    console.print(JobBoard("1 job(s) on local", live=False).render(testing))
    assert "walking the test window" in console.export_text()  # not a bar sitting full


def test_the_board_gives_an_eta_at_the_pace_so_far() -> None:
    from training.launcher.board import eta

    assert eta(2_000, 3_000, 60.0) == "  ·  ETA 0:30"  # 1,000 steps left at 2,000 a minute
    assert eta(0, 3_000, 60.0) == "" and eta(3_000, 3_000, 60.0) == ""
    assert eta(10, 3_000, 2.0) == ""  # the first seconds are start-up, not the pace


def test_the_board_gives_each_member_of_a_running_group_its_line(tmp_path: Path) -> None:
    from rich.console import Console

    from core.bar_range import BarRange
    from core.folds import Fold
    from training.launcher.board import JobBoard
    from training.launcher.launch import JobStatus
    from training.population.group_run import GroupRun
    from training.run.job import Job

    part = BarRange(0, 10)
    fold = Fold(index=0, train=part, validation=part, test=part, embargo_bars=0)
    jobs = tuple(
        Job(str(tmp_path), str(tmp_path), fold, m, m, 1000, "batch", 8, 64, 64, "cpu", 1)
        for m in range(2)
    )
    parts = {"member 0": 1536, "member 1": 512}
    status = JobStatus(GroupRun(jobs), state="running", steps=2048, phase="training", parts=parts)
    console = Console(record=True, width=160)
    console.print(JobBoard("1 job(s) on local", live=False).render([status]))
    text = console.export_text()
    assert "fold 0 members 0-1" in text and "2,000/2,000" in text
    assert "member 0" in text and "1,000/1,000" in text  # capped at the member's own steps
    assert "member 1" in text and "512/1,000" in text
