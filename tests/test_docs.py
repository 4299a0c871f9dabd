"""The documentation's relative links point at files that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_links(page: Path) -> list[str]:
    links = [target.split("#", 1)[0] for target in LINK.findall(page.read_text())]
    return [t for t in links if t and not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_resolves(page: Path) -> None:
    missing = [t for t in relative_links(page) if not (page.parent / t).exists()]
    assert not missing


def test_readme_links_every_docs_page() -> None:
    linked = {(REPO_ROOT / t).resolve() for t in relative_links(REPO_ROOT / "README.md")}
    assert {p.resolve() for p in PAGES[1:]} <= linked
    assert "../shared" not in (REPO_ROOT / "README.md").read_text()
