"""One "did you mean" for every name a user types (config keys, sections, env settings)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# difflib's own default: close enough to catch a dropped, doubled or swapped letter, while
# unrelated names get no suggestion rather than a misleading one.
CUTOFF = 0.6


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The valid name nearest to `name`, or None when nothing is close."""
    found = difflib.get_close_matches(name, list(choices), n=1, cutoff=CUTOFF)
    return found[0] if found else None


def did_you_mean(name: str, choices: Iterable[str], prefix: str = "") -> str:
    """' — did you mean 'prefix+nearest'?' for an error message, or '' when nothing is close."""
    near = closest(name, choices)
    return f" — did you mean '{prefix}{near}'?" if near else ""
