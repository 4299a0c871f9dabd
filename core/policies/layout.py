"""Where each number sits in a market observation, so an extractor can read assets, bars and
timeframes apart instead of one flat vector.

Standard library only: the planner builds a layout before numpy or torch may load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Feature names are "<timeframe>_<column>" (core.features.matrix.feature_names), e.g. "4h_rsi".
_TIMEFRAME_NAME = re.compile(r"^(\d+)(min|h|d|s)_")
_UNIT_SECONDS = {"s": 1, "min": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class ObservationLayout:
    """`market` is [asset, window, feature] flattened; each asset's features are the timeframes'
    column groups in order (the base bar first), then `shared_columns` (time encodings,
    exogenous series). `portfolio` holds 2 * n_assets + 1 numbers."""

    n_assets: int
    window: int
    timeframe_columns: tuple[int, ...]
    timeframe_multiples: tuple[int, ...]  # each timeframe's bar in base bars (1 for the base)
    shared_columns: int

    @property
    def n_features(self) -> int:
        return sum(self.timeframe_columns) + self.shared_columns

    @property
    def market_dim(self) -> int:
        return self.n_assets * self.window * self.n_features

    @property
    def portfolio_dim(self) -> int:
        return 2 * self.n_assets + 1

    @property
    def obs_dim(self) -> int:
        return self.market_dim + self.portfolio_dim

    def as_kwargs(self) -> dict[str, object]:
        """Plain values for SB3's features_extractor_kwargs (saved with every checkpoint)."""
        return {
            "n_assets": self.n_assets,
            "window": self.window,
            "timeframe_columns": list(self.timeframe_columns),
            "timeframe_multiples": list(self.timeframe_multiples),
            "shared_columns": self.shared_columns,
        }


def layout_from_names(n_assets: int, window: int, feature_names: list[str]) -> ObservationLayout:
    """The layout of a feature store's columns: runs of one timeframe prefix are its group."""
    groups: list[tuple[int, int]] = []  # (seconds of the timeframe, columns)
    shared = 0
    for name in feature_names:
        match = _TIMEFRAME_NAME.match(name)
        if match is None:
            shared += 1
            continue
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        if groups and groups[-1][0] == seconds:
            groups[-1] = (seconds, groups[-1][1] + 1)
        else:
            groups.append((seconds, 1))
    if not groups:  # only exogenous/time columns: treat them as one base-bar group
        return ObservationLayout(n_assets, window, (shared,), (1,), 0)
    base = groups[0][0]
    return ObservationLayout(
        n_assets,
        window,
        tuple(columns for _, columns in groups),
        tuple(max(1, seconds // base) for seconds, _ in groups),
        shared,
    )
