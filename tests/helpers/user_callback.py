"""A user's own SB3 callback, as `training.callbacks` names one (tests/test_sb3_habits.py)."""

from __future__ import annotations

from typing import ClassVar

from stable_baselines3.common.callbacks import BaseCallback


class CountSteps(BaseCallback):
    """Records what SB3 calls it with: one entry per training start, one count per step."""

    seen: ClassVar[list[dict[str, int]]] = []

    def _on_training_start(self) -> None:
        CountSteps.seen.append({"start": self.model.num_timesteps, "steps": 0, "end": -1})

    def _on_step(self) -> bool:
        CountSteps.seen[-1]["steps"] += 1
        return True

    def _on_training_end(self) -> None:
        CountSteps.seen[-1]["end"] = self.model.num_timesteps


class NeedsArgument(BaseCallback):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level


class NotACallback:
    pass
