"""`walk_forward.train_years / validation_months / test_months: auto`: windows sized to the data.

Years of hourly bars keep the research windows the project was measured with (5 y train, 6 mo
validation, 6 mo test) wherever the data holds at least MIN_FOLDS folds of them. Shorter data (a
year or two of hourly bars, a few years of daily ones) is cut into shares of one test window:
train TRAIN_TESTS of them, validation one, and TARGET_FOLDS test windows, so it gets several
folds instead of an error. Windows are whole months (the calendar lengths core.folds uses), and
none is below the bars it needs:

- MIN_EVAL_BARS = 20 for validation and test: a Sharpe ratio over n returns has a standard
  error of about 1/sqrt(n) per bar (Lo, 2002), 0.22 at 20; below that a window's score, which
  picks checkpoints and judges the fold, is mostly noise.
- MIN_TRAIN_BARS = TRAIN_TESTS x MIN_EVAL_BARS = 80 (the rule's own train / test ratio), and never
  under env.window (an observation's look-back).

Explicit values always win; only the keys left on `auto` are sized. Light: config and numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.config import WalkForwardConfig
from core.data.calendar import Inferred
from core.units import MONTH_NS

RESEARCH = {"train_years": 5.0, "validation_months": 6, "test_months": 6}
MIN_FOLDS = 2  # the research windows are kept where the data holds this many folds of them
TRAIN_TESTS = 4  # shrunk windows: train = 4 test windows
TARGET_FOLDS = 4  # ... and the data cut so that 4 test windows follow train + validation
MIN_EVAL_BARS = 20
MIN_TRAIN_BARS = TRAIN_TESTS * MIN_EVAL_BARS
KEYS = tuple(RESEARCH)


@dataclass(frozen=True)
class Sized:
    """The walk-forward windows as numbers, and a note for the keys that were auto."""

    walk: WalkForwardConfig
    notes: tuple[Inferred, ...]


def auto_keys(walk: WalkForwardConfig) -> list[str]:
    return [key for key in KEYS if getattr(walk, key) == "auto"]


def size_windows(
    walk: WalkForwardConfig,
    usable: np.ndarray,
    bar_ns: int,
    env_window: int,
    folds_of: Callable[[WalkForwardConfig], int],
) -> Sized:
    """Windows for the bars `usable` (open times from the first bar an observation can be made
    at); `folds_of(walk) -> int` counts the folds a candidate gives (core.folds)."""
    wanted = auto_keys(walk)
    if not wanted:
        return Sized(walk, ())
    given = {key: getattr(walk, key) for key in KEYS if key not in wanted}
    research = walk.model_copy(update={**RESEARCH, **given})
    count = folds_of(research) if len(usable) else 0
    if count >= MIN_FOLDS:
        why = (
            f"the research windows (5 y train, 6 mo validation, 6 mo test): the data holds "
            f"{count} folds of them"
        )
        return Sized(research, _notes(research, wanted, why))
    months = _months(usable, bar_ns)
    per_month = len(usable) / months if months else 0.0
    shrunk = _shrunk(walk, given, wanted, months, per_month, env_window)
    shrunk_count = folds_of(shrunk) if len(usable) else 0
    if shrunk_count < count:
        return Sized(research, _notes(research, wanted, f"the research windows: {count} fold(s)"))
    test = shrunk.test_months
    why = (
        f"the data's {months:.1f} months after warm-up hold {count} fold(s) of the research "
        f"windows (5 y + 6 mo + 6 mo, {MIN_FOLDS} needed): cut into train {TRAIN_TESTS} + "
        f"validation 1 + {TARGET_FOLDS} test windows of {test} month(s) (about "
        f"{per_month * test:,.0f} bars; at least {MIN_EVAL_BARS} per validation and test window, "
        f"{max(MIN_TRAIN_BARS, env_window)} per train window), {shrunk_count} fold(s)"
    )
    return Sized(shrunk, _notes(shrunk, wanted, why))


def _shrunk(
    walk: WalkForwardConfig,
    given: dict[str, float],
    wanted: list[str],
    months: float,
    per_month: float,
    env_window: int,
) -> WalkForwardConfig:
    """The auto keys as shares of one test window of the months the given keys leave."""
    if "test_months" in wanted:
        fixed = given.get("train_years", 0.0) * 12 + given.get("validation_months", 0)
        shares = (
            (TRAIN_TESTS if "train_years" in wanted else 0)
            + (1 if "validation_months" in wanted else 0)
            + TARGET_FOLDS
        )
        test = max(1, math.floor((months - fixed) / shares), _months_for(MIN_EVAL_BARS, per_month))
    else:
        test = int(given["test_months"])
    validation = given.get("validation_months") or max(test, _months_for(MIN_EVAL_BARS, per_month))
    train_months = max(TRAIN_TESTS * test, _months_for(max(MIN_TRAIN_BARS, env_window), per_month))
    train = given.get("train_years") or train_months / 12
    return walk.model_copy(
        update={"train_years": train, "validation_months": validation, "test_months": test}
    )


def smallest_span_bars(per_month: float, env_window: int) -> int:
    """Bars the smallest auto windows need (train + validation + one test window)."""
    test = max(1, _months_for(MIN_EVAL_BARS, per_month))
    train = max(TRAIN_TESTS * test, _months_for(max(MIN_TRAIN_BARS, env_window), per_month))
    return math.ceil((train + 2 * test) * per_month)


def _notes(walk: WalkForwardConfig, keys: list[str], why: str) -> tuple[Inferred, ...]:
    """One note for the keys that were auto (the windows are decided together)."""
    shown = {
        "train_years": f"{walk.train_years:.3g} y",
        "validation_months": f"{walk.validation_months} mo",
        "test_months": f"{walk.test_months} mo",
    }
    names = " / ".join(keys)
    return (
        Inferred(
            f"walk_forward.{names}",
            " / ".join(shown[key] for key in keys),
            f"auto: {why}",
            " ".join(f"walk_forward.{key}=<value>" for key in keys),
        ),
    )


def _months(usable: np.ndarray, bar_ns: int) -> float:
    if not len(usable):
        return 0.0
    return (int(usable[-1]) + bar_ns - int(usable[0])) / MONTH_NS


def _months_for(bars: int, per_month: float) -> int:
    """Whole months that hold `bars` bars on average."""
    return max(1, math.ceil(bars / per_month)) if per_month > 0 else 1
