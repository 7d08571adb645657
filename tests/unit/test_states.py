"""The transition table and its helpers."""

from __future__ import annotations

import itertools

import pytest

from container_manager import states
from container_manager.states import TRANSITIONS, JobStatus, can_transition, sources_of

ALL_PAIRS = list(itertools.product(JobStatus.values, repeat=2))
VALID_PAIRS = [(a, b) for a, b in ALL_PAIRS if b in TRANSITIONS[a]]
INVALID_PAIRS = [(a, b) for a, b in ALL_PAIRS if b not in TRANSITIONS[a]]


def test_every_status_has_a_row_in_the_table():
    assert set(TRANSITIONS) == set(JobStatus.values)


def test_no_status_moves_to_itself():
    assert all(a not in TRANSITIONS[a] for a in TRANSITIONS)


@pytest.mark.parametrize(("current", "new"), VALID_PAIRS)
def test_can_transition_allows_table_moves(current, new):
    assert can_transition(current, new) is True
    assert current in sources_of(new)


@pytest.mark.parametrize(("current", "new"), INVALID_PAIRS)
def test_can_transition_refuses_other_moves(current, new):
    assert can_transition(current, new) is False
    assert current not in sources_of(new)


def test_completed_and_cancelled_are_final():
    assert TRANSITIONS[JobStatus.COMPLETED] == frozenset()
    assert TRANSITIONS[JobStatus.CANCELLED] == frozenset()


def test_unknown_status_cannot_move():
    assert can_transition("exploded", JobStatus.QUEUED) is False
    assert sources_of("exploded") == frozenset()


def test_status_groups_are_disjoint_where_they_must_be():
    assert not states.READY_STATUSES & states.TERMINAL_STATUSES
    assert not states.ACTIVE_STATUSES & states.TERMINAL_STATUSES
    assert states.RETRYABLE_STATUSES <= states.TERMINAL_STATUSES
