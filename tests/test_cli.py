"""The command line as a user runs it: plans for every profile, readable errors, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ENTRY, MACHINE_FILES, PYTHON, REPO_ROOT

pytestmark = pytest.mark.slow

REQUIRED_HARDWARE = {
    "usable_cpus",
    "logical_cpus",
    "physical_cores",
    "memory_gb",
    "gpus",
    "sources",
}
REQUIRED_PLAN = {
    "members_concurrent", "n_envs", "env_workers", "n_steps", "batch_size",
    "device", "torch_threads", "blas_threads", "reasons",
}  # fmt: skip


def run_cli(*args: str, module: bool = False, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    command = [PYTHON, "-m", "training.train_walk_forward"] if module else [PYTHON, str(ENTRY)]
    return subprocess.run([*command, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("path", MACHINE_FILES, ids=lambda p: p.stem)
def test_dry_run_json_for_every_profile(path: Path) -> None:
    done = run_cli("--dry-run", "--json", "--hardware", str(path), "--ensemble", "20")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert set(document["hardware"]) >= REQUIRED_HARDWARE
    assert set(document["plan"]) >= REQUIRED_PLAN
    for gpu in document["hardware"]["gpus"]:
        assert {"name", "memory_gb", "free_memory_gb"} <= set(gpu)
    plan = document["plan"]
    assert plan["members_concurrent"] * plan["threads_per_member"] <= plan["usable_cpus"]
    assert (plan["n_envs"] * plan["n_steps"]) % plan["batch_size"] == 0


def test_module_form_prints_tables_for_this_machine() -> None:
    done = run_cli("--dry-run", module=True)
    assert done.returncode == 0, done.stderr
    assert "Hardware: this machine" in done.stdout and "Plan:" in done.stdout
    assert "batch_size" in done.stdout


def test_script_runs_from_another_directory(tmp_path: Path) -> None:
    done = run_cli("--dry-run", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["plan"]["members_concurrent"] >= 1


def test_dry_run_lists_folds_and_jobs() -> None:
    done = run_cli("--dry-run", "--preset", "quick", "--ensemble", "2")
    assert done.returncode == 0, done.stderr
    assert "Walk-forward: 3 fold(s)" in done.stdout
    assert "3 fold(s) x 2 member(s) = 6 job(s) of 60,000 PPO steps" in done.stdout
    document = json.loads(run_cli("--dry-run", "--json", "--folds", "2").stdout)
    assert len(document["folds"]) == 2 and document["jobs"]["count"] == 2
    first = document["folds"][0]
    assert first["train"]["stop"] + first["embargo_bars"] <= first["validation"]["start"]


def test_slurm_dry_run_plans_for_the_allocations_gpu() -> None:
    """config/cluster/example.yaml asks for a GPU per task: the plan sees it, and chooses the
    device with a reason (the default policy is too small for it), never an empty one."""
    done = run_cli("--dry-run", "--json", "--cluster", "slurm", "--cluster-profile", "example")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    gpus = document["hardware"]["gpus"]
    assert [(gpu["memory_gb"], gpu["free_memory_gb"]) for gpu in gpus] == [(40.0, 40.0)]
    assert "gpus_per_task=1" in document["hardware"]["sources"]["gpus"]
    device = document["plan"]["decisions"]["device"]
    assert device["value"] == document["plan"]["device"] == "cpu"
    assert "below hardware.gpu_min_minibatch_macs" in device["why"]
    assert all(d["why"] for d in document["plan"]["decisions"].values())


def test_print_config_round_trips(tmp_path: Path) -> None:
    done = run_cli("--print-config", "--set", "ppo.ent_coef=0.05")
    assert done.returncode == 0, done.stderr
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(done.stdout)
    assert yaml.safe_load(done.stdout)["ppo"]["ent_coef"] == 0.05
    again = run_cli("--print-config", "--config", str(resolved))
    assert again.stdout == done.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--dry-run", "--set", "ppo.n_step=64"], "did you mean 'ppo.n_steps'"),
        (["--dry-run", "--set", "ppo.batch_size=7"], "ppo.batch_size = 7"),
        (["--dry-run", "--hardware", "missing.yaml"], "hardware profile not found"),
        (["--dry-run", "--config", "missing.yaml"], "config file not found"),
        (["--dry-run", "--set", "hardware.device=cuda"], "no GPU was found"),
        (["--dry-run", "--set", "walk_forward.train_years=30"], "dataset too short"),
        (["--resume", "/nonexistent/run"], "not a Ploutos run folder"),
        (["--dry-run", "--cluster", "slurm"], "needs a cluster profile"),
        (["--dry-run", "--cluster", "slurm", "--cluster-profile", "nope"], "profile not found"),
        (["--dry-run", "--set", "launcher.max_retries=-1"], "launcher.max_retries"),
        (["--dry-run", "--set", "sweep.n_trials=5"], "unknown key 'sweep'"),
        (["--dry-run", "--n-trials", "5"], "only apply to --tune"),
        (["--preset", "quick", "--output", "/proc/ploutos-runs"], "cannot write the run folder"),
        (["--generate-data", "/proc/ploutos-data"], "cannot write /proc/ploutos-data"),
        (["--export-features", "/proc/ploutos.parquet"], "cannot write /proc/ploutos.parquet"),
    ],
)
def test_user_errors_are_one_clear_message(args: list[str], expected: str) -> None:
    done = run_cli(*args)
    assert done.returncode == 2
    assert expected in done.stderr
    assert "Traceback" not in done.stderr


def test_argument_errors_exit_with_usage() -> None:
    for args in (["--json"], ["--ensemble", "0"], ["--ensemble", "many"]):
        done = run_cli(*args)
        assert done.returncode == 2 and "usage:" in done.stderr and "Traceback" not in done.stderr


def test_start_training_sh_passes_arguments_intact(tmp_path: Path) -> None:
    env = {**os.environ, "PLOUTOS_SKIP_BOOTSTRAP": "1", "PLOUTOS_PYTHON": PYTHON}
    done = subprocess.run(
        [str(REPO_ROOT / "start_training.sh"), "--print-config", "--set", "ppo.net_arch=[32, 16]"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["ppo"]["net_arch"] == [32, 16]


def test_start_training_sh_help_needs_no_environment(tmp_path: Path) -> None:
    env = {**os.environ, "PLOUTOS_VENV": str(tmp_path / "absent"), "PLOUTOS_PYTHON": PYTHON}
    done = subprocess.run(
        [str(REPO_ROOT / "start_training.sh"), "--help"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0
    for flag in (
        "--config",
        "--set",
        "--ensemble",
        "--hardware",
        "--dry-run",
        "--json",
        "--print-config",
    ):
        assert flag in done.stdout
    assert not (tmp_path / "absent").exists()
