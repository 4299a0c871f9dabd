"""The baseline of bench_fedavg_rounds.py: the file barrier fedavg's members met at before
torch.distributed (commit 06e67e6, training/fedavg/barrier.py), unchanged but for this paragraph
and `FedAvgFiles`, the file names it used then (the run's own no longer has members' files).

The file barrier where a fold's members meet every `ensemble.sync_steps`: no server, only files
in the run folder (shared by every node of a SLURM array), each written whole or not at all.

A member writes its weights and validation score into the round's folder, then polls. The round
closes once every member that has not left is there, or once the waiting member's timeout runs out:
the first member to see either writes `closed.json` (participants and their weights) with an
exclusive link, so all members agree on one list even when several decide at once. Everyone then
averages exactly the listed files (or reads the average a faster member already wrote), which is
bit-identical whoever computes it. A member that arrives after its round closed takes the average
and goes on; a member the launcher gave up on is marked `left`, and barriers stop waiting for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import fsync_dir, replacing, write_json
from training.fedavg.average import State, average, sync_weights


@dataclass(frozen=True)
class FedAvgFiles:
    folder: Path

    def round(self, index: int) -> Path:
        return self.folder / f"round_{index:04d}"

    def member(self, index: int, member: int) -> Path:
        return self.round(index) / f"member_{member:02d}.npz"

    def closed(self, index: int) -> Path:
        return self.round(index) / "closed.json"

    def fused(self, index: int) -> Path:
        return self.round(index) / "fused.npz"

    def left(self, member: int) -> Path:
        return self.folder / f"left_member_{member:02d}.json"


SCORE = "__score__"
TIMESTEPS = "__timesteps__"
KEEP_ROUNDS = 2  # members' own weights are kept for this many rounds (the last round's always)


@dataclass(frozen=True)
class Closed:
    """Who a round averaged, with what shares, and why it closed when it did."""

    round: int
    participants: list[int]
    weights: list[float]
    scores: list[float | None]
    missing: list[int]
    timesteps: int
    closed_by: int
    reason: str
    closed_at: float


class RoundBarrier:
    def __init__(
        self,
        files: FedAvgFiles,
        member: int,
        members: Sequence[int],
        timeout_s: float,
        weighting: str = "equal",
        temperature: float = 1.0,
    ) -> None:
        self.files, self.member, self.members = files, member, list(members)
        self.timeout_s, self.weighting, self.temperature = timeout_s, weighting, temperature
        self._arrived: dict[int, float] = {}

    def arrive(self, index: int, state: State, score: float, timesteps: int) -> None:
        """Write this member's weights for round `index`; its wait starts now."""
        path = self.files.member(index, self.member)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = dict(state) | {SCORE: np.float64(score), TIMESTEPS: np.int64(timesteps)}
        with replacing(path) as handle:
            np.savez(handle, **arrays)
        self._arrived[index] = time.monotonic()

    def closed(self, index: int) -> Closed | None:
        try:
            return Closed(**json.loads(self.files.closed(index).read_text()))
        except FileNotFoundError:
            return None

    def poll(self, index: int) -> Closed | None:
        """The round's decision once there is one; closes it when this member may."""
        closed = self.closed(index)
        if closed is not None:
            return closed
        present = [m for m in self.members if self.files.member(index, m).exists()]
        expected = [m for m in self.members if not self.files.left(m).exists()]
        waited = time.monotonic() - self._arrived.get(index, time.monotonic())
        if set(expected) <= set(present):
            reason = "every member arrived"
        elif waited >= self.timeout_s:
            absent = ", ".join(str(m) for m in expected if m not in present)
            reason = f"ensemble.sync_timeout_s: waited {waited:.0f} s, member(s) {absent} not there"
        else:
            return None
        self._close(index, present, reason)
        return self.closed(index)

    def fused(self, closed: Closed) -> State:
        """The round's average: read if a member already wrote it, else computed and written."""
        path = self.files.fused(closed.round)
        with contextlib.suppress(FileNotFoundError):
            return read_state(path)[0]
        states = [read_state(self.files.member(closed.round, m))[0] for m in closed.participants]
        fused = average(states, closed.weights)
        with replacing(path) as handle:
            np.savez(handle, **fused)
        return fused

    def _close(self, index: int, present: list[int], reason: str) -> None:
        read = [read_state(self.files.member(index, m)) for m in present]
        scores = [None if not np.isfinite(score) else score for _, score, _ in read]
        closed = Closed(
            round=index,
            participants=present,
            weights=sync_weights(scores, self.weighting, self.temperature),
            scores=scores,
            missing=[m for m in self.members if m not in present],
            timesteps=max(steps for _, _, steps in read),
            closed_by=self.member,
            reason=reason,
            closed_at=time.time(),
        )
        if _create_once(self.files.closed(index), asdict(closed)):
            self._forget(index - KEEP_ROUNDS)

    def _forget(self, index: int) -> None:
        """Members' own weights of an old round: every participant has averaged it since."""
        if index < 1:
            return
        for member in self.members:
            self.files.member(index, member).unlink(missing_ok=True)


def read_state(path: Path) -> tuple[State, float, int]:
    """(weights, validation score, timesteps) of a member file; a fused file has no score."""
    with np.load(path) as archive:
        state = {key: archive[key] for key in archive.files if key not in (SCORE, TIMESTEPS)}
        score = float(archive[SCORE]) if SCORE in archive.files else float("nan")
        steps = int(archive[TIMESTEPS]) if TIMESTEPS in archive.files else 0
    return state, score, steps


def mark_left(files: FedAvgFiles, member: int, why: str) -> None:
    """Tell the barriers of a fold not to wait for `member` any more (it failed for good)."""
    files.folder.mkdir(parents=True, exist_ok=True)
    write_json(files.left(member), {"member": member, "why": why, "time": time.time()})


def clear_left(files: FedAvgFiles, member: int) -> None:
    """A member launched again (`--resume`) is waited for again."""
    files.left(member).unlink(missing_ok=True)


def _create_once(path: Path, document: dict[str, Any]) -> bool:
    """Write `document` to `path` only if nobody has: a hard link fails on an existing name, on
    local disks and NFS alike, so exactly one writer wins. Hand-written: no library offers an
    exclusive create of a whole, complete file."""
    tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    with open(tmp, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    fsync_dir(path.parent)
    return True
