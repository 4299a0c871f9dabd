"""A job's test tracks on disk: one npz of `<strategy>.<series>` arrays per job.

Written by the trainer after its out-of-sample rollout, read by the results; numpy only, so the
report does not load torch to read them. Each strategy's decisions travel with its returns: the
target weights of every step and the portfolio they were decided from, so a decision can be
asked again (--predict) and compared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.atomic import replacing
from core.evaluation.rollout import Track

SERIES = ("returns", "turnover", "cost", "trades", "exposure")  # one value per bar
DECISIONS = ("weights", "held", "drawdown", "bars_held")  # [bars, assets] (drawdown: [bars])


def track_arrays(tracks: dict[str, Track]) -> dict[str, np.ndarray]:
    """The arrays a tracks file holds, as `load_tracks` returns them."""
    first = next(iter(tracks.values()))
    arrays = {
        "bar": first.bar,
        "timestamp": first.timestamp,
        "decision_timestamp": first.decision_timestamp,
    }
    for name, track in tracks.items():
        for key in (*SERIES, *DECISIONS):
            arrays[f"{name}.{key}"] = getattr(track, key)
    return arrays


def save_tracks(path: Path, tracks: dict[str, Track]) -> None:
    with replacing(path) as handle:
        np.savez(handle, **track_arrays(tracks))


def load_tracks(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}
