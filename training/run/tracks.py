"""A job's test tracks on disk: one npz of `<strategy>.<series>` arrays per job.

Written by the trainer after its out-of-sample rollout, read by the results; numpy only, so the
report does not load torch to read them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.atomic import replacing
from core.evaluation.rollout import Track

SERIES = ("returns", "turnover", "cost", "trades", "exposure")


def save_tracks(path: Path, tracks: dict[str, Track]) -> None:
    first = next(iter(tracks.values()))
    arrays = {"bar": first.bar, "timestamp": first.timestamp}
    for name, track in tracks.items():
        for key in SERIES:
            arrays[f"{name}.{key}"] = getattr(track, key)
    with replacing(path) as handle:
        np.savez(handle, **arrays)


def load_tracks(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}
