"""Passwords kept out of what Ploutos writes and prints: command.txt, logs, errors, the board.

A storage URL (`--storage postgresql://user:PW@host/db`) is shown as `postgresql://user:***@host/db`.
Text that only mentions the password (a driver's error, a traceback) cannot be parsed for it, so a
process remembers the passwords of the URLs it was given (`keep_secret`) and `redact` replaces
them wherever they occur, on top of hiding the password of any URL in the text. Standard library
only at import (SQLAlchemy parses URLs when one is shown): the entry point loads this first.
"""

from __future__ import annotations

import re
from urllib.parse import quote, quote_plus, unquote

MASK = "***"
# scheme://user:password@ — the password runs to the last "@" before a "/" or a space, so an
# unencoded "@" in it is hidden too.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)(?P<password>[^\s/]*)@")
_secrets: set[str] = set()


def keep_secret(url: str) -> None:
    """Remember the password of `url` (as typed and URL-decoded) for every later `redact`."""
    typed = [match.group("password") for match in _URL_PASSWORD.finditer(url)]
    plain = [unquote(p) for p in typed] + [p for p in [_parsed_password(url)] if p]
    # A driver may print the password decoded or encoded its own way: each form is hidden.
    forms = {*typed, *plain, *(quote(p, safe="") for p in plain), *map(quote_plus, plain)}
    _secrets.update(form for form in forms if form and form != MASK)


def hide_password(url: str) -> str:
    """The URL as SQLAlchemy renders it without its password; text that is no URL is redacted."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        shown = url
    return redact(shown)


def redact(text: str) -> str:
    """`text` with the passwords of the URLs in it and every remembered password masked."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", text)
    if _secrets:
        # One pass over all of them, longest first, so a password inside another is not half-hidden.
        pattern = "|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True))
        text = re.sub(pattern, MASK, text)
    return text


def _parsed_password(url: str) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).password
    except (ArgumentError, ValueError):
        return None
