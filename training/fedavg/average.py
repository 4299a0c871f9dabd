"""How members' weights become one: equal or validation-weighted averages of their state dicts.

Numpy only, so every member computes bit-identical averages from the same files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

State = dict[str, np.ndarray]  # a policy's state_dict as numpy arrays


def sync_weights(scores: Sequence[float | None], weighting: str, temperature: float) -> list[float]:
    """Each participant's share of the average. `validation`: softmax of score / temperature, so a
    member one temperature better counts e times more; members without a finite score get none
    (all of them: equal shares)."""
    count = len(scores)
    if count == 0:
        raise ValueError("a round needs at least one participant")
    values = np.array([np.nan if s is None else s for s in scores], dtype=np.float64)
    finite = np.isfinite(values)
    if weighting == "equal" or not finite.any():
        return [1.0 / count] * count
    if weighting != "validation":
        raise ValueError(f"weighting must be 'equal' or 'validation', got {weighting!r}")
    logits = np.where(finite, values / temperature, -np.inf)
    shares = np.exp(logits - logits[finite].max())
    return [float(s) for s in shares / shares.sum()]


def average(states: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]) -> State:
    """The weighted mean of every float tensor (float64 sums, cast back); other tensors (counters)
    are taken from the first state. Equal weights use `np.mean`, so the result is exactly what
    numpy's mean of the members' arrays gives."""
    if not states or len(states) != len(weights):
        raise ValueError(f"{len(states)} state(s) for {len(weights)} weight(s)")
    keys = list(states[0])
    for state in states[1:]:
        if list(state) != keys:
            raise ValueError("members' weights differ in their tensors: not the same network")
    equal = len(set(weights)) == 1
    fused: State = {}
    for key in keys:
        first = np.asarray(states[0][key])
        if not np.issubdtype(first.dtype, np.floating):
            fused[key] = first.copy()
            continue
        stack = np.stack([np.asarray(state[key], dtype=np.float64) for state in states])
        mean = (
            stack.mean(axis=0)
            if equal
            else np.average(stack, axis=0, weights=np.asarray(weights, dtype=np.float64))
        )
        fused[key] = mean.astype(first.dtype)
    return fused
