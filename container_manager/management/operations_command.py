"""What the commands ``queue_status``, ``queue_task_status`` and ``queue_manage`` share.

Each runs one operation of :mod:`container_manager.operations` and prints its
answer: readable lines by default, the JSON shape with ``--json``. The exit
status says what happened (docs/command-reference.md): 0 done, 1 the task's
state does not allow the action, 2 bad arguments, 3 no such task or host,
4 the database refused (no permission, or unreachable).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from container_manager.management import package_version
from container_manager.operations import OperationError

#: Exit status by kind of refusal.
EXIT_STATUS = {"conflict": 1, "invalid": 2, "not_found": 3}
EXIT_DATABASE = 4


class OperationCommand(BaseCommand):
    """A command that runs one operation and prints its answer."""

    def get_version(self) -> str:
        """``--version``: this package's version."""
        return package_version()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json", action="store_true", help="Print the answer as JSON (the API's shape)"
        )

    def perform(self, options: dict[str, Any]) -> dict[str, Any]:
        """Run the operation; raise OperationError when it is refused."""
        raise NotImplementedError

    def render(self, answer: dict[str, Any], options: dict[str, Any]) -> None:
        """Print a successful answer for a person."""
        raise NotImplementedError

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            answer = self.perform(options)
        except OperationError as exc:
            if options["json"]:
                self.stdout.write(json.dumps(exc.answer(), indent=2))
            raise CommandError(
                f"{exc.message} ({exc.code})", returncode=EXIT_STATUS[exc.kind]
            ) from exc
        except DatabaseError as exc:
            raise CommandError(
                f"The database refused: {exc}".strip(), returncode=EXIT_DATABASE
            ) from exc
        if options["json"]:
            self.stdout.write(json.dumps(answer, indent=2))
        else:
            self.render(answer, options)

    # Output helpers --------------------------------------------------------------

    def line(self, text: str = "") -> None:
        self.stdout.write(text)

    def table(self, rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
        """Print ``rows`` as a table of ``columns`` (key, heading); "-" for empty values."""
        cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
        widths = [
            max([len(heading), *(len(cell[i]) for cell in cells)])
            for i, (_, heading) in enumerate(columns)
        ]
        self.line(
            "  ".join(heading.ljust(widths[i]) for i, (_, heading) in enumerate(columns)).rstrip()
        )
        for cell in cells:
            self.line("  ".join(value.ljust(widths[i]) for i, value in enumerate(cell)).rstrip())


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def name_value_pairs(values: list[str], flag: str) -> dict[str, str]:
    """``NAME=value`` arguments of a repeatable flag, as a dict.

    Raises:
        OperationError: A value is not ``NAME=value`` (exit status 2).
    """
    found: dict[str, str] = {}
    for value in values:
        name, equals, text = value.partition("=")
        if not equals or not name:
            raise OperationError(
                "VALIDATION_INVALID_PARAMS", f"{flag} takes NAME=value, not {value!r}", "invalid"
            )
        found[name] = text
    return found


def refused(exc: ValidationError) -> OperationError:
    """A model's ValidationError as the command's refusal (exit status 2), fields named."""
    problems = exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages}
    text = "; ".join(
        f"{field}: {' '.join(messages)}" if field and field != "__all__" else " ".join(messages)
        for field, messages in problems.items()
    )
    return OperationError("VALIDATION_INVALID_PARAMS", text, "invalid")
