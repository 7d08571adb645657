"""Run the documented examples, so that they fail the build when they drift.

Every ```python block of every ``docs/*.md`` file and of ``README.md`` runs, in order, in one
namespace per file, against the test database. A block preceded by the HTML
comment ``<!-- no-run -->`` (on the last non-blank line before its fence) is
skipped: use it only for what cannot run standalone (a settings file, a
fragment of a class). ``docs/examples/queue_examples.py`` runs as a script.
"""

from __future__ import annotations

import re
import runpy
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
NO_RUN = "<!-- no-run -->"
FENCE = re.compile(r"^( *)```(\w*)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int
    language: str
    code: str
    is_skipped: bool


def extract_blocks(path: Path) -> list[Block]:
    """Return the fenced blocks of a Markdown file, in order.

    Raises:
        ValueError: A fence is never closed.
    """
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    previous = ""
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            if lines[index].strip():
                previous = lines[index].strip()
            index += 1
            continue
        start = index
        indent = len(match.group(1))
        end = next(
            (n for n in range(start + 1, len(lines)) if lines[n].strip().startswith("```")), None
        )
        if end is None:
            raise ValueError(f"{path.name}:{start + 1}: code fence is never closed")
        code = "\n".join(line[indent:] for line in lines[start + 1 : end]) + "\n"
        blocks.append(Block(path, start + 1, match.group(2), code, previous == NO_RUN))
        previous = ""
        index = end + 1
    return blocks


def python_blocks(path: Path) -> list[Block]:
    """The blocks of ``path`` that run: ```python, not marked no-run."""
    return [b for b in extract_blocks(path) if b.language == "python" and not b.is_skipped]


def doc_files() -> list[Path]:
    """The Markdown files whose examples run: ``docs/*.md`` and the README."""
    return [*sorted(DOCS.glob("*.md")), DOCS.parent / "README.md"]


@pytest.fixture
def clean_runtime():
    """Close what examples may leave open: executors' processes, LISTEN connections."""
    yield
    from container_manager.executors import close_executors
    from container_manager.queue import queue_manager

    queue_manager.close()
    close_executors()


def test_extract_blocks_keeps_order_and_honours_no_run(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text(
        "# T\n```python\na = 1\n```\n<!-- no-run -->\n\n```python\nboom(\n```\n"
        "```bash\nls\n```\n```python\nb = a + 1\n```\n"
    )
    blocks = extract_blocks(doc)
    assert [(b.language, b.is_skipped) for b in blocks] == [
        ("python", False),
        ("python", True),
        ("bash", False),
        ("python", False),
    ]
    assert [b.code for b in python_blocks(doc)] == ["a = 1\n", "b = a + 1\n"]


def test_indented_blocks_of_a_list_are_found_and_dedented(tmp_path):
    doc = tmp_path / "list.md"
    doc.write_text("1. Step:\n\n   ```python\n   x = 1\n   if x:\n       y = 2\n   ```\n")
    assert [b.code for b in python_blocks(doc)] == ["x = 1\nif x:\n    y = 2\n"]


def test_an_unclosed_fence_is_an_error(tmp_path):
    doc = tmp_path / "broken.md"
    doc.write_text("```python\nx = 1\n")
    with pytest.raises(ValueError, match="never closed"):
        extract_blocks(doc)


def test_the_api_reference_has_runnable_examples():
    assert len(python_blocks(DOCS / "api-reference.md")) >= 10


@pytest.mark.django_db
@pytest.mark.usefixtures("clean_runtime")
@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.name)
def test_documented_examples_run(path, capsys):
    namespace: dict[str, object] = {"__name__": f"docs.{path.stem}"}
    for block in python_blocks(path):
        code = compile(block.code, f"{path.name}:{block.line}", "exec")
        try:
            exec(code, namespace)
        except Exception as exc:
            pytest.fail(
                f"{path.name}, block at line {block.line} failed: "
                f"{type(exc).__name__}: {exc}\n{block.code}"
            )
    capsys.readouterr()


@pytest.mark.django_db
@pytest.mark.usefixtures("clean_runtime")
def test_queue_examples_script_runs(capsys):
    runpy.run_path(str(DOCS / "examples" / "queue_examples.py"), run_name="__main__")
    out = capsys.readouterr().out
    for expected in (
        "is already queued",
        "(priority: 80)",
        "Queue status: scheduled",
        "launched successfully",
        "Launched 1 jobs",
        "Queue depth: 0",
        "After a retryable failure: retrying",
        "transient (CONNECTION_ERROR)",
    ):
        assert expected in out
    from container_manager.models import ContainerJob

    assert not ContainerJob.objects.exclude(
        status__in=["completed", "failed", "cancelled", "timeout"]
    ).exists()
