"""The tasks of one multi-task job meeting through torch.distributed: gloo on CPUs, NCCL when the
learner is on a GPU. A round is one `all_gather_object` of who is there (round, members, scores,
steps, a stop request) and one `all_reduce` of each task's share-weighted sum of its members'
weights, flattened into a single float64 buffer; every task gets the same bits back.

A task that dies breaks its peers' sockets at once; one that stalls holds them until
`ensemble.sync_timeout_s` (the process group's timeout). Either way the round fails for everyone,
the error names the member(s) that never reached it (their arrival keys in the job's TCPStore),
and nobody commits the round: `--resume` goes on from the last recorded one.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from training.fedavg.average import State, sync_weights
from training.fedavg.meeting import Agreed, Arrival, finite_or_none, record_round
from training.run.files import FedAvgFiles


class RoundFailed(RuntimeError):
    """A round that not every member reached: the job fails, and a retry resumes the fold."""


@dataclass(frozen=True)
class Rendezvous:
    """Where and how the job's tasks find each other (from SLURM's or submitit's variables)."""

    rank: int
    world: int
    master_addr: str
    master_port: int
    backend: str  # "gloo" or "nccl"
    timeout_s: float


class DistributedMeeting:
    """One task's side of its fold's rounds; `members[r]` are the members task r trains."""

    def __init__(
        self,
        files: FedAvgFiles,
        rendezvous: Rendezvous,
        members: Sequence[Sequence[int]],
        weighting: str = "equal",
        temperature: float = 1.0,
        device: str = "cpu",
    ) -> None:
        self.files, self.rendezvous = files, rendezvous
        self.members = [list(m) for m in members]
        self.weighting, self.temperature, self.device = weighting, temperature, device
        self.store: Any = None
        if rendezvous.world > 1:
            self._join()

    def _join(self) -> None:
        import torch.distributed as dist

        r = self.rendezvous
        timeout = timedelta(seconds=r.timeout_s)
        self.store = dist.TCPStore(
            r.master_addr, r.master_port, r.world, is_master=r.rank == 0, timeout=timeout
        )
        dist.init_process_group(
            r.backend, store=self.store, rank=r.rank, world_size=r.world, timeout=timeout
        )

    def close(self) -> None:
        import torch.distributed as dist

        if self.store is not None and dist.is_initialized():
            dist.destroy_process_group()
        self.store = None

    def gather(self, value: Any) -> list[Any]:
        """Every task's `value`, in rank order (the fold's results, once all are tested)."""
        if self.rendezvous.world == 1:
            return [value]
        import torch.distributed as dist

        everyone: list[Any] = [None] * self.rendezvous.world
        try:
            dist.all_gather_object(everyone, value)
        except Exception as error:
            raise RoundFailed(
                f"fedavg {self.files.folder.parent.name}: a task failed after the last round "
                f"({str(error).strip().splitlines()[0] if str(error).strip() else error!r})\n"
                "  fix: see the failed member's log, then --resume"
            ) from None
        return everyone

    def meet(
        self, index: int, arrivals: Sequence[Arrival], stop: bool = False
    ) -> Generator[None, None, Agreed]:
        """Blocks until every task is there (no yield: there is nothing else to run here)."""
        if self.rendezvous.world == 1:
            return self._alone(index, arrivals, stop)
        try:
            return self._together(index, arrivals, stop)
        except RoundFailed:
            raise
        except Exception as error:  # gloo / NCCL: a peer's socket closed, or the timeout
            raise RoundFailed(self._why(index, error)) from None
        yield  # a generator, like the in-process meeting

    def _alone(self, index: int, arrivals: Sequence[Arrival], stop: bool) -> Agreed:
        """Every member of the fold is in this task (one population group): a mean in memory."""
        scores = [finite_or_none(a.score) for a in arrivals]
        shares = sync_weights(scores, self.weighting, self.temperature)
        fused = _unflatten(_weighted_sum([a.state for a in arrivals], shares), arrivals[0].state)
        return self._recorded(index, arrivals, scores, shares, fused, stop, "one task: in memory")

    def _together(self, index: int, arrivals: Sequence[Arrival], stop: bool) -> Agreed:
        import torch
        import torch.distributed as dist

        r = self.rendezvous
        self.store.set(_arrived_key(index, r.rank), "1")
        mine = (index, [a.member for a in arrivals], [finite_or_none(a.score) for a in arrivals],
                max(a.timesteps for a in arrivals), stop)  # fmt: skip
        everyone: list[Any] = [None] * r.world
        dist.all_gather_object(everyone, mine)
        rounds = {entry[0] for entry in everyone}
        if rounds != {index}:
            raise RoundFailed(
                f"fedavg: the tasks are at different rounds ({sorted(rounds)}): their run folders "
                "were changed by hand\n  fix: start the run again (a new --output)"
            )
        members = [m for entry in everyone for m in entry[1]]
        scores = [s for entry in everyone for s in entry[2]]
        shares = sync_weights(scores, self.weighting, self.temperature)
        start = sum(len(entry[1]) for entry in everyone[: r.rank])
        own = shares[start : start + len(arrivals)]
        buffer = torch.from_numpy(_weighted_sum([a.state for a in arrivals], own)).to(self.device)
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
        fused = _unflatten(buffer.cpu().numpy(), arrivals[0].state)
        steps = max(entry[3] for entry in everyone)
        stopping = any(entry[4] for entry in everyone)
        closed = None
        if r.rank == 0:
            closed = record_round(
                self.files, index, members, scores, steps, shares, fused,
                f"all_reduce over {r.world} tasks ({r.backend})",
            )  # fmt: skip
        dist.barrier()  # the record is on disk before any task commits this round
        if closed is None:
            from training.fedavg.record import read_closed

            closed = read_closed(self.files, index)
            assert closed is not None, "rank 0 passed the barrier without its record"
        return Agreed(closed, fused, stopping)

    def _recorded(
        self,
        index: int,
        arrivals: Sequence[Arrival],
        scores: list[float | None],
        shares: list[float],
        fused: State,
        stop: bool,
        reason: str,
    ) -> Agreed:
        steps = max(a.timesteps for a in arrivals)
        members = [a.member for a in arrivals]
        closed = record_round(self.files, index, members, scores, steps, shares, fused, reason)
        return Agreed(closed, fused, stop)

    def _why(self, index: int, error: Exception) -> str:
        """Which members never reached round `index`, as far as the job's store can tell."""
        r = self.rendezvous
        absent = []
        for rank in range(r.world):
            try:
                if rank != r.rank and not self.store.check([_arrived_key(index, rank)]):
                    absent.append(rank)
            except Exception:  # the store lives in task 0: it is gone with it
                absent = [0]
                break
        named = ", ".join(str(m) for rank in absent for m in self.members[rank]) or "unknown"
        said = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return (
            f"fedavg round {index} of {self.files.folder.parent.name} failed: member(s) {named} "
            f"did not reach it (process gone, or stalled past ensemble.sync_timeout_s="
            f"{r.timeout_s:g} s; {said})\n"
            f"  fix: see that member's log; --resume goes on from round {index - 1}"
        )


def _arrived_key(index: int, rank: int) -> str:
    return f"round/{index}/arrived/{rank}"


def _weighted_sum(states: Sequence[State], shares: Sequence[float]) -> np.ndarray:
    """Σ share × weights over these members, every float tensor flattened into one float64
    buffer (one collective a round instead of one a tensor)."""
    keys = [k for k, v in states[0].items() if np.issubdtype(np.asarray(v).dtype, np.floating)]
    total = np.zeros(sum(np.asarray(states[0][k]).size for k in keys), dtype=np.float64)
    for state, share in zip(states, shares, strict=True):
        if list(state) != list(states[0]):
            raise ValueError("members' weights differ in their tensors: not the same network")
        flat = np.concatenate([np.asarray(state[k], dtype=np.float64).ravel() for k in keys])
        total += share * flat
    return total


def _unflatten(buffer: np.ndarray, like: State) -> State:
    """The buffer back into tensors shaped and typed as `like` (non-float ones copied)."""
    fused: State = {}
    offset = 0
    for key, value in like.items():
        array = np.asarray(value)
        if not np.issubdtype(array.dtype, np.floating):
            fused[key] = array.copy()
            continue
        fused[key] = buffer[offset : offset + array.size].reshape(array.shape).astype(array.dtype)
        offset += array.size
    return fused
