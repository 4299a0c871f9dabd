"""Tasks of a torch.distributed meeting, as spawned processes of a test (a module of their own,
so the spawn start method can import them)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from training.fedavg.collective import DistributedMeeting, Rendezvous
from training.fedavg.meeting import Arrival
from training.member.member_training import run_to_end
from training.run.files import FedAvgFiles


def member_state(member: int) -> dict[str, np.ndarray]:
    """A member's weights: a policy-sized float32 net (seeded by member) and a step counter."""
    rng = np.random.default_rng(member)
    return {
        "mlp.0.weight": rng.normal(size=(64, 145)).astype(np.float32),
        "mlp.0.bias": rng.normal(size=64).astype(np.float32),
        "log_std": rng.normal(size=3).astype(np.float32),
        "steps": np.array([member], dtype=np.int64),
    }


def meet_once(
    folder: str, rank: int, members: list[list[int]], port: int, weighting: str, die: bool
) -> None:
    """Join, meet at round 1 with this task's members (or die first), save what came back."""
    rendezvous = Rendezvous(rank, len(members), "127.0.0.1", port, "gloo", 10.0)
    meeting = DistributedMeeting(FedAvgFiles(Path(folder)), rendezvous, members, weighting)
    if die:
        os._exit(1)  # SIGKILL-like: no goodbye to the others
    arrivals = [Arrival(m, member_state(m), float(m), 2048) for m in members[rank]]
    try:
        agreed = run_to_end(meeting.meet(1, arrivals))
    except Exception as error:  # the failure the other tasks see, for the test to read
        Path(folder, f"error_{rank}.txt").write_text(str(error))
        return
    finally:
        meeting.close()
    np.savez(Path(folder, f"fused_{rank}.npz"), **agreed.fused)
