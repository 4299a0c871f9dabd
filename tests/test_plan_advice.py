"""What the plan promises: its processes at once count the run's jobs (or groups), the advice on
idle CPUs changes the plan as it says when applied, hyper-threads are said, and a SLURM
allocation's GPUs reach the plan."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.config import load_config
from core.errors import UserError
from core.hardware.machine import Hardware, load_machine_file
from core.hardware.planner import Plan, plan
from tests.conftest import MACHINE_FILES, machine
from training.launcher.profile import ClusterProfile, gpu_gres, load_cluster_profile

SERVER = Path("config/hardware/server-256core-rtx3090.yaml")
ADVICE = re.compile(
    r"--set (\S+)=(\S+)(?: \(--ensemble \d+\))? keeps (\d+) of (\d+) busy "
    r"\((\d+) at once x (\d+) threads\)"
)
BASES = {
    "batch": [],
    "separate": ["ensemble.learner=separate"],
    "subproc": ["hardware.vec_env=subproc"],
    "fixed-slots": ["hardware.members_concurrent=2"],
}


def advice(result: Plan) -> list[tuple[str, str, tuple[int, ...]]]:
    return [
        (key, value, tuple(map(int, numbers)))
        for note in result.notes
        for key, value, *numbers in ADVICE.findall(note)
    ]


@pytest.mark.parametrize("base", BASES, ids=str)
def test_every_suggestion_on_the_shipped_profiles_does_what_it_says(base: str) -> None:
    """Each `--set` an idle-CPU note names, applied as --set applies it, gives the plan it claims:
    that many CPUs busy, that many at once, that many threads, more busy than before."""
    tried = 0
    for path in MACHINE_FILES:
        hw = load_machine_file(path)
        for size in (1, 3, 20):
            overrides = [*BASES[base], f"ensemble.size={size}"]
            before = plan(hw, load_config(overrides=overrides), folds=2)
            if before.threads_in_use < before.usable_cpus:
                assert any("stay idle" in note for note in before.notes)
            for key, value, (busy, usable, at_once, threads) in advice(before):
                after = plan(hw, load_config(overrides=[*overrides, f"{key}={value}"]), folds=2)
                where = f"{path.stem}, {overrides}: --set {key}={value}"
                assert usable == hw.usable_cpus, where
                assert (after.threads_in_use, after.members_concurrent) == (busy, at_once), where
                assert after.threads_per_member == threads, where
                assert after.threads_in_use > before.threads_in_use, where
                tried += 1
    assert tried > 0, "no profile gave advice: the test checked nothing"


def test_the_batch_env_is_never_told_to_raise_env_workers() -> None:
    for path in MACHINE_FILES:
        for size in (1, 3, 20, 100):
            result = plan(load_machine_file(path), load_config(), size, folds=2)
            suggested = [key for key, _, _ in advice(result)]
            assert "hardware.max_env_workers_per_member" not in suggested
            assert not any("raise --ensemble or" in note for note in result.notes)


def test_the_256_core_server_runs_every_job_of_20_members_on_2_folds_at_once() -> None:
    hw = load_machine_file(SERVER)
    separate = plan(
        hw, load_config(overrides=["ensemble.learner=separate", "ensemble.size=20"]), folds=2
    )
    assert (separate.members_concurrent, separate.units, separate.waves) == (40, 40, 1)
    assert separate.threads_per_member == 6 and separate.threads_in_use == 240
    assert "40 jobs (20 member(s) x 2 folds)" in separate.decisions["members_concurrent"].why
    auto = plan(hw, load_config(overrides=["ensemble.size=20", "hardware.device=cpu"]), folds=2)
    assert auto.learner == "separate"  # 40 slots: groups of one member have nothing to batch
    assert "a group of one has nothing to batch" in auto.decisions["learner"].why
    assert (auto.members_concurrent, auto.units, auto.threads_per_member) == (40, 40, 6)
    idle = next(note for note in auto.notes if "stay idle" in note)
    assert "leave 16 over" in idle and "--set ensemble.size=32" in idle
    forced = plan(
        hw, load_config(overrides=["ensemble.size=20", "ensemble.learner=population"]), folds=2
    )
    assert forced.learner == "population" and forced.units == forced.members_concurrent


def test_groups_that_are_fewer_than_the_slots_get_their_cpus() -> None:
    """20 members on 3 folds, 40 CPUs: 40 slots would hold 30 groups of 2 (the fewest that finish
    as soon), so the slots shrink to the 30 groups, one process each."""
    config = load_config(overrides=["ensemble.size=20"])
    result = plan(machine(40, memory_gb=256), config, folds=3)
    assert result.learner == "population"
    assert (result.units, result.members_concurrent, result.waves) == (30, 30, 1)
    assert "then the 30 group(s) the run forms" in result.decisions["members_concurrent"].why


def test_without_folds_the_plan_is_for_one_fold() -> None:
    config = load_config(overrides=["ensemble.learner=separate"])
    result = plan(machine(8), config, 3)
    assert (result.members_concurrent, result.folds, result.units) == (3, 1, 3)
    assert not any("--set ensemble.size" in note for note in result.notes)


def test_hyperthreads_are_said_where_threads_outnumber_the_cores() -> None:
    on_cpu = ["ensemble.size=20", "hardware.device=cpu"]  # the CPU plan: threads on every core
    result = plan(load_machine_file(SERVER), load_config(overrides=on_cpu), folds=2)
    note = next(note for note in result.notes if "hyper-threads are counted" in note)
    assert "240 threads on 128 physical cores" in note and "not measured" in note
    found = re.search(r"To keep to physical cores: (.+) keeps (\d+) threads on the 128 cores", note)
    assert found is not None, note
    sets = [part.strip() for part in found.group(1).split("--set") if part.strip()]
    kept = plan(load_machine_file(SERVER), load_config(overrides=[*on_cpu, *sets]), folds=2)
    assert kept.threads_in_use == int(found.group(2)) <= 128
    laptop = plan(machine(4, logical=4), load_config(), 4, folds=2)
    assert not any("hyper-threads" in note for note in laptop.notes)


def test_the_example_profiles_gpu_reaches_the_plan() -> None:
    allocation = load_cluster_profile("example").allocation()
    assert [(g.memory_gb, g.free_memory_gb) for g in allocation.gpus] == [(40.0, 40.0)]
    assert "gpus_per_task=1" in allocation.sources["gpus"]
    result = plan(allocation, load_config(), 1)
    described = machine(16, memory_gb=64, gpus=allocation.gpus)
    same = plan(described, load_config(), 1)
    assert result.device == same.device == "cpu"  # the default policy is too small for a GPU
    assert result.decisions["device"].why == same.decisions["device"].why
    assert "gpu_min_minibatch_macs" in result.decisions["device"].why


def test_a_gres_gpu_without_memory_is_said_not_invented() -> None:
    profile = ClusterProfile(name="g", cpus_per_task=8, mem_gb=32, sbatch=["--gres=gpu:a100:2"])
    allocation = profile.allocation()
    assert [(g.name, g.memory_gb, g.index) for g in allocation.gpus] == [
        ("a100", None, 0),
        ("a100", None, 1),
    ]
    small = plan(allocation, load_config(), 1)
    assert small.device == "cpu" and "memory is not stated" in small.decisions["device"].why
    big = plan(allocation, load_config(overrides=["hardware.gpu_min_minibatch_macs=0"]), 2)
    assert big.device == "cuda" and "does not check" in big.decisions["device"].why
    assert big.gpu_assignment == (0, 1)


def test_gres_values_and_a_disagreeing_count() -> None:
    assert gpu_gres("gpu:1") == (None, 1)
    assert gpu_gres("gpu:a100:2,tmpfs:10G") == ("a100", 2)
    assert gpu_gres("gpu") == (None, 1)
    assert gpu_gres("tmpfs:10G") == (None, 0)
    twice = ClusterProfile(name="t", gpus_per_task=1, sbatch=["--gres=gpu:2"])
    with pytest.raises(UserError, match="state the GPUs once"):
        twice.allocation()


def test_no_gpu_is_a_reason_never_an_empty_one() -> None:
    allocation = ClusterProfile(name="c", cpus_per_task=4, mem_gb=8).allocation()
    why = plan(allocation, load_config(), 1).decisions["device"].why
    assert why.startswith("no GPU (cluster profile c: none asked for")
    bare = Hardware(2, 2, 2, 8.0, 8.0)  # names no source for its GPUs
    assert plan(bare, load_config(), 1).decisions["device"].why == "no GPU (the machine lists none)"


def test_a_run_planned_again_counts_its_folds_jobs(tmp_path: Path) -> None:
    """--resume on another machine plans again: the run's jobs (members x folds) come from its
    jobs.json, so the processes at once are the same count a new run would get."""
    from tests.helpers.launch import small_run
    from training.commands.planning import replan
    from training.run.files import RunFiles

    run = small_run(tmp_path, 2, 2048, "walk_forward.max_folds=2", "ensemble.learner=separate")
    folds = len({job.fold.index for job in run.jobs})
    resource_plan, why = replan(RunFiles(run.run_dir), run.config, machine(16), None)
    assert folds == 2 and resource_plan.folds == 2 and "planned again" in why
    assert (resource_plan.units, resource_plan.members_concurrent) == (4, 4)
