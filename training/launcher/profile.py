"""A SLURM cluster profile (config/cluster/NAME.yaml): what one array task asks the cluster for.

The profile is also the machine the jobs are planned for: a task gets `cpus_per_task` CPUs and
`mem_gb` of memory, whatever the login node that submits it has.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.config import REPO_ROOT, Config, format_validation_error, read_yaml_mapping
from core.errors import UserError
from core.hardware.machine import Hardware
from core.suggest import did_you_mean

CLUSTER_PROFILES = REPO_ROOT / "config" / "cluster"
SHARED_FS_REFUSED = ("/tmp", "/var/tmp", "/dev/shm")


class ClusterProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    partition: str | None = None
    time_min: Annotated[int, Field(ge=1)] = 60
    cpus_per_task: Annotated[int, Field(ge=1, le=4096)] = 2
    mem_gb: Annotated[float, Field(gt=0)] = 4.0
    gpus_per_task: Annotated[int, Field(ge=0, le=64)] = 0
    gpu_memory_gb: Annotated[float, Field(gt=0)] = 16.0
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: Annotated[int, Field(ge=1)] | None = None
    sbatch: list[str] = []  # extra "#SBATCH" lines, e.g. "--exclusive", "--reservation=r1"
    setup: list[str] = []  # shell lines before the job starts, e.g. "module load cuda"
    log_dir: str | None = None  # shared filesystem for submitit's pickles and logs

    def allocation(self) -> Hardware:
        """One array task's share of a node, as the planner sees a machine."""
        cpus, source = self.cpus_per_task, f"cluster profile {self.name}"
        return Hardware(
            usable_cpus=cpus,
            logical_cpus=cpus,
            physical_cores=cpus,
            memory_gb=self.mem_gb,
            memory_available_gb=self.mem_gb,
            sources={
                "usable_cpus": f"{source}: cpus_per_task={cpus}",
                "memory_gb": f"{source}: mem_gb={self.mem_gb:g}",
            },
            name=f"SLURM task of {self.name}: {cpus} CPUs, {self.mem_gb:g} GB",
        )

    def executor_parameters(self) -> dict[str, Any]:
        """submitit SlurmExecutor parameters (its own names)."""
        parameters: dict[str, Any] = {
            "time": self.time_min,
            "cpus_per_task": self.cpus_per_task,
            "mem": f"{int(self.mem_gb * 1024)}MB",
            "setup": list(self.setup),
            "additional_parameters": sbatch_options(self.sbatch),
        }
        if self.gpus_per_task:
            parameters["gpus_per_task"] = self.gpus_per_task
        for key in ("partition", "account", "qos", "constraint"):
            if getattr(self, key) is not None:
                parameters[key] = getattr(self, key)
        return parameters


def sbatch_options(lines: list[str]) -> dict[str, Any]:
    """'--exclusive' / '#SBATCH --reservation=r1' -> submitit's additional_parameters."""
    options: dict[str, Any] = {}
    for line in lines:
        text = line.strip().removeprefix("#SBATCH").strip()
        if not text.startswith("--") or " " in text.split("=", 1)[0]:
            raise UserError(
                f"cluster profile: sbatch line {line!r} is not a long option\n"
                "  fix: write it as --name=value or --flag (one option per line)"
            )
        key, _, value = text[2:].partition("=")
        options[key.replace("-", "_")] = value if value else True
    return options


def load_cluster_profile(name_or_path: str) -> ClusterProfile:
    """config/cluster/NAME.yaml, or a YAML file given by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CLUSTER_PROFILES / f"{name_or_path}.yaml"
    if not path.exists():
        shipped = sorted(p.stem for p in CLUSTER_PROFILES.glob("*.yaml"))
        raise UserError(
            f"cluster profile not found: {name_or_path}{did_you_mean(path.stem, shipped)}\n"
            f"  fix: pass --cluster-profile one of {', '.join(shipped)} (config/cluster/) or a "
            "path to a YAML file like them"
        )
    raw = read_yaml_mapping(path, what="cluster profile", flag="--cluster-profile")
    raw.setdefault("name", path.stem)
    try:
        return ClusterProfile.model_validate(raw)
    except ValidationError as exc:
        title = f"invalid cluster profile {path}"
        raise UserError(format_validation_error(exc, raw, {}, ClusterProfile, title)) from None


def cluster_profile(config: Config) -> ClusterProfile | None:
    """The profile a slurm run needs (None for local and debug runs)."""
    launcher = config.launcher
    if launcher.cluster != "slurm":
        return None
    if launcher.cluster_profile is None:
        shipped = sorted(p.stem for p in CLUSTER_PROFILES.glob("*.yaml"))
        raise UserError(
            "--cluster slurm needs a cluster profile (partition, time, CPUs and memory per task)\n"
            f"  fix: pass --cluster-profile NAME (config/cluster/: {', '.join(shipped)}) or a "
            "YAML file like them"
        )
    return load_cluster_profile(launcher.cluster_profile)


def check_shared(path: Path, what: str, fix: str) -> None:
    """SLURM tasks on other nodes read the run's job pickles and feature store, and write their
    results: paths on a node-local filesystem would work on one node and fail on the next."""
    resolved = os.path.realpath(path)
    for local in SHARED_FS_REFUSED:
        if resolved == local or resolved.startswith(local + "/"):
            raise UserError(
                f"{what} {path} is under {local}, which is local to each node: SLURM tasks on "
                f"other nodes could not reach it\n  fix: {fix}"
            )
