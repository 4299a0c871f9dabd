"""Bad days end in one clear message (what, where, fix), fast, with nothing half-written."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from core.atomic import write_json
from core.config import MAX_STEPS, load_config
from core.errors import UserError
from tests.conftest import ENTRY
from tests.helpers.launch import small_run
from training.population.group_run import reopen_groups
from training.run.files import RunFiles
from training.run.folder import load_run
from training.run.records import check_job_results

PRESETS = Path(__file__).resolve().parents[1] / "config" / "presets"


def refusal(files: list[Path] = (), overrides: list[str] = ()) -> tuple[str, float]:
    """The message load_config refuses these with, and how long refusing took."""
    start = time.perf_counter()
    with pytest.raises(UserError) as caught:
        load_config(files, overrides)
    return str(caught.value), time.perf_counter() - start


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """The classic alias bomb: each level's list holds `width` aliases of the level before."""
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    for level in range(1, levels):
        aliases = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{aliases}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_fast_with_a_short_message(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs())
    message, seconds = refusal([bomb])
    assert seconds < 2
    assert f"{bomb}:" in message and "alias" in message and "  fix: " in message
    assert len(message) < 400


def test_alias_bomb_inside_a_section_is_refused(tmp_path: Path) -> None:
    """Nested under a real key, where validating or quoting it once ran out of memory."""
    items = ["- &a0 [" + ", ".join(["1"] * 9) + "]"]
    items += [f"- &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]" for n in range(1, 9)]
    nested = tmp_path / "nested.yaml"
    nested.write_text("ppo:\n  net_arch:\n" + "".join(f"    {item}\n" for item in items))
    message, seconds = refusal([nested])
    assert seconds < 2 and "aliases expand" in message and len(message) < 400


def test_endless_and_deep_yaml_are_refused(tmp_path: Path) -> None:
    endless = tmp_path / "endless.yaml"
    endless.write_text("ppo:\n  net_arch: &loop [1, *loop]\n")
    assert "its own anchor" in refusal([endless])[0]
    deep = tmp_path / "deep.yaml"
    deep.write_text("ppo:\n  net_arch: " + "[" * 5000 + "]" * 5000 + "\n")
    message, seconds = refusal([deep])
    assert "nested deeper than" in message and seconds < 2


def test_a_few_aliases_still_load(tmp_path: Path) -> None:
    shared = tmp_path / "aliases.yaml"
    shared.write_text("ppo:\n  net_arch: &arch [32, 16]\npolicy:\n  channels: 8\n")
    assert load_config([shared]).ppo.net_arch == [32, 16]


def test_a_huge_value_is_quoted_short(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("ppo:\n  n_epochs: " + "x" * 3_000_000 + "\n")
    message, _ = refusal([big])
    assert "more than the" in message and len(message) < 400  # past the file size bound
    long_value = tmp_path / "long.yaml"
    long_value.write_text("ppo:\n  n_epochs: [" + ", ".join(["'many'"] * 5_000) + "]\n")
    message, _ = refusal([long_value])
    assert "ppo.n_epochs = [" in message and len(message) < 600


def test_sizes_have_upper_bounds_that_the_message_states() -> None:
    message, _ = refusal(overrides=["ppo.total_timesteps=1.0e+32"])
    assert "ppo.total_timesteps" in message and f"≤ {MAX_STEPS:,}" in message
    for key, value in [
        ("ensemble.size", 10**9),
        ("hardware.n_envs", 10**9),
        ("ppo.n_steps", 10**9),
        ("ppo.batch_size", 10**9),
        ("tuning.n_trials", 10**9),
        ("walk_forward.max_folds", 10**9),
        ("ensemble.base_seed", 2**40),
        ("training.checkpoint_every_steps", 10**15),
    ]:
        message, _ = refusal(overrides=[f"{key}={value}"])
        assert f"{key} = {value}" in message and "≤" in message, message


@pytest.mark.parametrize("preset", sorted(PRESETS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_presets_load_within_the_bounds(preset: Path) -> None:
    load_config([preset])


# --- run folders: SLURM missing, damaged records, a full disk ----------------------------------


def cli(*args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path} if path is not None else None
    command = [sys.executable, str(ENTRY), *args, "--no-progress"]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def one_message(done: subprocess.CompletedProcess) -> str:
    """The command failed with one UserError message, no traceback."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.startswith("error: ")
    assert "\n  fix: " in done.stderr
    return done.stderr


def test_slurm_without_its_commands_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    bare = tmp_path / "bin"  # a PATH without sbatch, srun, squeue, scancel
    bare.mkdir()
    output = tmp_path / "runs"
    done = cli("--preset", "quick", "--cluster", "slurm", "--cluster-profile", "localhost",
               "--output", str(output), path=str(bare))  # fmt: skip
    message = one_message(done)
    assert "sbatch, srun, squeue, scancel are not on PATH" in message
    assert not output.exists()
    planned = cli("--preset", "quick", "--cluster", "slurm", "--cluster-profile", "localhost",
                  "--dry-run", "--json", path=str(bare))  # fmt: skip
    assert planned.returncode == 0, planned.stderr  # planning for a cluster needs no SLURM


def test_a_truncated_result_is_named_with_the_fix(tmp_path: Path) -> None:
    files = RunFiles(tmp_path / "run").job(0, 1)
    write_json(files.result, {"fold": 0, "member": 1, "timesteps": 64})
    check_job_results([files])
    files.result.write_text(files.result.read_text()[:20])
    with pytest.raises(UserError) as caught:
        check_job_results([files])
    message = str(caught.value)
    assert str(files.result) in message and "cannot be read" in message
    assert f"fix: delete it, then --resume {tmp_path / 'run'}" in message


def test_a_truncated_run_definition_is_named_with_the_fix(tmp_path: Path) -> None:
    files = RunFiles(tmp_path)
    files.jobs.write_text('{"store": "/x", "jo')
    with pytest.raises(UserError) as caught:
        load_run(tmp_path)
    assert f"the run's job list cannot be read: {files.jobs}" in str(caught.value)
    assert "  fix: " in str(caught.value)


def test_a_group_whose_member_lost_its_result_runs_again(tmp_path: Path) -> None:
    files = RunFiles(tmp_path)
    kept, lost, damaged = files.group(0, 0).result, files.group(1, 0).result, files.group(2, 0)
    for fold, group in ((0, kept), (1, lost)):
        write_json(group, {"members": {"0": {}, "1": {}}})
        write_json(files.job(fold, 0).result, {})
        if group is kept:
            write_json(files.job(fold, 1).result, {})
    damaged.result.parent.mkdir(parents=True)
    damaged.result.write_text('{"members": {"0"')
    lines = reopen_groups(tmp_path)
    assert kept.exists() and not lost.exists() and not damaged.result.exists()
    assert len(lines) == 2
    assert "member(s) 1 without a result.json" in lines[0] and "cannot be read" in lines[1]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run (one fold, two members, 256 steps) trained and reported once."""
    run = small_run(tmp_path_factory.mktemp("finished"), 2, 256, "training.eval_every_steps=256")
    done = cli("--resume", str(run.run_dir), "--cluster", "debug")
    assert done.returncode == 0, done.stderr
    return run.run_dir


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A real filesystem of `size` (tmpfs), which fills up for real; needs root."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(disk: Path, leave_bytes: int) -> Path:
    """Write a filler file until about `leave_bytes` are left on `disk`."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free - leave_bytes
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(free, 0))
    return filler


@pytest.mark.slow
def test_a_full_disk_while_the_report_is_written_is_one_message(
    finished_run: Path, tmp_path: Path
) -> None:
    with small_disk(tmp_path / "disk", "16m") as disk:
        run_dir = disk / finished_run.name
        shutil.copytree(finished_run, run_dir)
        files = RunFiles(run_dir)
        for made in (files.ensemble_tracks(0), files.ensemble_members(0), files.report):
            made.unlink()
        filler = fill(disk, 64 * 1024)  # the ensemble's tracks alone take ~1 MB
        message = one_message(cli("--resume", str(run_dir), "--cluster", "debug"))
        assert "no space left writing" in message and str(run_dir) in message
        assert f"--resume {run_dir} finishes the report" in message
        leftovers = [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]
        assert not leftovers and not files.ensemble_tracks(0).exists()
        filler.unlink()
        done = cli("--resume", str(run_dir), "--cluster", "debug")
        assert done.returncode == 0, done.stderr
        assert files.report.exists() and files.ensemble_tracks(0).exists()


@pytest.mark.slow
def test_resume_names_a_truncated_result_before_it_trains(
    finished_run: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / finished_run.name
    shutil.copytree(finished_run, run_dir)
    result = RunFiles(run_dir).job(0, 0).result
    result.write_text(result.read_text()[:50])
    done = cli("--resume", str(run_dir), "--cluster", "debug")
    assert f"the job's result cannot be read: {result}" in one_message(done)
    assert "Resuming" not in done.stdout  # said before anything runs


# --- a diverged member --------------------------------------------------------------------------


def test_non_finite_weights_are_named_with_the_step_and_the_fix() -> None:
    from stable_baselines3 import PPO

    from training.member.divergence import DivergedError, check_finite, said_when_nonfinite

    config = load_config(overrides=["ppo.learning_rate=0.5"])
    model = PPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, device="cpu")
    check_finite(model, "fold 0 member 3", config)  # fresh weights: finite
    with torch.no_grad():
        model.policy.action_net.weight.fill_(float("nan"))
    with pytest.raises(DivergedError) as caught:
        check_finite(model, "fold 0 member 3", config)
    message = str(caught.value)
    assert message.startswith("fold 0 member 3: PPO diverged: the update after step 0")
    assert "action_net.weight" in message and "lower ppo.learning_rate (now 0.5)" in message
    with pytest.raises(DivergedError) as caught, said_when_nonfinite(model, "job", config):
        model.predict(model.observation_space.sample())  # torch's "found invalid values"
    assert "tensor(" not in str(caught.value) and "action_net.weight" in str(caught.value)


@pytest.mark.slow
@pytest.mark.parametrize("learner", ["separate"])  # SB3's own update: torch's NaN dump came from it
def test_a_run_that_blows_up_says_what_went_non_finite(tmp_path: Path, learner: str) -> None:
    absurd = ["ppo.learning_rate=1", "ppo.max_grad_norm=1e9", "ppo.n_epochs=30", "ppo.vf_coef=10",
              "ppo.clip_range=1", "reward.reward_scale=1e6", "reward.reward_clip=1e30"]  # fmt: skip
    run = small_run(tmp_path, 1, 4096, "training.eval_every_steps=1024", "launcher.max_retries=0",
                    f"ensemble.learner={learner}", *absurd)  # fmt: skip
    done = cli("--resume", str(run.run_dir), "--cluster", "debug")
    assert done.returncode == 1
    (why,) = json.loads(RunFiles(run.run_dir).failures.read_text()).values()
    assert "fold 0 member 0: PPO diverged: the update after step" in why
    assert "fix: lower ppo.learning_rate (now 1)" in why and "tensor(" not in why
    assert len(why) < 1000
