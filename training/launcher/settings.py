"""From the config and the hardware plan to what the launcher does: slots, limits, log folder."""

from __future__ import annotations

import os
from pathlib import Path

from core.config import Config
from core.hardware.planner import Plan
from training.launcher.launch import LaunchSettings
from training.launcher.profile import ClusterProfile, check_shared
from training.launcher.task import HEARTBEATS_PER_DEADLINE, Placement
from training.run.files import RunFiles

DEFAULT_ARRAY_PARALLELISM = 256  # submitit's: the cluster's scheduler is the gate on SLURM


def log_root(config: Config, profile: ClusterProfile | None) -> Path | None:
    """Where runs' launcher folders go (the profile's log_dir, then launcher.log_dir); None:
    inside each run folder."""
    chosen = profile.log_dir if profile and profile.log_dir else config.launcher.log_dir
    return None if chosen == "auto" else Path(chosen)


def launch_settings(
    config: Config, plan: Plan, run_dir: Path, profile: ClusterProfile | None
) -> LaunchSettings:
    launcher = config.launcher
    heartbeat = launcher.dead_after_s / HEARTBEATS_PER_DEADLINE
    root = log_root(config, profile)
    folder = root / run_dir.name if root else RunFiles(run_dir).launcher
    if launcher.cluster == "slurm":
        check_shared(
            folder,
            "the launcher's log folder",
            "put the run on a shared filesystem (--output), or set launcher.log_dir (or log_dir "
            "in the cluster profile) to a shared folder",
        )
    assert profile is not None or launcher.cluster != "slurm"
    return LaunchSettings(
        cluster=launcher.cluster,
        folder=folder,
        slots=local_slots(plan, heartbeat),
        max_retries=launcher.max_retries,
        timeout_min=profile.time_min if profile else launcher.timeout_min,
        signal_delay_s=launcher.signal_delay_s,
        dead_after_s=launcher.dead_after_s,
        profile=profile,
        array_parallelism=(profile.array_parallelism if profile else None)
        or DEFAULT_ARRAY_PARALLELISM,
        rounds=config.ensemble.mode == "fedavg",
    )


def local_slots(plan: Plan, heartbeat_s: float) -> tuple[Placement, ...]:
    """One slot per member the plan runs at once: disjoint CPUs when they fit in this process's
    affinity, and the GPU the plan assigned to that slot."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    share = plan.threads_per_member
    pin = share > 0 and plan.members_concurrent * share <= len(cpus)
    slots = []
    for slot in range(plan.members_concurrent):
        mine = tuple(cpus[slot * share : (slot + 1) * share]) if pin else ()
        gpu = plan.gpu_assignment[slot] if slot < len(plan.gpu_assignment) else None
        slots.append(Placement(cpus=mine, gpu=gpu, heartbeat_s=heartbeat_s))
    return tuple(slots)
