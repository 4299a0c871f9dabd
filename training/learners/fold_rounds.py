"""A fedavg fold as one multi-task job: task r trains `units[r]` (one member with the separate
learner, a group with the population learner), and the tasks average every round through
torch.distributed (training.fedavg.collective). SLURM starts the tasks together (one job,
`ntasks`, srun); locally submitit's executor starts them as one job's tasks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.atomic import write_json
from training.run.files import JobFiles, RunFiles
from training.run.job import NO_HOOKS, Hooks, Job


@dataclass(frozen=True)
class FoldRounds:
    """training.launcher.workload's Workload, with `tasks`: how many processes it runs as."""

    units: tuple[tuple[Job, ...], ...]
    grouped: bool  # population groups (several members a task) rather than one member each

    @property
    def fold(self) -> int:
        return self.units[0][0].fold.index

    @property
    def members(self) -> list[list[int]]:
        return [[job.member for job in unit] for unit in self.units]

    @property
    def name(self) -> str:
        count = sum(len(unit) for unit in self.units)
        return f"fold {self.fold} fedavg ({count} members, {self.tasks} task(s))"

    @property
    def tasks(self) -> int:
        return len(self.units)

    @property
    def files(self) -> JobFiles:
        return RunFiles(Path(self.units[0][0].run_dir)).fedavg(self.fold).job

    def task_files(self, rank: int) -> JobFiles:
        """Where task `rank` writes its own heartbeat: its first member's folder."""
        return self.units[rank][0].files

    @property
    def timesteps(self) -> int:
        """Task 0's steps: it writes the job's heartbeat, and the rounds keep the tasks together."""
        return sum(job.timesteps for job in self.units[0])

    @property
    def blas_threads(self) -> int:
        return self.units[0][0].blas_threads

    @property
    def torch_threads(self) -> int:
        return self.units[0][0].torch_threads

    def run(self, hooks: Hooks = NO_HOOKS) -> dict[str, Any]:
        """This task's unit, meeting the others every round; task 0 records the fold's result."""
        from training.fedavg.collective import DistributedMeeting

        rendezvous = task_rendezvous(self.units[0][0])
        if rendezvous.world != self.tasks:
            raise RuntimeError(
                f"{self.name} runs as {self.tasks} task(s), but this job has {rendezvous.world}"
            )
        first = self.units[rendezvous.rank][0]
        ensemble = _ensemble(first)
        meeting = DistributedMeeting(
            RunFiles(Path(first.run_dir)).fedavg(self.fold),
            rendezvous,
            self.members,
            ensemble.sync_weighting,
            ensemble.sync_temperature,
            first.device if rendezvous.backend == "nccl" else "cpu",
        )
        try:
            results = self._train(rendezvous.rank, hooks, meeting)
            everyone = meeting.gather(results)
        finally:
            meeting.close()
        merged = {member: result for part in everyone for member, result in part.items()}
        summary = {
            "members": merged,
            "timesteps": sum(r["timesteps"] for r in merged.values()) // max(len(merged), 1),
        }
        if rendezvous.rank == 0:
            write_json(self.files.result, summary)
        return summary

    def _train(self, rank: int, hooks: Hooks, meeting: Any) -> dict[int, Any]:
        unit = self.units[rank]
        if self.grouped:
            from training.population.group_training import run_group

            return run_group(unit, hooks, meeting)["members"]
        from training.member.member_training import run_job

        (job,) = unit
        return {job.member: run_job(job, hooks, meeting)}


def _ensemble(job: Job) -> Any:
    from training.run.folder import run_config

    return run_config(job.run_dir).ensemble


def task_rendezvous(job: Job) -> Any:
    """This task's rank, the job's size and its first host, from SLURM's or submitit's local
    variables; gloo on CPUs, NCCL when the learner is planned on a GPU that is there."""
    import submitit
    import torch

    from training.fedavg.collective import Rendezvous

    environment = submitit.JobEnvironment()
    timeout = _ensemble(job).sync_timeout_s
    backend = "gloo"
    if job.device.startswith("cuda") and torch.cuda.is_available():
        backend = "nccl" if torch.distributed.is_nccl_available() else "gloo"
    if environment.num_tasks == 1:
        return Rendezvous(0, 1, "127.0.0.1", 0, backend, timeout)
    distributed = submitit.helpers.TorchDistributedEnvironment()
    host = "127.0.0.1" if environment.num_nodes == 1 else distributed.master_addr
    return Rendezvous(
        distributed.rank, distributed.world_size, host, distributed.master_port, backend, timeout
    )
