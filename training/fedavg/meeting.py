"""Where a fold's members meet once a round, behind one interface: the tasks of one multi-task
job through torch.distributed (`DistributedMeeting`), or the members of one process taking
turns (`InProcessMeeting`: debug mode). Either way, every member leaves with the same bits: the
average of everyone's weights, by `ensemble.sync_weighting`, and the round's record is on disk
before anyone commits the round (training.fedavg.record).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from training.fedavg.average import State, average, sync_weights
from training.fedavg.record import Closed, read_closed, read_fused, write_round
from training.run.files import FedAvgFiles


@dataclass(frozen=True)
class Arrival:
    """One member's side of a round: its weights after the round's training, its validation
    score (for validation-weighted shares) and its step count."""

    member: int
    state: State
    score: float
    timesteps: int


@dataclass(frozen=True)
class Agreed:
    """What a round gave every member: its record, the average, and whether any member was asked
    to stop (preemption) so all stop at this round's end together."""

    closed: Closed
    fused: State
    stop: bool = False


class Meeting(Protocol):
    files: FedAvgFiles

    def meet(
        self, index: int, arrivals: Sequence[Arrival], stop: bool = False
    ) -> Generator[None, None, Agreed]:
        """This process's members arrive at round `index`; yields while it waits for members of
        this same process (never while it waits for other processes: that blocks)."""
        ...


def recorded(files: FedAvgFiles, index: int) -> Agreed | None:
    """Round `index` as recorded, if it was: a member resuming behind the others replays its
    training and takes this instead of meeting again."""
    closed = read_closed(files, index)
    return None if closed is None else Agreed(closed, read_fused(files, index))


def record_round(
    files: FedAvgFiles,
    index: int,
    members: Sequence[int],
    scores: Sequence[float | None],
    timesteps: int,
    weights: Sequence[float],
    fused: State,
    reason: str,
) -> Closed:
    closed = Closed(
        round=index,
        participants=list(members),
        weights=list(weights),
        scores=list(scores),
        missing=[],
        timesteps=timesteps,
        closed_by=members[0],
        reason=reason,
        closed_at=time.time(),
    )
    write_round(files, closed, fused)
    return closed


def finite_or_none(score: float) -> float | None:
    return score if score == score and abs(score) != float("inf") else None


@dataclass
class InProcessMeeting:
    """debug mode: the fold's members take turns in this process; the round closes when the last
    of `members` arrives, with numpy's mean (training.fedavg.average) of their weights."""

    files: FedAvgFiles
    members: list[int]
    weighting: str = "equal"
    temperature: float = 1.0
    _arrived: dict[int, dict[int, Arrival]] = field(default_factory=dict)
    _stop: dict[int, bool] = field(default_factory=dict)
    _agreed: dict[int, Agreed] = field(default_factory=dict)

    def meet(
        self, index: int, arrivals: Sequence[Arrival], stop: bool = False
    ) -> Generator[None, None, Agreed]:
        here = self._arrived.setdefault(index, {})
        here.update({arrival.member: arrival for arrival in arrivals})
        self._stop[index] = self._stop.get(index, False) or stop
        while index not in self._agreed:
            if set(self.members) <= set(here):
                self._agreed[index] = self._close(index, [here[m] for m in self.members])
                break
            yield
        return self._agreed[index]

    def _close(self, index: int, arrivals: list[Arrival]) -> Agreed:
        scores = [finite_or_none(a.score) for a in arrivals]
        weights = sync_weights(scores, self.weighting, self.temperature)
        fused = average([a.state for a in arrivals], weights)
        steps = max(a.timesteps for a in arrivals)
        members = [a.member for a in arrivals]
        closed = record_round(
            self.files, index, members, scores, steps, weights, fused, "every member arrived"
        )
        return Agreed(closed, fused, self._stop[index])


_MEETINGS: dict[str, InProcessMeeting] = {}


def in_process_meeting(
    files: FedAvgFiles, members: list[int], weighting: str, temperature: float
) -> InProcessMeeting:
    """The one meeting of a fold in this process, shared by the members that take turns."""
    key = str(files.folder)
    meeting = _MEETINGS.get(key)
    if meeting is None or meeting.members != members:
        meeting = InProcessMeeting(files, members, weighting, temperature)
        _MEETINGS[key] = meeting
    return meeting
