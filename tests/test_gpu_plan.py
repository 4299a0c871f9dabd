"""The GPU path of the plan on the described machines: device by the measured work rule, groups
sized by GPU memory and a fold's members, refusals; and a group's iteration on CUDA where one
exists (skipped cleanly elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import load_config
from core.errors import UserError
from core.hardware.gpus import Gpu
from core.hardware.machine import load_machine_file
from core.hardware.planner import estimate_policy_shape, plan
from tests.conftest import machine

GPU_NODES = ("config/hardware/h100-16core.yaml", "config/hardware/server-256core-rtx3090.yaml")
QUICK = Path("config/presets/quick.yaml")


@pytest.mark.parametrize("path", GPU_NODES)
@pytest.mark.parametrize("presets", [[], [QUICK]], ids=["default", "quick"])
def test_64_members_plan_as_groups_of_at_least_32_on_the_gpu(path: str, presets: list) -> None:
    hardware = load_machine_file(Path(path))
    config = load_config(presets, overrides=["ensemble.size=64"])
    result = plan(hardware, config, folds=3)
    assert (result.device, result.learner) == ("cuda", "population")
    assert result.group_size >= 32
    assert len(result.gpu_assignment) == result.members_concurrent >= 1
    free = hardware.gpus[0].free_memory_gb * (1 - config.hardware.gpu_memory_headroom)
    assert result.members_concurrent * result.gpu_memory_per_member_gb <= free
    assert "gpu_min_minibatch_macs" in result.decisions["device"].why


def test_too_little_work_per_minibatch_stays_on_the_cpu() -> None:
    hardware = load_machine_file(Path(GPU_NODES[0]))
    config = load_config([QUICK])  # one member of a 27k-parameter MLP: launch-latency bound
    result = plan(hardware, config, folds=3)
    assert result.device == "cpu"
    shape = estimate_policy_shape(config)
    assert f"{shape.macs:,} multiply-adds" in result.decisions["device"].why


def test_the_threshold_decides() -> None:
    hardware = load_machine_file(Path(GPU_NODES[0]))
    shape = estimate_policy_shape(load_config([QUICK]))
    work = 8 * 1024 * shape.macs  # a group of 8 at batch 1,024
    sizes = ["ensemble.size=8"]
    below = load_config([QUICK], overrides=[*sizes, f"hardware.gpu_min_minibatch_macs={work + 1}"])
    at = load_config([QUICK], overrides=[*sizes, f"hardware.gpu_min_minibatch_macs={work}"])
    assert plan(hardware, below, folds=3).device == "cpu"
    assert plan(hardware, at, folds=3).device == "cuda"


def test_a_group_too_large_for_the_gpu_is_cut_and_said() -> None:
    small = Gpu("small GPU", 4.0, 3.0)
    hardware = machine(16, memory_gb=128, gpus=[small])
    config = load_config(overrides=["ensemble.size=64"])  # default policy: 0.19 GB a member
    result = plan(hardware, config, folds=2)
    assert result.device == "cuda" and 1 < result.group_size < 64
    why = result.decisions["group_size"].why
    assert "GPU memory" in why and "groups per fold" not in why
    assert result.members_concurrent * result.gpu_memory_per_member_gb <= 3.0 * 0.85


def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="no GPU was found"):
        plan(machine(4), load_config(overrides=["hardware.device=cuda"]), 2)


def test_a_cpu_only_machine_never_plans_the_gpu() -> None:
    result = plan(machine(16, memory_gb=64), load_config(overrides=["ensemble.size=64"]), folds=3)
    assert result.device == "cpu" and result.gpu_assignment == ()


@pytest.mark.cuda
def test_a_group_trains_an_iteration_on_cuda(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    import argparse

    from bench.bench_policies import build_store
    from core.features.store import FeatureStore
    from training.population.device_timing import time_groups

    settings = argparse.Namespace(assets=2, years=0.5, signal=0.0)
    store = FeatureStore.attach(build_store(tmp_path, settings))
    timings = time_groups(load_config([QUICK]), store, "cuda", [1, 4], (8, 64, 128), 1)
    assert [t.size for t in timings] == [1, 4]
    assert all(t.seconds_per_iteration > 0 for t in timings)


def test_a_cached_device_probe_replaces_the_threshold(tmp_path: Path) -> None:
    from core.hardware.autotune import (
        DeviceProbe,
        device_cache_file,
        load_device_probe,
        save_autotune,
    )

    config = load_config([QUICK], overrides=["ensemble.size=16", f"data.cache_dir={tmp_path}"])
    hardware = load_machine_file(Path(GPU_NODES[0]))
    path = device_cache_file(config, "key", hardware.gpus[0].name)
    rows = ({"size": 1, "cpu_s": 1.0, "cuda_s": 2.0}, {"size": 8, "cpu_s": 2.0, "cuda_s": 1.0})
    save_autotune(path, DeviceProbe("key", "node", hardware.gpus[0].name, 8, rows))
    probe = load_device_probe(path)
    assert probe is not None and probe.crossing == 8 and probe.rows == rows
    measured = plan(hardware, config, folds=3, device_probe=probe)
    assert measured.device == "cuda" and measured.decisions["device"].chosen == "measured"
    assert "CUDA wins from groups of 8" in measured.decisions["device"].why
    later = DeviceProbe("key", "node", "H100", 32, rows, "file")  # 16 members < the crossing
    assert plan(hardware, config, folds=3, device_probe=later).device == "cpu"
    never = DeviceProbe("key", "node", "H100", None, rows, "file")
    assert plan(hardware, config, folds=3, device_probe=never).device == "cpu"
    other = device_cache_file(config, "key", "NVIDIA GeForce RTX 3090")
    assert other != path  # another GPU is another probe
