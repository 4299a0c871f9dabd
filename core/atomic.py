"""Files written whole or not at all: a temp file beside the target, fsynced, then renamed.

A job killed mid-write (SIGKILL, preemption) leaves the previous version or nothing, never a
half-written checkpoint or result; readers never need to validate partial files.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def replacing(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file for writing; on success it replaces `path` in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, document: Any) -> None:
    with replacing(path, "w") as handle:
        json.dump(document, handle, indent=2, allow_nan=True)
        handle.write("\n")


def write_text(path: Path, text: str) -> None:
    with replacing(path, "w") as handle:
        handle.write(text)
