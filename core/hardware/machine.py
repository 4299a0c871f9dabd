"""What this machine (or a described one) offers: usable CPUs, memory and GPUs, each with its source.

Usable CPUs are the smallest of: logical CPUs, the affinity mask, the cgroup CPU quota and the
SLURM allocation. Memory is the smallest of physical RAM, the cgroup limit and SLURM's grant.
Detection reads the live machine; `load_machine_file` reads a YAML description and runs the very
same combination rules, so a laptop can preview the plan of a 256-core node.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import psutil
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.config import format_validation_error, read_yaml_mapping
from core.errors import UserError
from core.hardware import cgroups, gpus, slurm
from core.hardware.gpus import Gpu
from core.units import GIB


@dataclass(frozen=True)
class Hardware:
    usable_cpus: int
    logical_cpus: int
    physical_cores: int
    memory_gb: float
    memory_available_gb: float
    gpus: tuple[Gpu, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)
    name: str = "this machine"

    def to_json(self) -> dict:
        data = asdict(self)
        data["gpus"] = [gpu.to_json() for gpu in self.gpus]
        return data


@dataclass(frozen=True)
class CpuLimits:
    """Raw CPU readings; `usable` applies the rule every caller must share."""

    logical: int
    logical_source: str
    affinity: int | None = None
    affinity_source: str = ""
    cgroup: cgroups.CpuQuota | None = None
    slurm: slurm.SlurmLimit | None = None

    def usable(self) -> tuple[int, str]:
        candidates: list[tuple[int, str]] = [(self.logical, self.logical_source)]
        if self.affinity is not None:
            candidates.append((self.affinity, self.affinity_source))
        if self.cgroup is not None:
            # Floor: a 2.5-CPU quota cannot keep 3 busy threads fed.
            candidates.append((max(1, math.floor(self.cgroup.cpus)), self.cgroup.source))
        if self.slurm is not None:
            candidates.append((int(self.slurm.value), self.slurm.source))
        count, source = min(candidates, key=lambda c: c[0])
        if len(candidates) == 1:
            return count, source
        considered = "; ".join(f"{n} from {s}" for n, s in candidates)
        return count, f"{source} — the smallest of: {considered}"


def detect(environ: Mapping[str, str] | None = None) -> Hardware:
    """Read the live machine. Imports neither numpy nor torch (thread limits are not set yet)."""
    env = os.environ if environ is None else environ
    logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False)
    affinity = _affinity_count()
    limits = CpuLimits(
        logical=logical,
        logical_source="psutil.cpu_count(logical=True)",
        affinity=affinity,
        affinity_source="sched_getaffinity (CPU affinity mask)",
        cgroup=cgroups.read_cpu_quota(),
        slurm=slurm.slurm_cpu_limit(env),
    )
    usable, usable_source = limits.usable()
    vm = psutil.virtual_memory()
    memory = _memory_limits(
        physical_total=vm.total,
        physical_available=vm.available,
        cgroup_limit=cgroups.read_memory_limit(),
        slurm_limit=slurm.slurm_memory_limit_bytes(env, usable),
    )
    gpu_list, gpu_source = gpus.detect_gpus(dict(env))
    sources = {
        "usable_cpus": usable_source,
        "logical_cpus": "psutil.cpu_count(logical=True)",
        "physical_cores": "psutil.cpu_count(logical=False)"
        if physical
        else "unknown: assumed = logical",
        **memory.sources,
        "gpus": gpu_source,
    }
    return Hardware(
        usable_cpus=usable,
        logical_cpus=logical,
        physical_cores=physical or logical,
        memory_gb=memory.total_gb,
        memory_available_gb=memory.available_gb,
        gpus=tuple(gpu_list),
        sources=sources,
    )


def _affinity_count() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return None


@dataclass(frozen=True)
class _Memory:
    total_gb: float
    available_gb: float
    sources: dict[str, str]


def _memory_limits(
    physical_total: int,
    physical_available: int,
    cgroup_limit: cgroups.MemoryLimit | None,
    slurm_limit: slurm.SlurmLimit | None,
    physical_sources: tuple[str, str] = (
        "psutil.virtual_memory().total",
        "psutil.virtual_memory().available",
    ),
) -> _Memory:
    """Total = the tightest limit; available = what that limit still allows, never above free RAM."""
    total, total_source = physical_total, physical_sources[0]
    available, available_source = physical_available, physical_sources[1]
    if cgroup_limit is not None and cgroup_limit.limit_bytes < total:
        total, total_source = cgroup_limit.limit_bytes, cgroup_limit.source
        if cgroup_limit.usage_bytes is not None:
            headroom = max(0, cgroup_limit.limit_bytes - cgroup_limit.usage_bytes)
            if headroom < available:
                available, available_source = headroom, f"{cgroup_limit.source} minus current usage"
    if slurm_limit is not None and slurm_limit.value < total:
        total, total_source = int(slurm_limit.value), slurm_limit.source
    if available > total:
        available, available_source = total, f"{total_source} (capped at the limit)"
    return _Memory(
        total_gb=round(total / GIB, 2),
        available_gb=round(available / GIB, 2),
        sources={"memory_gb": total_source, "memory_available_gb": available_source},
    )


class _GpuSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    memory_gb: Annotated[float, Field(gt=0)]
    free_memory_gb: Annotated[float, Field(ge=0)] | None = None


class HardwareProfile(BaseModel):
    """A described machine. Give raw limits (affinity, cgroup, SLURM) or usable_cpus directly."""

    model_config = ConfigDict(extra="forbid")
    name: str
    logical_cpus: Annotated[int, Field(ge=1)]
    physical_cores: Annotated[int, Field(ge=1)] | None = None
    usable_cpus: Annotated[int, Field(ge=1)] | None = None
    affinity_cpus: Annotated[int, Field(ge=1)] | None = None
    cgroup_cpu_quota: Annotated[float, Field(gt=0)] | None = None
    slurm_env: dict[str, str] | None = None
    memory_gb: Annotated[float, Field(gt=0)]
    memory_available_gb: Annotated[float, Field(gt=0)] | None = None
    cgroup_memory_limit_gb: Annotated[float, Field(gt=0)] | None = None
    gpus: list[_GpuSpec] = []


def load_machine_file(path: Path | str) -> Hardware:
    """A Hardware from a YAML profile, combined with the same rules as live detection."""
    path = Path(path)
    raw = read_yaml_mapping(path, what="hardware profile", flag="--hardware")
    try:
        profile = HardwareProfile.model_validate(raw)
    except ValidationError as exc:
        title = f"invalid hardware profile {path}"
        raise UserError(format_validation_error(exc, raw, {}, HardwareProfile, title)) from None
    origin = f"profile {path.name}"
    slurm_env = {k: str(v) for k, v in (profile.slurm_env or {}).items()}
    limits = CpuLimits(
        logical=profile.logical_cpus,
        logical_source=f"{origin}: logical_cpus",
        affinity=profile.affinity_cpus or profile.usable_cpus,
        affinity_source=f"{origin}: {'affinity_cpus' if profile.affinity_cpus else 'usable_cpus'}",
        cgroup=(
            cgroups.CpuQuota(profile.cgroup_cpu_quota, f"{origin}: cgroup_cpu_quota")
            if profile.cgroup_cpu_quota
            else None
        ),
        slurm=_prefixed(slurm.slurm_cpu_limit(slurm_env), origin),
    )
    usable, usable_source = limits.usable()
    cgroup_memory = (
        cgroups.MemoryLimit(
            int(profile.cgroup_memory_limit_gb * GIB), None, f"{origin}: cgroup_memory_limit_gb"
        )
        if profile.cgroup_memory_limit_gb
        else None
    )
    memory = _memory_limits(
        physical_total=int(profile.memory_gb * GIB),
        physical_available=int((profile.memory_available_gb or profile.memory_gb) * GIB),
        cgroup_limit=cgroup_memory,
        slurm_limit=_prefixed(slurm.slurm_memory_limit_bytes(slurm_env, usable), origin),
        physical_sources=(f"{origin}: memory_gb", f"{origin}: memory_available_gb"),
    )
    gpu_list = tuple(
        Gpu(
            spec.name,
            spec.memory_gb,
            spec.free_memory_gb if spec.free_memory_gb is not None else spec.memory_gb,
            i,
        )
        for i, spec in enumerate(profile.gpus)
    )
    return Hardware(
        usable_cpus=usable,
        logical_cpus=profile.logical_cpus,
        physical_cores=profile.physical_cores or profile.logical_cpus,
        memory_gb=memory.total_gb,
        memory_available_gb=memory.available_gb,
        gpus=gpu_list,
        sources={
            "usable_cpus": usable_source,
            "logical_cpus": f"{origin}: logical_cpus",
            "physical_cores": f"{origin}: physical_cores"
            if profile.physical_cores
            else f"{origin}: assumed = logical",
            **memory.sources,
            "gpus": f"{origin}: gpus" if gpu_list else f"{origin}: no gpus listed",
        },
        name=profile.name,
    )


def _prefixed(limit: slurm.SlurmLimit | None, origin: str) -> slurm.SlurmLimit | None:
    return None if limit is None else slurm.SlurmLimit(limit.value, f"{origin}: {limit.source}")
