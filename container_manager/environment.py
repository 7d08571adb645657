"""Parsing and validation of environment variables.

Templates store ``KEY=VALUE`` text, one variable a line; jobs store a JSON
object. Both are checked strictly: a malformed line is an error that names
the line, never silently dropped.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError

# POSIX portable names: letters, digits and underscore, not starting with a digit.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def parse_env_text(text: str) -> dict[str, str]:
    """Parse ``KEY=VALUE`` lines into a dict.

    Blank lines and lines starting with ``#`` are skipped. A value may be
    wrapped in single or double quotes, which are removed. A later line wins
    over an earlier one with the same key.

    Args:
        text: The template text.

    Returns:
        The variables, in the order they appear.

    Raises:
        ValidationError: Naming the first bad line by number and content.
    """
    result: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValidationError(
                "Line %(number)d (%(line)r) is not KEY=VALUE.",
                code="malformed_line",
                params={"number": number, "line": raw},
            )
        if not _NAME.match(key):
            raise ValidationError(
                "Line %(number)d: %(key)r is not a valid variable name "
                "(letters, digits and _, not starting with a digit).",
                code="invalid_name",
                params={"number": number, "key": key},
            )
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        result[key] = value
    return result


def validate_env_mapping(value: Any) -> None:
    """Check that ``value`` is a JSON object of valid names to strings.

    Args:
        value: The job's ``environment`` field.

    Raises:
        ValidationError: Naming the first bad key or value.
    """
    if not isinstance(value, dict):
        raise ValidationError(
            "Environment must be an object of NAME: value, not %(type)s.",
            code="not_a_mapping",
            params={"type": type(value).__name__},
        )
    for key, item in value.items():
        if not isinstance(key, str) or not _NAME.match(key):
            raise ValidationError(
                "%(key)r is not a valid variable name.", code="invalid_name", params={"key": key}
            )
        if not isinstance(item, str):
            raise ValidationError(
                "The value of %(key)s must be a string, not %(type)s.",
                code="not_a_string",
                params={"key": key, "type": type(item).__name__},
            )
