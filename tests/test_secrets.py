"""Secrets stay secret: a storage URL's password is masked in everything written or printed, reaches
the workers through a 0600 file (never a pickle), and run folders are the user's alone."""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

import core.redact
from core.atomic import write_private_text
from core.redact import MASK, hide_password, keep_secret, redact
from tests.conftest import ENTRY, PYTHON, REPO_ROOT
from tests.helpers.datasets import write_csv
from tests.helpers.walk_forward import LEARNABLE, ar1_frames, bars_needed, learnable_config
from training.tuning.worker import TuneWorker, storage_url

PASSWORD = "s3cret-PW"
REFUSED = f"postgresql://u:{PASSWORD}@127.0.0.1:1/db"  # nothing listens on port 1


@pytest.fixture(autouse=True)
def forget_secrets() -> Iterator[None]:
    """Each test starts with no remembered password (they are process-wide)."""
    core.redact._secrets.clear()
    yield
    core.redact._secrets.clear()


# Redaction ---------------------------------------------------------------------------------------
def test_a_url_is_shown_without_its_password() -> None:
    assert hide_password(REFUSED) == "postgresql://u:***@127.0.0.1:1/db"
    assert hide_password("postgresql+psycopg://u:p%40ss@h:5432/db") == (
        "postgresql+psycopg://u:***@h:5432/db"
    )
    assert hide_password("postgresql://u@h/db") == "postgresql://u@h/db"
    assert hide_password("sqlite:////tmp/study.db") == "sqlite:////tmp/study.db"


def test_a_command_line_and_an_error_text_lose_the_password() -> None:
    line = f"python train.py --tune --storage {REFUSED} --storage={REFUSED} --name x"
    assert PASSWORD not in redact(line) and "--name x" in redact(line)
    assert redact(line).count("postgresql://u:***@127.0.0.1:1/db") == 2
    # An unencoded "@" in the password: hidden up to the host's "@".
    assert redact("mysql://me:p@ss@db:3306/x") == "mysql://me:***@db:3306/x"
    # Text that only mentions the password is masked once the URL's password is remembered.
    keep_secret("postgresql://u:p%40ss@h/db")
    assert (
        redact("FATAL: password 'p@ss' (p%40ss) rejected")
        == f"FATAL: password '{MASK}' ({MASK}) rejected"
    )


def test_urls_without_a_password_and_plain_text_are_unchanged() -> None:
    for text in (
        "https://sqlalche.me/e/21/e3q8 and http://host:8080/path?a=b@c",
        "postgresql://postgres@127.0.0.1:55432/ploutos",
        "ratio 3:2 @ noon, user@example.com",
    ):
        assert redact(text) == text


passwords = st.text(st.characters(codec="utf-8", exclude_characters="*"), min_size=1, max_size=30)


@given(password=passwords, user=st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True))
def test_a_random_password_never_survives_in_its_url(password: str, user: str) -> None:
    url = f"postgresql://{user}:{quote(password, safe='')}@db.example:5432/optuna"
    masked = f"postgresql://{user}:***@db.example:5432/optuna"
    assert redact(f"error: cannot open {url}\n") == f"error: cannot open {masked}\n"
    assert hide_password(url) == masked


@given(password=passwords, before=st.text(max_size=20), after=st.text(max_size=20))
def test_a_remembered_password_never_survives_in_any_text(
    password: str, before: str, after: str
) -> None:
    # Passwords without "*" (the mask's character): one that is could be rebuilt by the mask.
    core.redact._secrets.clear()
    keep_secret(f"postgresql://u:{quote(password, safe='')}@h/db")
    assert password not in redact(before + password + after)
    assert quote(password, safe="") not in redact(before + quote(password, safe="") + after)


@given(url=st.from_regex(r"[a-z]+://[a-z]+@[a-z.]+(:[0-9]{1,5})?/[a-z]*", fullmatch=True))
def test_any_url_without_a_password_is_unchanged(url: str) -> None:
    assert redact(url) == url


# The secret file ---------------------------------------------------------------------------------
def test_the_secret_file_is_private_from_its_creation_whatever_the_umask(tmp_path: Path) -> None:
    secret = tmp_path / "tuning" / "storage.url"
    old = os.umask(0)  # the most permissive: a plain open() would make it 0666
    try:
        secret.parent.mkdir()
        secret.write_text("public\n")
        os.chmod(secret, 0o644)
        write_private_text(secret, REFUSED)  # replaces a readable file: the new one is 0600
    finally:
        os.umask(old)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert storage_url(str(secret)) == REFUSED


def test_a_workers_pickle_carries_the_files_path_not_the_url(tmp_path: Path) -> None:
    worker = TuneWorker(str(tmp_path), 0, 2, 4, "s", str(tmp_path / "storage.url"), 30, 1, 1, 10)
    assert PASSWORD.encode() not in pickle.dumps(worker)
    with pytest.raises(Exception, match="cannot read the sweep's storage URL"):
        storage_url(str(tmp_path / "gone.url"))


# Through the command line ------------------------------------------------------------------------
def _files_holding(folder: Path, secret: str) -> list[str]:
    """Every file under `folder`, read as bytes, that holds `secret` as typed or URL-encoded."""
    needles = {secret.encode(), quote(secret, safe="").encode()}
    return [
        str(path)
        for path in folder.rglob("*")
        if path.is_file() and any(needle in path.read_bytes() for needle in needles)
    ]


@pytest.mark.slow
def test_a_refused_storage_ends_in_a_message_without_the_password(tmp_path: Path) -> None:
    config = learnable_config("walk_forward.max_folds=1")
    dataset = tmp_path / "dataset"
    write_csv(dataset, ar1_frames(bars_needed(config), 2, 0.3, seed=5))
    command = [PYTHON, str(ENTRY), "--tune", "--workers", "2", "--data", str(dataset),
               "--output", str(tmp_path / "runs"), "--no-progress", "--storage", REFUSED]  # fmt: skip
    for item in [*LEARNABLE, "walk_forward.max_folds=1"]:
        command += ["--set", item]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "error: cannot open the study storage postgresql://u:***@127.0.0.1:1/db" in done.stderr
    assert "Connection refused" in done.stderr and "  fix: " in done.stderr
    assert "Traceback" not in done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert stat.S_IMODE(run_dir.stat().st_mode) & 0o077 == 0  # 0700, or stricter by umask
    assert "--storage postgresql://u:***@127.0.0.1:1/db" in (run_dir / "command.txt").read_text()
    assert _files_holding(run_dir, PASSWORD) == []
