"""Links of the docs and the README point at files and headings that exist.

``docs/*.md`` link each other relatively. The README is also the project's
page on the package index, where a relative link leads nowhere, so its links
are absolute: into this repository on GitHub (``<Homepage>/blob/main/<path>``,
the Homepage of pyproject's ``[project.urls]``). Those are mapped back to this
checkout and checked exactly as the relative ones are.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tests.docs.test_doc_examples import doc_files

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
REPOSITORY = PROJECT["urls"]["Homepage"]
#: A link into this repository's main branch on GitHub: a file (blob) or a folder (tree).
IN_REPOSITORY = re.compile(
    re.escape(REPOSITORY) + r"/(?:blob|tree)/main/(?P<path>[^#]*)(?:#(?P<anchor>.*))?"
)
#: Inline links and images, reference definitions, and HTML ``href``/``src``.
LINKS = (
    re.compile(r"\]\(([^)\s]+)\)"),
    re.compile(r"^ *\[[^\]]+\]: *(\S+)", re.M),
    re.compile(r"""\b(?:href|src)=["']([^"']+)["']"""),
)
ABSOLUTE = re.compile(r"[a-z][a-z0-9+.-]*:", re.I)
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


def links(path: Path) -> list[str]:
    """The targets of a Markdown file's links, outside its code blocks."""
    text = FENCED.sub("", path.read_text(encoding="utf-8"))
    return [target for pattern in LINKS for target in pattern.findall(text)]


def local_target(path: Path, target: str) -> tuple[Path, str] | None:
    """The file (or folder) of this checkout and the heading anchor a link points at.

    None for a link elsewhere than this repository's main branch.
    """
    match = IN_REPOSITORY.fullmatch(target)
    if match:
        return ROOT / match["path"], match["anchor"] or ""
    if ABSOLUTE.match(target):
        return None
    file_part, _, anchor = target.partition("#")
    return ((path.parent / file_part).resolve() if file_part else path), anchor


def is_broken(path: Path, target: str) -> bool:
    """True when a link's file, or its heading anchor, does not exist in this checkout."""
    local = local_target(path, target)
    if local is None:
        return False
    linked, anchor = local
    if linked.name == "performance.md" and not linked.exists():
        return False  # written in parallel; linked ahead of time
    if not linked.exists():
        return True
    return bool(anchor) and linked.suffix == ".md" and anchor not in anchors(linked)


def test_github_anchors_are_computed_like_github():
    assert "why-the-limits-hold-with-any-number-of-workers" in anchors(
        doc_files()[0].parent / "api-reference.md"
    )


def test_links_into_the_repository_on_github_are_checked_in_this_checkout():
    blob = f"{REPOSITORY}/blob/main/"
    assert local_target(README, blob + "docs/api.md#errors") == (ROOT / "docs" / "api.md", "errors")
    assert not is_broken(README, blob + "docs/api-reference.md#retry-strategies")
    assert not is_broken(README, f"{REPOSITORY}/tree/main/docs")
    assert is_broken(README, blob + "docs/api-reference.md#no-such-heading")
    assert is_broken(README, blob + "docs/no-such-page.md")
    assert local_target(README, f"{REPOSITORY}/blob/v1.0/docs/no-such-page.md") is None
    assert local_target(README, "https://docs.djangoproject.com/") is None


def test_links_are_found_inline_by_reference_and_in_html(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text(
        "See [a](docs/a.md#x) and ![b](img/b.png).\n\n[c]: https://example.com/c\n"
        '<a href="d.md">d</a>\n```text\n[e](not-a-link.md)\n```\n'
    )
    assert sorted(links(doc)) == ["d.md", "docs/a.md#x", "https://example.com/c", "img/b.png"]


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.name)
def test_links_resolve(path):
    assert [target for target in links(path) if is_broken(path, target)] == []


def test_the_readme_has_no_relative_links():
    # The package index shows the README too, where a relative link leads nowhere.
    assert [target for target in links(README) if not ABSOLUTE.match(target)] == []
    assert any(IN_REPOSITORY.fullmatch(target) for target in links(README))
