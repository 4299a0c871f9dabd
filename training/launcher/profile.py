"""A SLURM cluster profile (config/cluster/NAME.yaml): what one array task asks the cluster for.

The profile is also the machine the jobs are planned for: a task gets `cpus_per_task` CPUs,
`mem_gb` of memory and its GPUs (`gpus_per_task`, or an sbatch `--gres=gpu[:TYPE]:N` line, with
`gpu_memory_gb` when the profile states it), whatever the login node that submits it has.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.config import REPO_ROOT, Config, format_validation_error, read_yaml_mapping
from core.errors import UserError
from core.hardware.gpus import Gpu
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
    gpu_memory_gb: Annotated[float, Field(gt=0)] | None = None  # None: not stated, not checked
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: Annotated[int, Field(ge=1)] | None = None
    sbatch: list[str] = []  # extra "#SBATCH" lines, e.g. "--exclusive", "--reservation=r1"
    setup: list[str] = []  # shell lines before the job starts, e.g. "module load cuda"
    log_dir: str | None = None  # shared filesystem for submitit's pickles and logs
    # a multi-task job (a fedavg fold): at most this many of its tasks on one node, so a fold
    # larger than that spreads over nodes (None: all on one node)
    tasks_per_node: Annotated[int, Field(ge=1)] | None = None

    def allocation(self) -> Hardware:
        """One array task's share of a node, as the planner sees a machine."""
        cpus, source = self.cpus_per_task, f"cluster profile {self.name}"
        gpus, gpu_source = self.allocated_gpus()
        counted = f"{source}: cpus_per_task={cpus} (cores or hyper-threads, as the site's SLURM counts CPUs)"
        gpu_label = f", {len(gpus)} GPU(s)" if gpus else ""
        return Hardware(
            usable_cpus=cpus,
            logical_cpus=cpus,
            physical_cores=cpus,
            memory_gb=self.mem_gb,
            memory_available_gb=self.mem_gb,
            gpus=gpus,
            sources={
                "usable_cpus": f"{source}: cpus_per_task={cpus}",
                "logical_cpus": counted,
                "physical_cores": f"{counted}; assumed = logical",
                "memory_gb": f"{source}: mem_gb={self.mem_gb:g}",
                "memory_available_gb": f"{source}: mem_gb={self.mem_gb:g}",
                "gpus": gpu_source,
            },
            name=f"SLURM task of {self.name}: {cpus} CPUs, {self.mem_gb:g} GB{gpu_label}",
        )

    def allocated_gpus(self) -> tuple[tuple[Gpu, ...], str]:
        """The GPUs one task asks for (gpus_per_task or an sbatch --gres line) and a sentence
        saying where they come from; their memory only where the profile states gpu_memory_gb."""
        source = f"cluster profile {self.name}"
        gres = sbatch_options(self.sbatch).get("gres")
        kind, from_gres = gpu_gres(gres) if isinstance(gres, str) else (None, 0)
        if self.gpus_per_task and from_gres and self.gpus_per_task != from_gres:
            raise UserError(
                f"cluster profile {self.name}: gpus_per_task={self.gpus_per_task} disagrees with "
                f"sbatch --gres={gres} ({from_gres} GPU(s))\n"
                "  fix: state the GPUs once: gpus_per_task, or the --gres line"
            )
        count = self.gpus_per_task or from_gres
        if not count:
            return (), f"{source}: none asked for (gpus_per_task=0, no sbatch --gres=gpu line)"
        asked = f"sbatch --gres={gres}" if from_gres else f"gpus_per_task={count}"
        memory = self.gpu_memory_gb
        said = (
            f"gpu_memory_gb={memory:g}"
            if memory is not None
            else "GPU memory not stated (gpu_memory_gb): the plan cannot check what fits on it"
        )
        name = kind or (f"GPU of partition {self.partition}" if self.partition else "GPU")
        gpus = tuple(Gpu(name, memory, memory, index) for index in range(count))
        return gpus, f"{source}: {asked}; {said}"

    def executor_parameters(self, tasks: int = 1) -> dict[str, Any]:
        """submitit SlurmExecutor parameters (its own names), for a job of `tasks` tasks that
        srun starts together (their memory asked per node)."""
        per_node = min(tasks, self.tasks_per_node or tasks)
        if tasks % per_node:
            raise UserError(
                f"cluster profile {self.name}: a job of {tasks} tasks cannot spread evenly at "
                f"tasks_per_node={self.tasks_per_node}\n"
                f"  fix: a tasks_per_node that divides {tasks}, or leave it out (one node)"
            )
        parameters: dict[str, Any] = {
            "time": self.time_min,
            "cpus_per_task": self.cpus_per_task,
            "mem": f"{int(self.mem_gb * 1024 * per_node)}MB",
            "setup": list(self.setup),
            "additional_parameters": sbatch_options(self.sbatch),
        }
        if self.gpus_per_task:
            parameters["gpus_per_task"] = self.gpus_per_task
        if tasks > 1:
            parameters["nodes"] = tasks // per_node
            parameters["ntasks_per_node"] = per_node
        for key in ("partition", "account", "qos", "constraint"):
            if getattr(self, key) is not None:
                parameters[key] = getattr(self, key)
        return parameters


def gpu_gres(gres: str) -> tuple[str | None, int]:
    """(GPU type or None, count) from a --gres value: gpu:1, gpu:a100:2, gpu:a100:2,tmpfs:10G
    (no gpu entry: (None, 0); gpu without a count: one GPU, as SLURM reads it)."""
    for entry in gres.split(","):
        name, _, rest = entry.strip().partition(":")
        if name != "gpu":
            continue
        parts = [part for part in rest.split(":") if part] if rest else []
        if parts and parts[-1].isdigit():
            return (":".join(parts[:-1]) or None), int(parts[-1])
        return (":".join(parts) or None), 1
    return None, 0


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
