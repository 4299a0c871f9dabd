"""Faults around the launcher's processes: SIGTERM and SIGHUP do what Ctrl-C does, a local job
whose launcher is gone stops by itself, one writer per run folder, and kills that match the
recorded process exactly (pid and start time)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.errors import UserError
from core.process import ProcessIdentity
from tests.conftest import ENTRY, PYTHON, REPO_ROOT
from tests.helpers.launch import small_run
from training.launcher import signals
from training.launcher.orphans import kill_recorded_task
from training.run import lock
from training.run.lock import LOCK_FILE, RunLock


def _ended_process() -> ProcessIdentity:
    """The identity a process had; it has ended (and been reaped) since."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    identity = ProcessIdentity.of(child.pid)
    child.kill()
    child.wait()
    assert identity is not None
    return identity


def _write_lock(run_dir: Path, holder: ProcessIdentity, heartbeat: float) -> None:
    record = {**holder.to_json(), "since": heartbeat - 60, "heartbeat": heartbeat}
    (run_dir / LOCK_FILE).write_text(json.dumps(record))


# Which process, exactly -----------------------------------------------------------------------
def test_a_process_is_its_pid_and_start_time() -> None:
    me = ProcessIdentity.current()
    assert me.running() is True
    assert ProcessIdentity(me.host, me.pid, me.started + 60.0).running() is False  # a reused pid
    assert _ended_process().running() is False
    assert ProcessIdentity("elsewhere.invalid", me.pid, me.started).running() is None


# One writer per run folder --------------------------------------------------------------------
def test_a_second_writer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    with RunLock(tmp_path):
        record = json.loads((tmp_path / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        with pytest.raises(UserError) as refused:
            RunLock(tmp_path).acquire()
        message = str(refused.value)
        assert f"pid {os.getpid()} on {socket.gethostname()} (since " in message
        assert "  fix: " in message and f"kill {os.getpid()}" in message
    assert not (tmp_path / LOCK_FILE).exists()  # released


def test_the_lock_is_released_when_the_command_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), RunLock(tmp_path):
        raise RuntimeError("a failed command")
    assert not (tmp_path / LOCK_FILE).exists()


@pytest.mark.parametrize("reused", [False, True])
def test_a_lock_whose_holder_is_gone_is_taken_over_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reused: bool
) -> None:
    dead = _ended_process()
    me = ProcessIdentity.current()
    holder = ProcessIdentity(me.host, me.pid, me.started - 100) if reused else dead
    _write_lock(tmp_path, holder, time.time())
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["started"] == me.started
    said = capsys.readouterr().err
    assert f"took over {tmp_path / LOCK_FILE} from pid {holder.pid}" in said
    why = f"pid {me.pid} is now another process" if reused else "that process has ended"
    assert why in said
    assert list(tmp_path.iterdir()) == []  # nothing left: neither the lock nor the moved one


def test_another_hosts_lock_is_stale_only_once_its_heartbeat_is_old(tmp_path: Path) -> None:
    other = ProcessIdentity("node-17.invalid", 4242, 1.0e9)
    _write_lock(tmp_path, other, time.time() - 5)
    with pytest.raises(UserError, match=r"pid 4242 on node-17\.invalid .*last heartbeat 5 s ago"):
        RunLock(tmp_path).acquire()
    _write_lock(tmp_path, other, time.time() - lock.STALE_AFTER_S - 5)
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_an_unreadable_lock_is_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lock, "UNREADABLE_WAIT_S", 0.2)
    (tmp_path / LOCK_FILE).write_text("")  # its writer died between creating and writing it
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


# Kills that match the process -------------------------------------------------------------------
def test_a_recorded_task_is_killed_only_if_its_start_time_matches(tmp_path: Path) -> None:
    # A live process whose command line looks like a submitit task's (what orphans.py checks).
    code = "import sys, time; time.sleep(60)"
    task = subprocess.Popen([sys.executable, "-c", code, "submitit.core._submit"])
    try:
        deadline = time.monotonic() + 30  # until exec, /proc shows the forking parent's command
        while b"submitit" not in Path(f"/proc/{task.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline, "the child never ran its command"
            time.sleep(0.01)
        identity = ProcessIdentity.of(task.pid)
        assert identity is not None
        progress = tmp_path / "progress.json"
        foreign = {**identity.to_json(), "started": identity.started - 3600, "updated": time.time()}
        progress.write_text(json.dumps(foreign))  # a stale record whose pid was given again
        assert kill_recorded_task(progress) is None
        assert task.poll() is None  # not killed
        progress.write_text(json.dumps({**identity.to_json(), "updated": time.time()}))
        assert kill_recorded_task(progress) == task.pid
        assert task.wait(timeout=10) == -signal.SIGKILL
    finally:
        task.kill()
        task.wait()


# SIGTERM and SIGHUP do what Ctrl-C does ---------------------------------------------------------
def test_sigterm_and_sighup_raise_what_ctrl_c_raises() -> None:
    before = {signum: signal.getsignal(signum) for signum in signals.STOP_SIGNALS}
    ignored = [signum for signum, handler in before.items() if handler is signal.SIG_IGN]
    with signals.installed():
        for signum in ignored:  # e.g. SIGHUP under nohup: the user asked for it, it stays
            assert signal.getsignal(signum) is signal.SIG_IGN
        for signum in [s for s in signals.STOP_SIGNALS if s not in ignored]:
            with pytest.raises(KeyboardInterrupt) as stopped:
                os.kill(os.getpid(), signum)
                time.sleep(1)  # the handler runs at the next bytecode of the main thread
            assert isinstance(stopped.value, signals.StopSignal)
            assert stopped.value.signum == signum
        assert signals.exit_status(130) == 128 + signal.SIGTERM  # the first one received
        with signals.deferred():  # cleanup: a second signal does not cut it short
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
    assert {signum: signal.getsignal(signum) for signum in signals.STOP_SIGNALS} == before


# End to end: a launcher's local jobs -------------------------------------------------------------
def _launcher(run_dir: Path, sigint_ignored: bool = False) -> subprocess.Popen[str]:
    """`--resume RUN` in its own session, output captured; `sigint_ignored`: as a shell starts
    `cmd &` from a script (its children would inherit an ignored SIGINT)."""
    command = [PYTHON, str(ENTRY), "--resume", str(run_dir), "--no-progress"]
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    return subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=ignore,
    )  # fmt: skip


def _run_processes(run_dir: Path) -> list[int]:
    """Live processes started for this run: submitit's controllers and tasks name its launcher
    folder on their command line."""
    mark = str(run_dir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if mark in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _training(
    launcher: subprocess.Popen[str], run_dir: Path, at_least: int, timeout_s: float = 180.0
) -> dict:
    """The progress of the run's first job (a member's or a group's) once it has trained
    `at_least` steps; fails at once if the launcher has exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            raise AssertionError(f"the launcher exited {launcher.returncode}: {launcher.stderr}")
        for path in sorted(run_dir.glob("folds/*/*/progress.json")):
            try:
                progress = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if progress.get("phase") == "training" and progress.get("steps", 0) >= at_least:
                return {**progress, "path": path}
        time.sleep(0.05)
    raise AssertionError(f"no job of {run_dir} reached {at_least} steps in {timeout_s} s")


def _until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.mark.slow
def test_sigterm_to_the_launcher_cancels_its_jobs_and_a_second_writer_is_refused(
    tmp_path: Path,
) -> None:
    run = small_run(tmp_path, 2, 65536)
    launcher = _launcher(run.run_dir, sigint_ignored=True)
    _training(launcher, run.run_dir, 2048)
    assert _run_processes(run.run_dir)
    second = subprocess.run(
        [PYTHON, str(ENTRY), "--resume", str(run.run_dir), "--no-progress"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert second.returncode == 2, second.stderr
    assert f"is being written by another command: pid {launcher.pid} on" in second.stderr
    assert "  fix: " in second.stderr and "Traceback" not in second.stderr
    assert launcher.poll() is None  # the first one goes on

    sent = time.monotonic()
    launcher.send_signal(signal.SIGTERM)
    _, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 128 + signal.SIGTERM, err
    # Its controllers took the cancel's SIGINT (not the 15 s wait, then a kill by pid).
    assert time.monotonic() - sent < 10
    assert f"continue with --resume {run.run_dir}" in err and "Traceback" not in err
    assert _until(lambda: not _run_processes(run.run_dir), 5), _run_processes(run.run_dir)
    assert not (run.run_dir / LOCK_FILE).exists()
    assert not any(job.files.result.exists() for job in run.jobs)


@pytest.mark.slow
def test_a_local_job_whose_launcher_was_killed_stops_by_itself_at_a_safe_point(
    tmp_path: Path,
) -> None:
    run = small_run(tmp_path, 1, 65536)
    (job,) = run.jobs
    launcher = _launcher(run.run_dir)
    task = _training(launcher, run.run_dir, 2048)
    launcher.kill()  # SIGKILL: no cancel; its job is re-parented and would train on
    launcher.communicate()
    assert _until(lambda: not _run_processes(run.run_dir), 30), _run_processes(run.run_dir)
    assert ProcessIdentity.of(task["pid"]) is None
    assert json.loads(task["path"].read_text())["phase"] == "stopped"
    state = json.loads(job.files.state.read_text())  # the safe point's checkpoint
    assert 2048 <= state["timesteps"] < 65536 and state["preempted_at"] == []
    assert not job.files.result.exists()
    left = json.loads((run.run_dir / LOCK_FILE).read_text())  # a SIGKILL leaves it stale
    assert lock.stale_reason(left) == "that process has ended"
