"""Hardware detection: cgroup trees, SLURM variables, profiles, and the live machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import UserError
from core.hardware import cgroups, slurm
from core.hardware.machine import CpuLimits, _memory_limits, detect, load_machine_file
from tests.conftest import MACHINE_FILES, run_snippet

GIB = 2**30


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v2_tree(tmp_path: Path, own: str, parent: str | None = None) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu memory\n")
    write(root / "job" / "task" / "cpu.max", own)
    if parent is not None:
        write(root / "job" / "cpu.max", parent)
    self_cgroup = tmp_path / "self_cgroup"
    write(self_cgroup, "0::/job/task\n")
    return root, self_cgroup


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    root, self_cgroup = v2_tree(tmp_path, "200000 100000\n")
    quota = cgroups.read_cpu_quota(root, self_cgroup)
    assert quota is not None and quota.cpus == 2.0
    assert "cpu.max" in quota.source


def test_cgroup_v2_parent_limit_applies(tmp_path: Path) -> None:
    root, self_cgroup = v2_tree(tmp_path, "max 100000\n", parent="150000 100000\n")
    quota = cgroups.read_cpu_quota(root, self_cgroup)
    assert quota is not None and quota.cpus == 1.5
    assert str(root / "job" / "cpu.max") in quota.source


def test_cgroup_v2_unlimited(tmp_path: Path) -> None:
    root, self_cgroup = v2_tree(tmp_path, "max 100000\n")
    assert cgroups.read_cpu_quota(root, self_cgroup) is None


def test_cgroup_v1_quota_inside_container(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "300000\n")
    write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    self_cgroup = tmp_path / "self_cgroup"
    # The host's path does not exist inside the container's mount: the mount itself counts.
    write(self_cgroup, "3:cpu,cpuacct:/docker/0123abcd\n")
    quota = cgroups.read_cpu_quota(root, self_cgroup)
    assert quota is not None and quota.cpus == 3.0


def test_cgroup_v1_no_quota(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cpu" / "cpu.cfs_quota_us", "-1\n")
    write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert cgroups.read_cpu_quota(root, tmp_path / "missing") is None


def test_cgroup_memory_v2_and_v1(tmp_path: Path) -> None:
    root, self_cgroup = v2_tree(tmp_path, "max 100000\n")
    write(root / "job" / "task" / "memory.max", f"{8 * GIB}\n")
    write(root / "job" / "task" / "memory.current", f"{GIB}\n")
    limit = cgroups.read_memory_limit(root, self_cgroup)
    assert limit is not None and limit.limit_bytes == 8 * GIB and limit.usage_bytes == GIB

    v1 = tmp_path / "v1"
    write(v1 / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")
    assert cgroups.read_memory_limit(v1, tmp_path / "missing") is None
    write(v1 / "memory" / "memory.limit_in_bytes", f"{4 * GIB}\n")
    limit = cgroups.read_memory_limit(v1, tmp_path / "missing")
    assert limit is not None and limit.limit_bytes == 4 * GIB


def test_memory_available_is_capped_by_the_cgroup() -> None:
    memory = _memory_limits(
        physical_total=64 * GIB,
        physical_available=60 * GIB,
        cgroup_limit=cgroups.MemoryLimit(8 * GIB, 3 * GIB, "cgroup test"),
        slurm_limit=None,
    )
    assert memory.total_gb == 8 and memory.available_gb == 5
    assert "cgroup test" in memory.sources["memory_gb"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("72(x2),36", [72, 72, 36]), ("8", [8]), ("16(x3)", [16, 16, 16]), ("4,2(x2)", [4, 2, 2])],
)
def test_slurm_compressed_cpus_per_node(text: str, expected: list[int]) -> None:
    assert slurm.expand_cpus_per_node(text) == expected


def test_slurm_bad_cpus_per_node_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="SLURM_JOB_CPUS_PER_NODE"):
        slurm.expand_cpus_per_node("72[x2]")


def test_slurm_limit_is_the_smallest_and_uses_the_node_id() -> None:
    env = {"SLURM_JOB_CPUS_PER_NODE": "72(x2),36", "SLURM_NODEID": "2", "SLURM_CPUS_ON_NODE": "72"}
    limit = slurm.slurm_cpu_limit(env)
    assert limit is not None and limit.value == 36 and "node 2" in limit.source
    env["SLURM_CPUS_PER_TASK"] = "8"
    limit = slurm.slurm_cpu_limit(env)
    assert limit is not None and limit.value == 8
    assert slurm.slurm_cpu_limit({}) is None


def test_slurm_memory() -> None:
    per_cpu = slurm.slurm_memory_limit_bytes({"SLURM_MEM_PER_CPU": "2048"}, cpus=4)
    assert per_cpu is not None and per_cpu.value == 8 * GIB
    per_node = slurm.slurm_memory_limit_bytes({"SLURM_MEM_PER_NODE": "1024"}, cpus=4)
    assert per_node is not None and per_node.value == GIB


def test_usable_cpus_take_the_smallest_limit_and_floor_the_quota() -> None:
    limits = CpuLimits(
        logical=64,
        logical_source="logical",
        affinity=32,
        affinity_source="affinity",
        cgroup=cgroups.CpuQuota(2.5, "quota"),
    )
    assert limits.usable()[0] == 2
    assert limits.usable()[1].startswith("quota")
    tiny = CpuLimits(logical=4, logical_source="l", cgroup=cgroups.CpuQuota(0.5, "q"))
    assert tiny.usable()[0] == 1


EXPECTED_PROFILES = {
    "laptop-4core.yaml": (8, 16.0, 0),
    "server-256core-rtx3090.yaml": (256, 1024.0, 1),
    "slurm-8cpu-on-128core-node.yaml": (8, 32.0, 0),
    "container-2cpu-quota-on-64core.yaml": (2, 8.0, 0),
    "h100-16core.yaml": (16, 128.0, 1),
}


def test_every_shipped_profile_is_covered() -> None:
    assert {p.name for p in MACHINE_FILES} == set(EXPECTED_PROFILES)


@pytest.mark.parametrize("path", MACHINE_FILES, ids=lambda p: p.stem)
def test_profiles_combine_raw_limits(path: Path) -> None:
    machine = load_machine_file(path)
    usable, memory_gb, n_gpus = EXPECTED_PROFILES[path.name]
    assert machine.usable_cpus == usable
    assert machine.memory_gb == memory_gb
    assert len(machine.gpus) == n_gpus
    assert machine.memory_available_gb <= machine.memory_gb
    assert set(machine.sources) >= {"usable_cpus", "memory_gb", "gpus"}


def test_bad_profile_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nlogical_cpu: 8\nmemory_gb: 4\n")
    with pytest.raises(UserError) as caught:
        load_machine_file(path)
    message = str(caught.value)
    assert "bad.yaml" in message and "did you mean 'logical_cpus'" in message


def test_live_detection_is_consistent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    machine = detect()
    assert 1 <= machine.usable_cpus <= machine.logical_cpus
    assert 0 < machine.memory_available_gb <= machine.memory_gb
    assert machine.gpus == ()
    assert "CUDA_VISIBLE_DEVICES" in machine.sources["gpus"]


def test_live_detection_honours_slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    machine = detect()
    assert machine.usable_cpus == 1
    assert "SLURM_CPUS_PER_TASK=1" in machine.sources["usable_cpus"]


def test_detection_and_planning_import_neither_numpy_nor_torch() -> None:
    code = (
        "import sys\n"
        "from core.hardware.machine import detect\n"
        "from core.config import load_config\n"
        "from core.hardware.planner import plan\n"
        "plan(detect(), load_config(), 4)\n"
        "print(sorted(m for m in ('numpy', 'torch') if m in sys.modules))\n"
    )
    assert run_snippet(code).strip() == "[]"
