"""CPU and memory limits from Linux control groups (v1 and v2).

Written by hand because psutil does not read cgroups, and loky's cpu_count folds the quota into
one number without saying which limit applied; the plan must name its sources. The file system
root is a parameter so that tests run on fake cgroup trees.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")
UNLIMITED_V1 = 1 << 60  # cgroup v1 reports "no limit" as a page-rounded 2**63-1


@dataclass(frozen=True)
class CpuQuota:
    cpus: float
    source: str


@dataclass(frozen=True)
class MemoryLimit:
    limit_bytes: int
    usage_bytes: int | None
    source: str


def read_cpu_quota(root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> CpuQuota | None:
    """The tightest CPU quota on this process's cgroup or any ancestor, or None when unlimited."""
    quotas: list[CpuQuota] = []
    if _is_v2(root):
        for directory in _v2_dirs(root, self_cgroup):
            quota = _parse_cpu_max(directory / "cpu.max")
            if quota is not None:
                quotas.append(quota)
    else:
        for directory in _v1_dirs(root, self_cgroup, ("cpu", "cpu,cpuacct", "cpuacct,cpu")):
            quota = _parse_cfs(directory)
            if quota is not None:
                quotas.append(quota)
    return min(quotas, key=lambda q: q.cpus, default=None)


def read_memory_limit(
    root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP
) -> MemoryLimit | None:
    """The tightest memory limit on this cgroup or an ancestor, with that cgroup's usage."""
    limits: list[MemoryLimit] = []
    if _is_v2(root):
        for directory in _v2_dirs(root, self_cgroup):
            limit = _read_int(directory / "memory.max")
            if limit is not None:
                usage = _read_int(directory / "memory.current")
                limits.append(MemoryLimit(limit, usage, f"cgroup v2 {directory / 'memory.max'}"))
    else:
        for directory in _v1_dirs(root, self_cgroup, ("memory",)):
            limit = _read_int(directory / "memory.limit_in_bytes")
            if limit is not None and limit < UNLIMITED_V1:
                usage = _read_int(directory / "memory.usage_in_bytes")
                source = f"cgroup v1 {directory / 'memory.limit_in_bytes'}"
                limits.append(MemoryLimit(limit, usage, source))
    return min(limits, key=lambda m: m.limit_bytes, default=None)


def _is_v2(root: Path) -> bool:
    return (root / "cgroup.controllers").exists()


def _self_paths(self_cgroup: Path) -> dict[str, str]:
    """Controller list -> cgroup path, from /proc/self/cgroup ('0::/a/b' on v2)."""
    try:
        text = self_cgroup.read_text()
    except OSError:
        return {}
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            paths[parts[1]] = parts[2]
    return paths


def _ancestors(base: Path, relative: str) -> list[Path]:
    """base/relative, then each parent up to base (limits on a parent apply to children)."""
    parts = [p for p in relative.strip("/").split("/") if p]
    return [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _v2_dirs(root: Path, self_cgroup: Path) -> list[Path]:
    relative = _self_paths(self_cgroup).get("", "/")
    return [d for d in _ancestors(root, relative) if d.is_dir()]


def _v1_dirs(root: Path, self_cgroup: Path, names: tuple[str, ...]) -> list[Path]:
    paths = _self_paths(self_cgroup)
    for name in names:
        mount = root / name
        if mount.is_dir():
            relative = next(
                (
                    path
                    for ctrls, path in paths.items()
                    if set(name.split(",")) <= set(ctrls.split(","))
                ),
                "/",
            )
            # Inside a container the recorded path is the host's; the mount itself is then the cgroup.
            return [d for d in dict.fromkeys([*_ancestors(mount, relative), mount]) if d.is_dir()]
    return []


def _parse_cpu_max(path: Path) -> CpuQuota | None:
    try:
        quota_text, period_text = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota_text == "max":
        return None
    quota, period = int(quota_text), int(period_text)
    if quota <= 0 or period <= 0:
        return None
    return CpuQuota(quota / period, f"cgroup v2 {path} ({quota}/{period})")


def _parse_cfs(directory: Path) -> CpuQuota | None:
    quota = _read_int(directory / "cpu.cfs_quota_us")
    period = _read_int(directory / "cpu.cfs_period_us")
    if quota is None or period is None or quota <= 0 or period <= 0:
        return None
    return CpuQuota(
        quota / period, f"cgroup v1 {directory / 'cpu.cfs_quota_us'} ({quota}/{period})"
    )


def _read_int(path: Path) -> int | None:
    """An integer file, or None when absent, unreadable or 'max' (no limit)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.lstrip("-").isdigit() else None
