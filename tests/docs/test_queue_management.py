"""The state table of docs/queue-management.md is the state machine of the code."""

from __future__ import annotations

import re

from container_manager.states import TRANSITIONS, JobStatus
from tests.docs.test_doc_examples import DOCS

DOC = DOCS / "queue-management.md"
ROW = re.compile(r"^\| `(\w+)` \| (.+) \|$", re.M)


def documented_transitions() -> dict[str, set[str]]:
    section = DOC.read_text().split("| from | may move to |", 1)[1].split("\n\n", 1)[0]
    return {
        source: set(re.findall(r"`(\w+)`", targets)) for source, targets in ROW.findall(section)
    }


def test_the_state_table_lists_every_status_and_every_move():
    documented = documented_transitions()
    assert set(documented) == set(JobStatus.values)
    assert documented == {source: set(targets) for source, targets in TRANSITIONS.items()}


def test_the_state_diagram_draws_only_allowed_moves():
    diagram = DOC.read_text().split("```mermaid", 1)[1].split("```", 1)[0]
    edges = re.findall(r"^\s*(\w+) --> (\w+)", diagram, flags=re.M)
    assert len(edges) >= 15
    for source, target in edges:
        assert target in TRANSITIONS[source], f"{source} --> {target}"
