"""docs/troubleshooting.md covers every error code of the catalogue, with its own text."""

from __future__ import annotations

import re
from pathlib import Path

from container_manager.classification import CATALOGUE

DOC = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"


def _sections() -> dict[str, str]:
    text = DOC.read_text()
    parts = re.split(r"^### ([A-Z_]+)\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_catalogue_code_has_a_section_with_cause_and_fix():
    sections = _sections()
    assert set(CATALOGUE) <= set(sections), set(CATALOGUE) - set(sections)
    for code, entry in CATALOGUE.items():
        assert entry.description in sections[code], code
        assert entry.suggestion in sections[code], code


def test_no_section_names_a_code_that_does_not_exist():
    assert set(_sections()) <= set(CATALOGUE)
