"""Overnight moves that look like an unadjusted stock split, caught before they reach a feature.

A k:1 split divides the price by k between one close and the next open and multiplies the share
volume by k. In unadjusted prices it is a -50 % (2:1) or -75 % (4:1) night that every return,
indicator and reward would learn from. A real crash rarely lands that close to a split ratio, so
a bar is a suspected split only when:
- its open is within GAP_TOLERANCE (3 %) of the previous close divided by a split factor (3:2,
  2:1 ... 100:1, or a reverse split 2:3, 1:2 ... 1:100): a fall of at least 31 % or a rise of
  at least 46 %, so a −30 % crash (5 % from 3:2) or a −40 % one (11 % from 3:2, 20 % from 2:1)
  is not one;
- the share volume moves the other way: the median volume of the VOLUME_BARS bars from this one
  on is at least k ** VOLUME_SHARE times the median of the VOLUME_BARS bars before (x1.19 at
  2:1, x1.41 at 4:1; at most the inverse after a reverse split). Daily volume is noisy and a
  crash trades more shares too, so this only vetoes a gap whose volume stays flat or moves the
  wrong way (a rebased index, a bad print); a crash that lands on a split ratio with heavy
  volume is flagged, and `data.splits=accept` keeps it. A file without volume (median zero)
  cannot confirm: the price decides.
Only the close-to-open gap is read: on 24/7 markets (crypto, forex in the week) a bar opens at
the previous close, so even a −50 % crash day is a move inside bars, never such a gap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.data.validation import CLOSE, OPEN, VOLUME, RowLocator
from core.errors import UserError

KEY = "data.splits"
GAP_TOLERANCE = 0.03  # how far (as a ratio) an open may be from the split price
VOLUME_BARS = 20  # bars each side whose median volume is compared
VOLUME_SHARE = 0.25  # of the split's move in log volume that confirms it
# Split factors k of k:1 (and 1:k reverse). 3:2 is the smallest commonly declared.
FACTORS = (1.5, 2, 3, 4, 5, 6, 7, 8, 10, 15, 20, 25, 30, 40, 50, 100)
# The gap open / previous close each leaves in unadjusted prices, with its label.
RATIOS = tuple((1 / k, "3:2" if k == 1.5 else f"{k:g}:1") for k in FACTORS) + tuple(
    (k, "2:3" if k == 1.5 else f"1:{k:g}") for k in FACTORS
)


@dataclass(frozen=True)
class SuspectedSplit:
    """One bar whose open sits at a split price: `row` is its 0-based data row."""

    row: int
    ratio: str  # "4:1" (price divided by 4) or "1:10" (a reverse split, price times 10)
    gap: float  # open / previous close
    volume_change: float | None  # median volume after / before; None: no volume to compare

    def describe(self, prices: np.ndarray) -> str:
        """The move in words, e.g. 'close 400 to open 100.2 (x0.250, -75 %), a 4:1 split's
        ratio, with volume x3.9'."""
        previous, opened = prices[self.row - 1, CLOSE], prices[self.row, OPEN]
        volume = (
            f", with volume x{self.volume_change:.2g}"
            if self.volume_change is not None
            else " (no volume to compare)"
        )
        return (
            f"close {previous:g} to open {opened:g} (x{self.gap:.3f}, {self.gap - 1:+.0%}), "
            f"a {self.ratio} split's ratio{volume}"
        )


def find_splits(ohlcv: np.ndarray) -> list[SuspectedSplit]:
    """Bars (validated: positive prices, non-negative volume) that open at a split price of the
    close before, with share volume moving the other way."""
    if len(ohlcv) < 2:
        return []
    log_gap = np.log(ohlcv[1:, OPEN] / ohlcv[:-1, CLOSE])
    tolerance = math.log1p(GAP_TOLERANCE)
    # Only gaps beyond the smallest split's reach are compared: a row of 32 distances per bar
    # would cost gigabytes on minute bars.
    large = np.flatnonzero(np.abs(log_gap) >= math.log(min(FACTORS)) - tolerance)
    targets = np.log([ratio for ratio, _ in RATIOS])
    distance = np.abs(log_gap[large, None] - targets[None, :])
    nearest = distance.argmin(axis=1) if len(large) else np.zeros(0, dtype=int)
    found = []
    for position, (index, target) in enumerate(zip(large, nearest, strict=True)):
        if distance[position, target] > tolerance:
            continue
        row = int(index) + 1
        ratio, label = RATIOS[int(target)]
        change = volume_change(ohlcv[:, VOLUME], row)
        if change is not None and not _volume_confirms(change, ratio):
            continue
        found.append(SuspectedSplit(row, label, float(math.exp(log_gap[index])), change))
    return found


def volume_change(volume: np.ndarray, row: int) -> float | None:
    """Median volume of VOLUME_BARS bars from `row` on over that of the VOLUME_BARS before;
    None when either median is zero (a file without volume)."""
    before = float(np.median(volume[max(row - VOLUME_BARS, 0) : row]))
    after = float(np.median(volume[row : row + VOLUME_BARS]))
    if before <= 0 or after <= 0:
        return None
    return after / before


def _volume_confirms(change: float, ratio: float) -> bool:
    """Shares scale by 1 / ratio at a split: ask for VOLUME_SHARE of that move, in logs."""
    return -math.log(change) / math.log(ratio) >= VOLUME_SHARE


def check_splits(
    name: str, ohlcv: np.ndarray, timestamps: np.ndarray, where: RowLocator, accept: bool
) -> list[str]:
    """The suspected splits of one asset as summary lines when `accept` (data.splits=accept);
    otherwise the first one is a UserError naming the asset, the date and the fix."""
    found = find_splits(ohlcv)
    if not found or accept:
        return [f"{where(s.row, timestamps)}: {s.describe(ohlcv)}" for s in found]
    first = found[0]
    more = f" ({len(found) - 1:,} more bar(s) like it)" if len(found) > 1 else ""
    raise UserError(
        f"{where(first.row, timestamps)}: {name} moves from {first.describe(ohlcv)}: it looks "
        f"like an unadjusted stock split{more}, which would corrupt every return and feature "
        "after it\n"
        "  fix: use split-adjusted prices (an export with an Adj Close column is adjusted on "
        f"load, see data.adjusted_close), or set {KEY}=accept if the move is real"
    )
