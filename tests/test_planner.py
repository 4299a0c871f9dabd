"""Resource planner: invariants on shipped profiles and on random machines, overrides, errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.config import Config, load_config
from core.errors import UserError
from core.hardware.gpus import Gpu
from core.hardware.machine import Hardware, detect, load_machine_file
from core.hardware.planner import MIN_MINIBATCHES, Plan, plan
from tests.conftest import MACHINE_FILES, machine


def assert_invariants(result: Plan, hw: Hardware, config: Config) -> None:
    rollout = result.n_envs * result.n_steps
    assert result.rollout_size == rollout
    assert rollout % result.batch_size == 0, "batch_size must divide n_envs * n_steps"
    assert rollout // result.batch_size >= MIN_MINIBATCHES
    assert result.n_minibatches == rollout // result.batch_size
    assert 1 <= result.members_concurrent <= result.ensemble_size * result.folds
    assert result.members_concurrent <= result.units, "more slots than processes to run"
    assert result.threads_in_use == result.members_concurrent * result.threads_per_member
    assert result.threads_in_use <= hw.usable_cpus, "the plan oversubscribes the CPUs"
    assert result.n_envs == max(result.env_workers, 1) * result.envs_per_worker
    budget = hw.memory_available_gb * (1 - config.hardware.memory_headroom)
    assert result.members_concurrent * result.memory_per_member_gb <= budget + 1e-6
    assert result.waves == math.ceil(result.units / result.members_concurrent)
    if result.device == "cuda":
        assert len(result.gpu_assignment) == result.members_concurrent
        for index in set(result.gpu_assignment):
            gpu = next(g for g in hw.gpus if g.index == index)
            slots = result.gpu_assignment.count(index)
            room = gpu.free_memory_gb * (1 - config.hardware.gpu_memory_headroom)
            assert slots * result.gpu_memory_per_member_gb <= room + 1e-6
    else:
        assert result.gpu_assignment == ()
    assert set(result.decisions) >= {"device", "members_concurrent", "n_steps", "batch_size"}


@pytest.mark.parametrize("path", MACHINE_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("ensemble", [1, 3, 20, 100])
def test_shipped_profiles_give_valid_plans(path: Path, ensemble: int, default_config) -> None:
    hw = load_machine_file(path)
    assert_invariants(plan(hw, default_config, ensemble), hw, default_config)


def test_this_machine_gives_a_valid_plan(default_config) -> None:
    hw = detect()
    assert_invariants(plan(hw, default_config, 2), hw, default_config)


def test_256_core_server_is_filled_by_an_ensemble_of_20(default_config) -> None:
    hw = load_machine_file(Path("config/hardware/server-256core-rtx3090.yaml"))
    result = plan(hw, default_config, 20)
    assert result.members_concurrent == 20
    assert result.threads_in_use >= 0.9 * hw.usable_cpus
    assert result.device == "cpu"  # one member's minibatch is too little work for the RTX 3090
    assert "gpu_min_minibatch_macs" in result.decisions["device"].why


def test_idle_cpus_are_explained() -> None:
    config = load_config(overrides=["hardware.vec_env=subproc"])
    hw = load_machine_file(Path("config/hardware/server-256core-rtx3090.yaml"))
    result = plan(hw, config, 1)
    assert result.env_workers == config.hardware.max_env_workers_per_member
    assert any("stay idle" in reason for reason in result.reasons)


def test_batch_env_steps_in_the_learner(default_config) -> None:
    hw = load_machine_file(Path("config/hardware/server-256core-rtx3090.yaml"))
    one = plan(hw, default_config, 1)
    assert (one.env_workers, one.n_envs, one.n_steps) == (0, 64, 128)
    assert one.torch_threads == 16 and any("stay idle" in reason for reason in one.reasons)
    laptop = plan(machine(2, memory_gb=24), default_config, 1)
    assert (laptop.env_workers, laptop.torch_threads, laptop.threads_in_use) == (0, 2, 2)
    assert "inside the learner" in laptop.decisions["env_workers"].why


def test_worker_keys_need_the_subproc_env() -> None:
    config = load_config(overrides=["hardware.env_workers=4"])
    with pytest.raises(UserError, match=r"hardware\.vec_env=subproc"):
        plan(load_machine_file(Path("config/hardware/laptop-4core.yaml")), config, 1)


def test_large_network_goes_to_the_gpu() -> None:
    config = load_config(overrides=["ppo.net_arch=[2048, 2048, 2048]"])
    hw = load_machine_file(Path("config/hardware/h100-16core.yaml"))
    result = plan(hw, config, 8)
    assert result.device == "cuda"
    assert result.decisions["device"].chosen == "auto"
    assert_invariants(result, hw, config)


def test_gpu_memory_limits_members_and_spreads_them_over_gpus() -> None:
    config = load_config(overrides=["ppo.net_arch=[4096, 4096]", "hardware.device=cuda"])
    gpus = (Gpu("small", 4.0, 2.0, 0), Gpu("big", 24.0, 24.0, 1))
    hw = machine(64, memory_gb=512, gpus=gpus)
    result = plan(hw, config, 32)
    assert_invariants(result, hw, config)
    assert result.gpu_assignment.count(1) > result.gpu_assignment.count(0)
    assert result.members_concurrent < 32


def test_forcing_cuda_without_a_gpu_is_a_clear_error(default_config) -> None:
    config = load_config(overrides=["hardware.device=cuda"])
    with pytest.raises(UserError, match="no GPU was found"):
        plan(machine(8), config, 1)


def test_batch_size_override_is_kept_and_checked() -> None:
    config = load_config(overrides=["ppo.batch_size=512"])
    result = plan(machine(8), config, 1)
    assert result.batch_size == 512 and result.decisions["batch_size"].chosen == "config"
    assert_invariants(result, machine(8), config)

    bad = load_config(overrides=["ppo.batch_size=1000", "ppo.n_steps=256", "hardware.n_envs=4"])
    with pytest.raises(UserError) as caught:
        plan(machine(8), bad, 1)
    assert "ppo.batch_size=1000" in str(caught.value) and "256" in str(caught.value)


def test_n_envs_override_is_split_over_workers() -> None:
    config = load_config(overrides=["hardware.n_envs=6"])
    result = plan(machine(16), config, 1)
    assert result.n_envs == 6 and result.n_envs % max(result.env_workers, 1) == 0
    assert_invariants(result, machine(16), config)


def test_oversubscribing_overrides_are_refused() -> None:
    config = load_config(overrides=["hardware.torch_threads=16"])
    with pytest.raises(UserError, match="oversubscribes"):
        plan(machine(4), config, 1)
    config = load_config(overrides=["hardware.members_concurrent=9"])
    with pytest.raises(UserError, match="members_concurrent=9"):
        plan(machine(8), config, 20)


def test_memory_limits_members_running_at_once(default_config) -> None:
    roomy = plan(machine(32, memory_gb=256), default_config, 16)
    tight = plan(machine(32, memory_gb=8), default_config, 16)
    assert tight.members_concurrent < roomy.members_concurrent
    assert "memory" in tight.decisions["members_concurrent"].why
    assert_invariants(tight, machine(32, memory_gb=8), default_config)


def test_too_little_memory_for_one_member_is_a_clear_error(default_config) -> None:
    with pytest.raises(UserError, match="GB of RAM"):
        plan(machine(4, memory_gb=0.5), default_config, 1)


def test_one_cpu_runs_envs_in_the_learner(default_config) -> None:
    result = plan(machine(1), default_config, 4)
    assert result.env_workers == 0 and result.threads_in_use == 1
    assert result.members_concurrent == 1 and result.waves == 4


gpu_strategy = st.builds(
    Gpu,
    name=st.just("gpu"),
    memory_gb=st.floats(8, 141),
    free_memory_gb=st.floats(1, 8),
    index=st.integers(0, 7),
)


@given(
    usable=st.integers(1, 1024),
    memory_gb=st.floats(4, 4096),
    gpus=st.lists(gpu_strategy, max_size=4, unique_by=lambda g: g.index).map(tuple),
    ensemble=st.integers(1, 200),
    net=st.sampled_from(["[64, 64]", "[256, 256]", "[2048, 2048]"]),
    rollout=st.sampled_from([2048, 8192, 65536]),
    max_workers=st.integers(1, 128),
    folds=st.sampled_from([None, 1, 2, 5]),
    learner=st.sampled_from(["auto", "separate"]),
)
def test_random_machines_get_plans_that_keep_the_invariants(
    usable, memory_gb, gpus, ensemble, net, rollout, max_workers, folds, learner
) -> None:
    config = load_config(
        overrides=[
            f"ppo.net_arch={net}",
            f"hardware.target_rollout_steps={rollout}",
            f"hardware.max_env_workers_per_member={max_workers}",
            f"ensemble.size={ensemble}",
            f"ensemble.learner={learner}",
        ]
    )
    hw = machine(usable, memory_gb=memory_gb, gpus=gpus, logical=usable * 2)
    try:
        result = plan(hw, config, folds=folds)
    except UserError as exc:  # only a machine too small for even one member may refuse
        assert "memory" in str(exc)
        return
    assert_invariants(result, hw, config)


@given(cores=st.integers(1, 16))
def test_64_times_the_cores_are_used(cores: int) -> None:
    config = load_config()
    small = plan(machine(cores, memory_gb=4096), config, 64 * cores)
    big = plan(machine(64 * cores, memory_gb=4096), config, 64 * cores)
    assert big.threads_in_use >= 32 * small.threads_in_use
    assert big.threads_in_use >= 0.9 * 64 * cores


def test_a_resumed_run_keeps_its_plan_on_its_own_machine(tmp_path: Path, default_config) -> None:
    """plan.json round-trips; it is kept where it was made (same CPUs and GPUs), not elsewhere."""
    from core.atomic import write_json
    from training.commands.planning import plan_from_json, saved_plan
    from training.run.files import RunFiles

    here = machine(8)
    made = plan(here, default_config, 4)
    files = RunFiles(tmp_path)
    write_json(files.plan, {"hardware": here.to_json(), "plan": made.to_json()})
    assert plan_from_json(made.to_json()) == made
    assert saved_plan(files, here) == made
    assert saved_plan(files, machine(256)) is None
    assert saved_plan(files, machine(8, gpus=(Gpu("RTX 3090", 24.0, 24.0),))) is None
    assert saved_plan(RunFiles(tmp_path / "elsewhere"), here) is None  # no plan.json


def test_the_jobs_line_estimates_training_time_only_from_a_measured_pace() -> None:
    """With --autotune's pace, waves x whole-rollout steps / steps per second; without, it says how
    to get one rather than guess."""
    import dataclasses

    from core.config import load_config
    from training.commands.pipeline import jobs_line

    config = load_config(overrides=["ppo.total_timesteps=60000", "ensemble.learner=separate"])
    hw = load_machine_file(Path("config/hardware/laptop-4core.yaml"))
    planned = plan(hw, config, 1)
    assert "no wall-time estimate: --autotune" in jobs_line(config, 3, planned)
    rollout = planned.n_envs * planned.n_steps
    trained = -(-60_000 // rollout) * rollout
    paced = dataclasses.replace(planned, measured_steps_per_s=trained / 600.0, waves=2)
    line = jobs_line(config, 3, paced)
    assert "training takes about 20 min at the pace --autotune measured" in line  # 2 x 10 min
