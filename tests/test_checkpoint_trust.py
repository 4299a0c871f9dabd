"""A run folder carries data, never code: a checkpoint's pickled entries are never unpickled,
state.json names only its own checkpoints, a project checkpoint opens with plain
stable-baselines3; and progress survives a lost state.json or a damaged last checkpoint."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sysconfig
import zipfile
from dataclasses import replace
from pathlib import Path

import cloudpickle
import pytest

from core.errors import UserError
from core.features.store import FeatureStore
from tests.conftest import PYTHON
from tests.helpers.launch import PreemptAfter, Requeued, small_run
from training.member.checkpoint_data import UntrustedCheckpoint
from training.member.checkpoints import TrainingState
from training.member.member_training import train_only
from training.member.models import load_model, member_configs
from training.member.recovery import job_state
from training.run.job import Hooks, Job

ROLLOUT = 512  # 8 envs x 64 steps
SMALL = [
    "hardware.n_envs=8",
    f"hardware.target_rollout_steps={ROLLOUT}",
    f"training.eval_every_steps={ROLLOUT}",
    "ppo.n_epochs=1",
]


class _Payload:
    """Unpickling it creates `marker`: what a crafted checkpoint would do with os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> Job:
    """A job of 3 rollouts stopped after 2: last checkpoints at 512 and 1024 steps, a best one."""
    run = small_run(tmp_path_factory.mktemp("trust"), 1, 3 * ROLLOUT, *SMALL)
    job = run.jobs[0]
    assert job.n_envs * job.n_steps == ROLLOUT
    preemption = PreemptAfter(2 * ROLLOUT)
    with pytest.raises(Requeued):
        train_only(job, Hooks(advance=preemption.advance, preemption=preemption))
    return job


@pytest.fixture
def job(stopped: Job, tmp_path: Path) -> Job:
    """A copy of the stopped job's run folder, for one test to damage."""
    run_dir = tmp_path / "run"
    shutil.copytree(stopped.run_dir, run_dir)
    return replace(stopped, run_dir=str(run_dir))


def _model_parts(job: Job) -> tuple:
    store = FeatureStore.attach(job.store_path)
    return member_configs(job, store)[0], store


def _with_entries(path: Path, entries: dict[str, object]) -> None:
    """Rewrite the checkpoint's data JSON with these entries pickled as SB3 pickles them."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(members["data"])
    for name, value in entries.items():
        encoded = base64.b64encode(cloudpickle.dumps(value)).decode()
        data[name] = {":type:": "<class 'object'>", ":serialized:": encoded}
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)


def test_the_payload_runs_when_unpickled(tmp_path: Path) -> None:
    """The marker test below can fail: unpickled, the payload does create its file."""
    marker = tmp_path / "ran"
    cloudpickle.loads(cloudpickle.dumps(_Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("entry", ["observation_space", "lr_schedule", "made_up_entry"])
def test_a_pickled_payload_in_a_checkpoint_is_refused_unrun(
    job: Job, tmp_path: Path, entry: str
) -> None:
    marker = tmp_path / "ran"
    state = TrainingState.load(job.files.state)
    path = job.files.checkpoints / str(state.last_checkpoint)
    _with_entries(path, {entry: _Payload(marker)})
    config, store = _model_parts(job)
    if entry == "made_up_entry":
        with pytest.raises(UntrustedCheckpoint, match=f"'{entry}'") as refused:
            load_model(config, path, store)
        assert "nothing was loaded" in str(refused.value) and "fix:" in str(refused.value)
    else:  # an entry SB3 knows is replaced by the run's own value, never read from the file
        model = load_model(config, path, store)
        assert model.observation_space["market"].shape[0] > 0
    assert not marker.exists()


def test_resuming_from_a_crafted_checkpoint_runs_nothing_and_says_so(
    job: Job, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    state = TrainingState.load(job.files.state)
    path = job.files.checkpoints / str(state.last_checkpoint)
    _with_entries(path, {"observation_space": _Payload(marker), "extra": _Payload(marker)})
    warnings: list[str] = []
    with pytest.raises(UntrustedCheckpoint, match=r"holds pickled objects .* 'extra'"):
        train_only(job, Hooks(warn=warnings.append))
    assert not marker.exists()
    assert not [w for w in warnings if "resumed from" in w]  # refused, not skipped over
    assert path.exists()


@pytest.mark.parametrize(
    "pointer", ["../../x.zip", "/tmp/last-000000000256.zip", "sub/last-000000000256.zip", "x"]
)
def test_a_state_file_naming_a_path_is_refused(job: Job, pointer: str) -> None:
    raw = json.loads(job.files.state.read_text())
    raw["last_checkpoint"] = pointer
    job.files.state.write_text(json.dumps(raw))
    with pytest.raises(UserError) as refused:
        job_state(job.files)
    message = str(refused.value)
    assert f"last_checkpoint = {pointer!r} is not a checkpoint file of this job" in message
    assert str(job.files.state) in message and "  fix: " in message


def test_a_state_file_naming_a_link_out_of_its_folder_is_refused(job: Job, tmp_path: Path) -> None:
    state = TrainingState.load(job.files.state)
    outside = tmp_path / "elsewhere.zip"
    shutil.copy(job.files.checkpoints / str(state.last_checkpoint), outside)
    link = job.files.checkpoints / "last-000000009999.zip"
    link.symlink_to(outside)
    raw = json.loads(job.files.state.read_text()) | {"last_checkpoint": link.name}
    job.files.state.write_text(json.dumps(raw))
    with pytest.raises(UserError, match="is not a checkpoint file of this job"):
        job_state(job.files)


def test_a_project_checkpoint_loads_with_plain_stable_baselines3(job: Job, tmp_path: Path) -> None:
    """In a Python that cannot import the project (no site: its editable install is not seen)."""
    state = TrainingState.load(job.files.state)
    path = job.files.checkpoints / str(state.last_checkpoint)
    code = f"""
import sys
sys.path.append({sysconfig.get_paths()["purelib"]!r})
try:
    import training
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("the project is importable here")
from stable_baselines3 import PPO
model = PPO.load({str(path)!r}, device="cpu")
action, _ = model.predict(model.observation_space.sample(), deterministic=True)
assert action.shape == model.action_space.shape, action.shape
print("loaded", model.num_timesteps, type(model.rollout_buffer).__name__)
"""
    done = subprocess.run(
        [PYTHON, "-I", "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["loaded", str(2 * ROLLOUT), "DictRolloutBuffer"]


@pytest.mark.parametrize("damage", ["deleted", "garbled"])
def test_a_lost_state_file_is_recovered_from_the_newest_checkpoint(job: Job, damage: str) -> None:
    if damage == "deleted":
        job.files.state.unlink()
    else:
        job.files.state.write_text('{"timesteps": 5')
    warnings: list[str] = []
    state = train_only(job, Hooks(warn=warnings.append))
    assert state.timesteps == 3 * ROLLOUT and state.finished
    said = [w for w in warnings if "resumed from" in w]  # collapse alarms are warnings too
    assert len(said) == 1, warnings
    assert str(job.files.state) in said[0]
    newest = "resumed from its newest readable checkpoint last-000000001024.zip at 1,024 steps"
    assert newest in said[0]
    assert said[0] in state.warnings
    steps = [e["timesteps"] for e in state.evaluations]
    assert steps == [3 * ROLLOUT]  # what came after the recovered checkpoint


def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one(job: Job) -> None:
    state = TrainingState.load(job.files.state)
    assert state.previous_checkpoint == "last-000000000512.zip"
    last = job.files.checkpoints / str(state.last_checkpoint)
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # cut short
    warnings: list[str] = []
    done = train_only(job, Hooks(warn=warnings.append))
    said = [w for w in warnings if "resumed from" in w]
    assert len(said) == 1, warnings
    assert f"checkpoint {last} cannot be read" in said[0]
    assert "resumed from the previous checkpoint last-000000000512.zip at 512 steps" in said[0]
    assert said[0] in done.warnings
    assert done.timesteps == 3 * ROLLOUT and done.finished
    steps = [e["timesteps"] for e in done.evaluations]
    assert steps == sorted(set(steps)) and steps[-1] == 3 * ROLLOUT


def test_without_a_state_file_or_a_readable_checkpoint_the_job_refuses(job: Job) -> None:
    job.files.state.unlink()
    zips = sorted(job.files.checkpoints.glob("*.zip"))
    for path in zips:
        path.write_bytes(b"PK not a zip")
    with pytest.raises(UserError) as refused:
        train_only(job)
    message = str(refused.value)
    assert "is missing, and no checkpoint of the job to resume from can be read" in message
    assert "  fix: nothing was deleted" in message
    assert sorted(job.files.checkpoints.glob("*.zip")) == zips


def test_a_damaged_last_and_previous_checkpoint_say_how_to_go_on(job: Job) -> None:
    state = TrainingState.load(job.files.state)
    for name in (state.last_checkpoint, state.previous_checkpoint):
        (job.files.checkpoints / str(name)).write_bytes(b"")
    with pytest.raises(UserError) as refused:
        train_only(job)
    message = str(refused.value)
    assert (
        message.startswith("the job cannot resume: checkpoint ")
        and message.count("cannot be read") == 2
    )
    assert f"fix: delete {job.files.state} and --resume" in message
    assert (job.files.checkpoints / str(state.last_checkpoint)).exists()
