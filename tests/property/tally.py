"""Inputs tried per surface by the property tests, printed at the end of the run."""

from __future__ import annotations

from collections import Counter, defaultdict

#: Surface ("list containerjob (GET params)", ...) -> inputs sent.
TRIED: Counter[str] = Counter()
#: Surface -> status code of the answers -> how many. Outside the admin, 200
#: is an accepted input and 400 a refused one (a documented error).
ANSWERS: defaultdict[str, Counter[int]] = defaultdict(Counter)


def record(surface: str, status_code: int) -> None:
    """Count one input sent to ``surface`` and the status code it was answered with."""
    TRIED[surface] += 1
    ANSWERS[surface][status_code] += 1
