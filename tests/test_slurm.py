"""Against a real single-node SLURM cluster (scripts/slurm_cluster.sh: munge, slurmctld, slurmd,
no accounting): an ensemble through `--cluster slurm`, a member requeued by USR2 that resumes to
the same step count, and a member killed with SIGKILL reported failed while the other finishes.

submitit cannot read job states here (`sacct` fails without accounting): these tests prove the
launcher does not need it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import UserError
from tests.conftest import ENTRY, PYTHON, REPO_ROOT, every_cpu
from tests.helpers.datasets import write_csv
from tests.helpers.launch import Interference, small_run, wait_for_steps
from tests.helpers.walk_forward import LEARNABLE, ar1_frames, bars_needed, learnable_config
from training.launcher.launch import JobStatus
from training.launcher.profile import cluster_profile
from training.launcher.settings import launch_settings
from training.member.member_run import launch_members

pytestmark = [pytest.mark.slow, pytest.mark.slurm]
SCRIPT = REPO_ROOT / "scripts" / "slurm_cluster.sh"
# Runs must be on a filesystem the nodes share, never /tmp (the launcher refuses it), wherever
# the repository was checked out: the home folder is shared on clusters, and here.
SHARED = Path(
    os.environ.get("PLOUTOS_SLURM_TEST_DIR", Path.home() / ".cache" / "ploutos-slurm-tests")
)
SLURM = ("launcher.cluster=slurm", "launcher.cluster_profile=localhost")


@pytest.fixture(scope="module")
def slurm() -> Iterator[None]:
    with every_cpu():  # the node's daemons own the machine's CPUs, as on a real node
        up = subprocess.run([str(SCRIPT), "up"], capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, f"slurm_cluster.sh up failed:\n{up.stdout}\n{up.stderr}"
    exported = [line for line in up.stdout.splitlines() if line.startswith("export SLURM_CONF=")]
    assert exported, up.stdout
    os.environ["SLURM_CONF"] = exported[-1].split("=", 1)[1]
    yield
    subprocess.run([str(SCRIPT), "down"], capture_output=True, timeout=120)


@pytest.fixture
def shared(request: pytest.FixtureRequest) -> Iterator[Path]:
    folder = SHARED / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("mode", ["independent", "fedavg"])
def test_an_ensemble_through_slurm_gives_results_and_a_report(
    slurm: None, shared: Path, mode: str
) -> None:
    config = learnable_config("walk_forward.max_folds=1")
    dataset = write_csv(shared / "dataset", ar1_frames(bars_needed(config), 2, 0.3, seed=5))
    sets = [*LEARNABLE, "walk_forward.max_folds=1", "training.eval_every_steps=2048",
            f"data.cache_dir={json.dumps(str(shared / 'cache'))}", f"ensemble.mode={mode}",
            "ensemble.sync_steps=2048"]  # fmt: skip
    if mode == "fedavg":  # a task a member (population: one group, averaged in memory)
        sets.append("ensemble.learner=separate")
    command = [PYTHON, str(ENTRY), "--cluster", "slurm", "--cluster-profile", "localhost",
               "--ensemble", "2", "--timesteps", "4096", "--data", str(dataset),
               "--output", str(shared / "runs"), "--no-progress"]  # fmt: skip
    for item in sets:
        command += ["--set", item]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "submitted SLURM array" in done.stderr, done.stderr
    (run_dir,) = (shared / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["members"] == 2 and len(metrics["member_metrics"]) == 2
    assert not metrics["failed_jobs"]
    assert "## Ensemble and members" in (run_dir / "report.md").read_text()
    plan = json.loads((run_dir / "plan.json").read_text())["plan"]
    assert plan["usable_cpus"] == 1  # planned for the allocation (cpus_per_task: 1)
    if mode == "fedavg":  # one job of two tasks (srun), averaging through torch.distributed
        assert "2 tasks each (one torch.distributed group)" in done.stderr, done.stderr
        fused = json.loads((run_dir / "folds" / "fold_00" / "fused.json").read_text())
        assert [r["participants"] for r in fused["rounds"]] == [[0, 1], [0, 1]]
        assert all(r["reason"] == "all_reduce over 2 tasks (gloo)" for r in fused["rounds"])
        assert (run_dir / "folds" / "fold_00" / "fused.zip").exists()
        assert "Fused model vs members' ensemble" in (run_dir / "report.md").read_text()
    assert list((run_dir / "launcher").glob("*_log.out"))


def test_requeue_resumes_to_the_same_steps_and_a_killed_member_is_reported(
    slurm: None, shared: Path
) -> None:
    run = small_run(shared, 2, 32768, *SLURM, "launcher.max_retries=0")
    settings = launch_settings(run.config, run.plan, run.run_dir, cluster_profile(run.config))
    preempted, killed = run.jobs
    ids: dict[str, str] = {}

    def listen(statuses: list[JobStatus], event: str | None) -> None:
        ids.update({s.job.name: s.cluster_id for s in statuses if s.cluster_id})

    def kill() -> None:
        # SIGKILL to the member's process, as the OOM killer or a dying node would do. (scancel
        # --signal=KILL is a cancellation: SIGTERM first, which submitit ignores for KillWait.)
        os.kill(wait_for_steps(killed, 2048, timeout_s=300)["pid"], signal.SIGKILL)

    def preempt() -> None:
        wait_for_steps(preempted, 2048, timeout_s=300)
        signal_job(ids[preempted.name], "USR2")  # the step only: no --batch

    # Each member is interfered with as soon as it has trained 2048 steps, whichever SLURM
    # started first (one after the other, a late start let the other finish training first).
    threads = [Interference(kill), Interference(preempt)]
    started = time.time()
    outcome = launch_members(run.jobs, settings, listen)
    for thread in threads:
        thread.join()
    first, second = outcome.statuses
    assert second.state == "failed" and "without a result" in second.error, second
    assert first.state == "done", first
    result = first.result
    assert len(result["preempted_at"]) == 1 and 2048 <= result["preempted_at"][0] < 32768
    assert result["timesteps"] == 32768  # the uninterrupted count (rollouts of 2048 steps)
    assert time.time() - started < 600


def signal_job(job_id: str, name: str) -> None:
    subprocess.run(["scancel", f"--signal={name}", job_id], check=True, timeout=30)


def test_a_profile_sbatch_refuses_is_one_clear_message(slurm: None, shared: Path) -> None:
    profile = shared / "wrong.yaml"
    profile.write_text("name: wrong\npartition: no-such-partition\ncpus_per_task: 1\nmem_gb: 1\n")
    run = small_run(
        shared, 1, 2048, "launcher.cluster=slurm", f"launcher.cluster_profile={profile}"
    )
    settings = launch_settings(run.config, run.plan, run.run_dir, cluster_profile(run.config))
    with pytest.raises(UserError) as error:
        launch_members(run.jobs, settings, lambda statuses, event: None)
    message = str(error.value)
    assert "sbatch refused" in message and "partition" in message.lower()
    assert "fix: check the cluster profile wrong" in message
