"""The Python examples of README and docs/ import what they say from where they say it."""

from __future__ import annotations

import importlib
import re

import pytest

from tests.conftest import REPO_ROOT

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
BLOCKS = [
    block for page in PAGES for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
]
IMPORTS = [
    (match.group(1), name.strip())
    for block in BLOCKS
    for match in re.finditer(r"^from ((?:core|training)[\w.]*) import ([\w, ]+)", block, re.M)
    for name in match.group(2).split(",")
]


def test_readme_shows_the_public_entry_points() -> None:
    shown = {name for _, name in IMPORTS}
    assert {
        "make_env",
        "make_trading_vec_env",
        "FeatureStore",
        "plan",
        "load_config",
        "run_job",
    } <= shown


@pytest.mark.parametrize(("module", "name"), IMPORTS, ids=[f"{m}.{n}" for m, n in IMPORTS])
def test_readme_import_works(module: str, name: str) -> None:
    assert callable(getattr(importlib.import_module(module), name))
