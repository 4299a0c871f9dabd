"""One exception type for mistakes a user can fix, so entry points print it without a traceback,
and the bounds on what such a message quotes of the input (a bad value may be megabytes)."""

from __future__ import annotations

import reprlib
from typing import Any

QUOTE_CHARS = 200  # what a message quotes of one value or name


class UserError(Exception):
    """Bad input (config, data, CLI, hardware profile): the message says what, where and how to fix."""


_REPR = reprlib.Repr()  # keyword settings only from Python 3.12
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 120, QUOTE_CHARS
_REPR.maxdict = _REPR.maxlist = _REPR.maxtuple = _REPR.maxset = 8


def shown(value: Any) -> str:
    """repr(value) as a message quotes it: short values whole, long or deep ones elided."""
    return shortened(_REPR.repr(value))


def shortened(text: str, limit: int = QUOTE_CHARS) -> str:
    """`text` cut to `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"
