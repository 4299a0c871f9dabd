"""Files and folders written whole or not at all: written under a temp name beside the target,
fsynced, renamed into place in one step, and the rename fsynced too.

A job killed mid-write (SIGKILL, preemption, power loss) leaves the previous version or nothing,
never a half-written checkpoint, result or dataset; readers never need to validate partial files.
Temp files are `.{target name}.{pid}-{random}.tmp` beside their target, so `temp_files` finds
what a killed writer left. Standard library only (and core.errors): the trainer and the report import this.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from core.errors import UserError

TEMP_SUFFIX = ".tmp"
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # a full filesystem, a user's quota used up


class DiskFullError(UserError):
    """A write found no space: the target is untouched (the temp file is removed), so the
    command can be run again once there is room. `fix` says how; callers that know how the work
    continues (--resume RUN) say so with `with_fix`."""

    def __init__(self, path: Path, error: OSError, fix: str | None = None) -> None:
        self.path, self.error = path, error
        self.fix = fix or (
            f"free space on the filesystem of {path.parent} (df -h {path.parent}) or raise "
            "your quota, then run the command again"
        )
        why = "no space left" if error.errno == errno.ENOSPC else "disk quota exceeded"
        super().__init__(f"{why} writing {path}: it was not written\n  fix: {self.fix}")

    def with_fix(self, fix: str) -> DiskFullError:
        return DiskFullError(self.path, self.error, fix)


@contextlib.contextmanager
def replacing_path(path: Path, private: bool = False) -> Iterator[Path]:
    """Yield a temp path for writers that want a file name (pandas, pyarrow); on success it is
    fsynced and renamed onto `path`, on any failure it is removed and `path` is untouched; a
    full disk or quota is raised as DiskFullError (a message, not a traceback).
    private: readable by the user only (0600) from its creation, whatever the umask or an older
    `path` allowed."""
    with _said_when_full(path):
        tmp = _claim_temp(path, 0o600 if private else 0o666)
    try:
        with _said_when_full(path):
            yield tmp
            if not private:
                _keep_mode(tmp, path)
            _fsync_file(tmp)
            os.replace(tmp, path)
            fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _said_when_full(path: Path) -> Iterator[None]:
    """A full disk or quota while writing `path` becomes DiskFullError; other errors pass."""
    try:
        yield
    except OSError as error:
        if error.errno in NO_SPACE:
            raise DiskFullError(path, error) from None
        raise


@contextlib.contextmanager
def replacing(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file for writing (`mode` "w" or "wb"); on success it replaces `path` whole."""
    with replacing_path(path) as tmp, open(tmp, mode) as handle:
        yield handle


def write_json(path: Path, document: Any) -> None:
    with replacing(path, "w") as handle:
        json.dump(document, handle, indent=2, allow_nan=True)
        handle.write("\n")


def read_json(path: Path) -> Any:
    """What `write_json` wrote, or None when the file is missing or unreadable (a writer that
    died before its rename leaves the previous version, never half a file)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_text(path: Path, text: str) -> None:
    with replacing(path, "w") as handle:
        handle.write(text)


def write_private_text(path: Path, text: str) -> None:
    """A secret (a storage URL with its password) for this user's processes only: 0600."""
    with replacing_path(path, private=True) as tmp, open(tmp, "w") as handle:
        handle.write(text)


def temp_files(path: Path) -> list[Path]:
    """Temp files of writers of `path`: a killed one's leftovers, or a live one's work. The tag
    between name and suffix has no dot, so `x`'s temps are never taken for `x.csv`'s."""
    if not path.parent.is_dir():
        return []
    prefix = f".{path.name}."
    return sorted(
        item
        for item in path.parent.iterdir()
        if item.name.startswith(prefix)
        and item.name.endswith(TEMP_SUFFIX)
        and "." not in item.name[len(prefix) : -len(TEMP_SUFFIX)]
    )


def remove_temp_files(directory: Path) -> list[Path]:
    """Remove the temp files of other processes directly in `directory` and return them: for an
    owner that knows it is the folder's only writer (a resumed job), so another process's temp
    is a killed one's. This process's own are kept (its heartbeat thread may be mid-write)."""
    if not directory.is_dir():
        return []
    own = f".{os.getpid()}-"
    stale = [
        item
        for item in directory.iterdir()
        if item.name.startswith(".")
        and item.name.endswith(TEMP_SUFFIX)
        and own not in item.name
        and item.is_file()
    ]
    for item in stale:
        item.unlink(missing_ok=True)
    return stale


def publish_dir(scratch: Path, final: Path) -> None:
    """Make everything in `scratch` durable, then rename it to `final` in one step: readers see
    the whole folder or none of it. Raises OSError if `final` exists with content; whether a
    rival's folder wins is the caller's policy."""
    for item in scratch.rglob("*"):
        if item.is_dir():
            fsync_dir(item)
        else:
            _fsync_file(item)
    fsync_dir(scratch)
    os.rename(scratch, final)
    fsync_dir(final.parent)


def remove_dir(path: Path) -> None:
    """Delete a folder in one step as readers see it: rename it aside, then delete the hidden
    copy, so nobody lists a half-deleted folder and its name is free at once."""
    aside = _sibling(path, ".removing")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def fsync_dir(directory: Path) -> None:
    """Make renames in `directory` durable where the OS allows it (not on Windows, where a
    folder cannot be opened; the data itself is already on disk, so skipping is safe)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _claim_temp(path: Path, mode: int = 0o666) -> Path:
    """Create a new empty file beside `path` (same filesystem, so the rename is atomic), unique
    per call so concurrent writers never share one; created as open() would, so it gets the
    umask's permissions (not mkstemp's 0600) unless `mode` is stricter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = _sibling(path, TEMP_SUFFIX)
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
        except FileExistsError:
            continue
        return tmp


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def _keep_mode(tmp: Path, path: Path) -> None:
    """A replaced file keeps its permission bits: a rewrite must not change who can read it."""
    with contextlib.suppress(FileNotFoundError):
        os.chmod(tmp, path.stat().st_mode & 0o777)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
