"""argparse value types shared by the command-line scripts."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """A whole number >= 1, with a message argparse prints next to the flag."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
