"""Field checks every model runs before Django's own, so that bad input is a ValidationError.

Django's model validation leaves a few inputs to the database, which then
fails with an error that names no field (``DataError``, ``IntegrityError``)
or fails in Python before any check runs (``TypeError``, ``ValueError``,
``UnicodeEncodeError``). :class:`CheckedFieldsMixin` catches them first,
field by field:

- text with a NUL character (PostgreSQL's text columns refuse it) or a lone
  surrogate (no database can encode it), in text fields and anywhere inside
  JSON fields;
- JSON nested deeper than :data:`MAX_JSON_DEPTH`;
- a number that is not finite (``nan``, ``inf``), a boolean or a string
  where a number is expected, and a value out of the column's range;
- ``""`` in a nullable number field becomes None (as a form would send it);
  ``""`` or None in a required one is an error naming the field.

Every message names the field (``{"name": ["..."]}``).
"""

from __future__ import annotations

import datetime
import decimal
import math
import re
from collections.abc import Collection, Iterator
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

#: Deepest nesting accepted in a JSON field (the environment is flat).
MAX_JSON_DEPTH = 32
#: The largest value of a 64-bit signed column; smaller columns say their own.
_INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "SmallIntegerField": (-32768, 32767),
    "PositiveSmallIntegerField": (0, 32767),
    "IntegerField": (-2147483648, 2147483647),
    "PositiveIntegerField": (0, 2147483647),
    "BigIntegerField": (-9223372036854775808, 9223372036854775807),
    "PositiveBigIntegerField": (0, 9223372036854775807),
}


def text_problem(value: str) -> str:
    """Say what in ``value`` no database column can store, or "" when nothing.

    Example::

        text_problem("a\\x00b") == "Contains a NUL character (\\\\x00) at position 1."
    """
    position = value.find("\x00")
    if position >= 0:
        return f"Contains a NUL character (\\x00) at position {position}."
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"Contains a lone surrogate ({value[exc.start]!r}) at position {exc.start}: "
            "not valid Unicode text."
        )
    return ""


#: An image reference, as Docker's reference grammar has it: an optional
#: registry (host, port), lower-case path components, then ``:tag`` and/or
#: ``@algorithm:digest``.
_ALNUM = r"[a-z0-9]+"
_COMPONENT = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_REFERENCE = re.compile(
    rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?\Z"
)
#: The longest repository name Docker accepts.
MAX_IMAGE_NAME = 255


def image_reference_problem(value: str) -> str:
    """Say why ``value`` cannot be an image reference, or "" when it can (or is empty).

    Example::

        image_reference_problem("Not A Valid Image!!") != ""
        image_reference_problem("registry.example.com:5000/team/app:1.2") == ""
    """
    if not value:
        return ""
    if IMAGE_REFERENCE.match(value) is None:
        return (
            f"{value!r} is not an image reference: a name of lower-case letters, digits and "
            f"'.', '_' or '-' parts separated by '/', optionally after a registry host[:port], "
            f"then optionally :tag and @sha256:digest (e.g. registry.example.com/team/app:1.2)."
        )
    name = value.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    first, _, rest = name.partition("/")
    is_registry = rest and (
        "." in first or ":" in first or first == "localhost" or first[:1] == "["
    )
    if rest and not is_registry and not re.fullmatch(_COMPONENT, first):
        return (
            f"{value!r} is not an image reference: {first!r} is neither a registry host "
            f"(with a '.' or a port, or localhost) nor a lower-case repository name."
        )
    if len(name) > MAX_IMAGE_NAME:
        return f"The image name has {len(name)} characters; at most {MAX_IMAGE_NAME}."
    return ""


def validate_image_reference(value: str) -> None:
    """The validator of ``ContainerJob.image``.

    Raises:
        ValidationError: The value cannot be an image reference.
    """
    problem = image_reference_problem(value)
    if problem:
        raise ValidationError(problem, code="invalid_image")


def _strings_in(value: Any, depth: int = 0) -> Iterator[str]:
    """Yield every string of a JSON value, keys included, checking the depth."""
    if depth > MAX_JSON_DEPTH:
        raise ValidationError(f"Nested deeper than {MAX_JSON_DEPTH} levels.", code="too_deep")
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                yield key
            yield from _strings_in(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings_in(item, depth + 1)


def json_problem(value: Any) -> str:
    """Say what in a JSON value cannot be stored, or "" when nothing."""
    try:
        for text in _strings_in(value):
            problem = text_problem(text)
            if problem:
                return problem
    except ValidationError as exc:
        return exc.messages[0]
    if isinstance(value, float) and not math.isfinite(value):
        return "Must be a finite number."
    return ""


def _number_problem(field: models.Field[Any, Any], value: Any) -> str:
    if isinstance(value, bool):
        return "Must be a number, not true or false."
    if not isinstance(value, int | float | str | decimal.Decimal):
        return f"Must be a number, not {type(value).__name__}."
    if isinstance(field, models.FloatField):
        if isinstance(value, int | float) and not math.isfinite(float(value)):
            return "Must be a finite number."
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return f"{value!r} is not a number."
            if not math.isfinite(number):
                return "Must be a finite number."
        return ""
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return f"{value!r} is not a whole number."
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            return f"{value!r} is not a whole number."
    if isinstance(value, int):
        low, high = _INTEGER_RANGES.get(field.get_internal_type(), (None, None))
        if low is not None and high is not None and not low <= value <= high:
            return f"Must be between {low} and {high}."
    return ""


def _is_missing(field: models.Field[Any, Any], value: Any) -> bool:
    """None in a column that cannot hold it (numbers are checked with their own rule).

    Django's ``clean_fields`` lets None through for a field that may be
    blank, and the database then refuses it.
    """
    if value is not None or field.null:
        return False
    if isinstance(field, models.IntegerField | models.FloatField | models.JSONField):
        return False
    # Filled in by ``pre_save``, after validation.
    return not getattr(field, "auto_now", False) and not getattr(field, "auto_now_add", False)


def field_problems(instance: models.Model, exclude: Collection[str] = ()) -> dict[str, str]:
    """Check ``instance``'s fields for what Django would leave to the database.

    Normalises ``""`` in nullable number fields to None on the instance.

    Returns:
        Field name to message, for each field with a problem.
    """
    problems: dict[str, str] = {}
    for field in instance._meta.concrete_fields:
        if field.name in exclude or field.primary_key or field.is_relation:
            continue
        value = getattr(instance, field.attname)
        problem = ""
        if _is_missing(field, value):
            problem = "This field cannot be null."
        elif isinstance(field, models.JSONField):
            if value is None and not field.null:
                problem = "This field cannot be null."
            else:
                problem = json_problem(value)
        elif isinstance(value, str) and isinstance(field, models.CharField | models.TextField):
            problem = text_problem(value)
            if not problem and field.max_length and len(value) > field.max_length:
                problem = f"At most {field.max_length} characters (it has {len(value)})."
        elif isinstance(field, models.DateField) and value is not None:
            if not isinstance(value, datetime.date | str):
                problem = f"{value!r} is not a date and time."
        elif isinstance(field, models.IntegerField | models.FloatField):
            if value is None or value == "":
                if field.null:
                    setattr(instance, field.attname, None)
                elif value == "" or not field.has_default():
                    problem = "This field is required."
            else:
                problem = _number_problem(field, value)
        if problem:
            problems[field.name] = problem
    return problems


class CheckedFieldsMixin:
    """Run :func:`field_problems` before Django's ``clean_fields``.

    A field with a problem is left out of Django's own checks (and of the
    unique checks of ``full_clean``, which would query the database with it).
    """

    def clean_fields(self, exclude: Collection[str] | None = None) -> None:
        excluded = set(exclude or ())
        problems = field_problems(self, excluded)  # type: ignore[arg-type]
        errors: dict[str, list[str]] = {name: [message] for name, message in problems.items()}
        try:
            super().clean_fields(exclude=excluded | set(problems))  # type: ignore[misc]
        except ValidationError as exc:
            for name, messages in exc.message_dict.items():
                errors.setdefault(name, []).extend(messages)
        if errors:
            raise ValidationError(errors)


__all__ = ["MAX_JSON_DEPTH", "CheckedFieldsMixin", "field_problems", "json_problem", "text_problem"]
