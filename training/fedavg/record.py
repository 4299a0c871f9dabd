"""A fold's averaging rounds on disk: what each round averaged (closed.json) and the average
(fused.npz), each written whole or not at all, before any member commits the round.

That order is what `--resume` relies on: a member's checkpoint never runs ahead of the records,
so a member that finds the record of a round it has not committed replays that round's training
(reseeded: the same steps and Adam moments) and takes the recorded average instead of meeting the
others again. The post-run fuse (training.post.fuse) picks the best recorded round.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from core.atomic import replacing, write_json
from training.fedavg.average import State
from training.run.files import FedAvgFiles


@dataclass(frozen=True)
class Closed:
    """Who a round averaged, with what shares, and how long its slowest member made it wait."""

    round: int
    participants: list[int]
    weights: list[float]
    scores: list[float | None]
    missing: list[int]
    timesteps: int
    closed_by: int
    reason: str
    closed_at: float


def read_closed(files: FedAvgFiles, index: int) -> Closed | None:
    """The round's record; None before the round was averaged."""
    try:
        return Closed(**json.loads(files.closed(index).read_text()))
    except FileNotFoundError:
        return None


def recorded_rounds(files: FedAvgFiles) -> list[Closed]:
    """Every recorded round, in order."""
    found = (read_closed(files, index) for index in files.rounds())
    return [closed for closed in found if closed is not None]


def write_round(files: FedAvgFiles, closed: Closed, fused: State) -> None:
    """The average first, then the record that names it: a record always has its average."""
    path = files.fused(closed.round)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as handle:
        np.savez(handle, **fused)
    write_json(files.closed(closed.round), asdict(closed))


def read_fused(files: FedAvgFiles, index: int) -> State:
    """The recorded average of round `index`."""
    with np.load(files.fused(index)) as archive:
        return {key: archive[key] for key in archive.files}
