"""Print how many generated inputs each surface received (tests/property/tally.py)."""

from __future__ import annotations

from typing import Any

from tests.property.tally import ANSWERS, TRIED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TRIED:
        return
    terminalreporter.section("generated inputs tried per surface (answers by status code)")
    for surface, count in sorted(TRIED.items()):
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(ANSWERS[surface].items()))
        terminalreporter.write_line(f"{count:6d}  {surface:42s} {codes}")
    terminalreporter.write_line(f"{sum(TRIED.values()):6d}  in total")
