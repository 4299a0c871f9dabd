"""CPU and memory allocation of a SLURM job, read from the variables SLURM sets for each task.

Hand-written: no maintained library parses these variables, and they are a few lines each.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from core.errors import UserError

_GROUP = re.compile(r"^(\d+)(?:\(x(\d+)\))?$")


@dataclass(frozen=True)
class SlurmLimit:
    value: float
    source: str


def expand_cpus_per_node(text: str) -> list[int]:
    """Expand SLURM's compressed form: '72(x2),36' -> [72, 72, 36]."""
    counts: list[int] = []
    for group in text.split(","):
        match = _GROUP.match(group.strip())
        if not match:
            raise UserError(
                f"cannot read SLURM_JOB_CPUS_PER_NODE={text!r}: group {group!r} is not 'N' or 'N(xK)'"
            )
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return counts


def slurm_cpu_limit(environ: Mapping[str, str]) -> SlurmLimit | None:
    """The smallest CPU count SLURM granted this task, or None outside SLURM."""
    candidates: list[SlurmLimit] = []
    if value := _int(environ, "SLURM_CPUS_PER_TASK"):
        candidates.append(SlurmLimit(value, f"SLURM_CPUS_PER_TASK={value}"))
    if text := environ.get("SLURM_JOB_CPUS_PER_NODE"):
        per_node = expand_cpus_per_node(text)
        node = _int(environ, "SLURM_NODEID") or 0
        count = per_node[node] if node < len(per_node) else per_node[0]
        candidates.append(
            SlurmLimit(count, f"SLURM_JOB_CPUS_PER_NODE={text} (node {node}: {count})")
        )
    if value := _int(environ, "SLURM_CPUS_ON_NODE"):
        candidates.append(SlurmLimit(value, f"SLURM_CPUS_ON_NODE={value}"))
    return min(candidates, key=lambda c: c.value, default=None)


def slurm_memory_limit_bytes(environ: Mapping[str, str], cpus: int) -> SlurmLimit | None:
    """Memory SLURM granted (its variables are in MB): per node, or per CPU times the CPUs."""
    if value := _int(environ, "SLURM_MEM_PER_NODE"):
        return SlurmLimit(value * 2**20, f"SLURM_MEM_PER_NODE={value}M")
    if value := _int(environ, "SLURM_MEM_PER_CPU"):
        return SlurmLimit(value * 2**20 * cpus, f"SLURM_MEM_PER_CPU={value}M x {cpus} CPUs")
    return None


def _int(environ: Mapping[str, str], name: str) -> int | None:
    text = environ.get(name, "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise UserError(f"cannot read {name}={text!r}: expected a whole number of CPUs or MB")
    return int(text)
