"""core.atomic: a target holds its old bytes or its new bytes, never a mix, and no temp stays."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.atomic import (
    DiskFullError,
    fsync_dir,
    publish_dir,
    remove_dir,
    remove_temp_files,
    replacing,
    replacing_path,
    temp_files,
    write_json,
    write_text,
)
from tests.conftest import PYTHON, REPO_ROOT


class Boom(Exception):
    pass


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@settings(max_examples=30)  # every write fsyncs: keep the suite fast
@given(st.lists(st.tuples(st.binary(max_size=64), st.booleans()), min_size=1, max_size=6))
def test_target_holds_the_last_successful_write(writes: list[tuple[bytes, bool]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.bin"
        expected = None
        for payload, fails in writes:
            try:
                with replacing(path) as handle:
                    handle.write(payload)
                    if fails:
                        raise Boom
            except Boom:
                pass
            else:
                expected = payload
            assert (path.read_bytes() if path.exists() else None) == expected
            assert names(Path(folder)) == ([path.name] if expected is not None else [])


def test_replacing_path_renames_on_success_and_cleans_up_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "table.csv"
    with replacing_path(path) as scratch:
        assert scratch.parent == path.parent and scratch.exists() and not path.exists()
        scratch.write_text("a,b\n1,2\n")
    assert path.read_text() == "a,b\n1,2\n"
    with pytest.raises(Boom), replacing_path(path) as scratch:
        scratch.write_text("half")
        raise Boom
    assert path.read_text() == "a,b\n1,2\n"
    assert names(path.parent) == ["table.csv"]


def test_a_failed_fsync_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "result.json"
    write_json(path, {"old": 1})

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", disk_full)
    with pytest.raises(DiskFullError, match=r"no space left writing .*result\.json"):
        write_json(path, {"new": 2})
    assert path.read_text() == '{\n  "old": 1\n}\n'
    assert names(tmp_path) == ["result.json"]


def test_the_file_and_then_its_folder_are_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "report.txt"
    synced: list[int] = []
    real_fsync = os.fsync

    def record(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr("os.fsync", record)
    write_text(path, "done\n")
    assert synced == [path.stat().st_ino, tmp_path.stat().st_ino]


def test_concurrent_writers_of_one_target_never_share_a_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with replacing(path, "w") as first, replacing(path, "w") as second:
        assert first.name != second.name
        assert sorted(map(str, temp_files(path))) == sorted([first.name, second.name])
        first.write("first")
        second.write("second")
    assert path.read_text() == "first"  # the inner context commits first, the outer last
    assert names(tmp_path) == ["state.json"]


def test_a_replaced_file_keeps_its_mode_and_a_new_one_follows_the_umask(tmp_path: Path) -> None:
    private = tmp_path / "private.csv"
    private.write_text("x\n")
    private.chmod(0o600)
    write_text(private, "y\n")
    assert private.stat().st_mode & 0o777 == 0o600

    umask = os.umask(0o022)
    try:
        write_text(tmp_path / "fresh.csv", "z\n")
    finally:
        os.umask(umask)
    assert (tmp_path / "fresh.csv").stat().st_mode & 0o777 == 0o644


def test_a_killed_writer_leaves_the_old_file_and_a_findable_temp(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT.csv"
    path.write_text("old\n")
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from core.atomic import replacing\n"
        "with replacing(Path(sys.argv[1])) as out:\n"
        "    out.write(b'new, half written'); out.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([PYTHON, "-c", code, str(path)], cwd=REPO_ROOT, timeout=120)
    assert done.returncode == -signal.SIGKILL
    assert path.read_text() == "old\n"
    (leftover,) = temp_files(path)
    assert leftover.name.startswith(".BTCUSDT.csv.") and leftover.name.endswith(".tmp")
    assert temp_files(tmp_path / "BTCUSDT") == []  # another target's temps are not its own
    with replacing_path(tmp_path / "progress.json") as live:  # this process's, mid-write
        assert remove_temp_files(tmp_path) == [leftover]  # what a resumed job clears
        assert live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BTCUSDT.csv", "progress.json"]
    assert remove_temp_files(tmp_path / "missing") == []


@settings(max_examples=30)
@given(
    st.dictionaries(
        st.tuples(
            st.sampled_from(["", "sub/", "sub/deeper/"]),
            st.from_regex(r"[a-z]{1,8}", fullmatch=True),
        ),
        st.binary(max_size=32),
        min_size=1,
        max_size=8,
    )
)
def test_a_published_folder_has_every_file(files: dict[tuple[str, str], bytes]) -> None:
    with tempfile.TemporaryDirectory() as root:
        scratch, final = Path(root) / ".building-x", Path(root) / "store"
        for (folder, name), payload in files.items():
            (scratch / folder).mkdir(parents=True, exist_ok=True)
            (scratch / folder / f"{name}.bin").write_bytes(payload)
        publish_dir(scratch, final)
        assert names(Path(root)) == ["store"]
        published = {
            p.relative_to(final).as_posix(): p.read_bytes() for p in final.rglob("*") if p.is_file()
        }
        assert published == {
            f"{folder}{name}.bin": payload for (folder, name), payload in files.items()
        }


def test_publishing_fsyncs_every_file_before_the_rename_and_the_parent_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch, final = tmp_path / ".building", tmp_path / "store"
    (scratch / "sub").mkdir(parents=True)
    files = [scratch / "meta.json", scratch / "sub" / "features.npy"]
    for file in files:
        file.write_bytes(b"x")
    inodes = {path.stat().st_ino: path for path in [*files, scratch / "sub", scratch, tmp_path]}
    synced: list[Path] = []
    real_fsync = os.fsync

    def record(fd: int) -> None:
        synced.append(inodes[os.fstat(fd).st_ino])
        assert (synced[-1] == tmp_path) == final.exists()  # only the parent after the rename
        real_fsync(fd)

    monkeypatch.setattr("os.fsync", record)
    publish_dir(scratch, final)
    assert sorted(synced) == sorted(inodes.values()) and synced[-1] == tmp_path


def test_publishing_onto_a_rival_folder_fails_and_keeps_both(tmp_path: Path) -> None:
    scratch, final = tmp_path / ".building", tmp_path / "store"
    for folder, text in ((scratch, "mine"), (final, "theirs")):
        folder.mkdir()
        (folder / "meta.json").write_text(text)
    with pytest.raises(OSError):
        publish_dir(scratch, final)
    assert (final / "meta.json").read_text() == "theirs"
    assert (scratch / "meta.json").read_text() == "mine"


def test_remove_dir_leaves_nothing_and_tolerates_a_missing_folder(tmp_path: Path) -> None:
    stale = tmp_path / "store"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "features.npy").write_bytes(b"\0" * 16)
    remove_dir(stale)
    assert names(tmp_path) == []
    remove_dir(stale)
    fsync_dir(tmp_path / "missing")  # best effort: a folder that cannot be opened is skipped
