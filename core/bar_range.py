"""The bars an episode, a fold part or an evaluation may trade through.

Its own module, with no imports, so folds (main process) and the simulator (env workers) share it
without either pulling in the other's dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BarRange:
    """Bars [start, stop) of a store that episodes may trade through."""

    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start
