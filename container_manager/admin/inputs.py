"""Checks of what a person sends to the admin, so that bad input is a 400 or a form error.

Django's admin leaves a few inputs to the database or to Python, which then
fail with a 500: an id such as ``²`` (``str.isdigit()`` accepts it, ``int()``
does not), an id out of a bigint's range, a NUL character in a filter (the
text columns of PostgreSQL refuse it), a lookup of the query string such as
``?name__regex=(`` (PostgreSQL refuses the pattern), a JSON document nested
too deep for the parser or holding a lone surrogate. :class:`SafeInputAdminMixin`
checks them first, for every ModelAdmin of the app:

- ids are read with :func:`parse_id` (ASCII digits only, at most 18 of them);
- the query string of a list may not hold a NUL character or a lone
  surrogate (400), and may filter only by the lookups of the list's own
  filters (:meth:`SafeInputAdminMixin.lookup_allowed`, else 400);
- the ids of an action (``_selected_action``) must be ids, else the action is
  refused with a message and nothing is changed;
- JSON fields of the forms use :class:`SafeJSONField`;
- a model error on a field the form does not show becomes an error of the
  whole form instead of Django's ``ValueError``.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import messages
from django.contrib.admin import helpers
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models
from django.db.models.constants import LOOKUP_SEP
from django.forms.fields import InvalidJSONInput
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect

from container_manager.environment import parse_env_text
from container_manager.models.validation import text_problem

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

    _AdminBase = ModelAdmin[Any]
else:
    _AdminBase = object

#: An id as the admin accepts it: ASCII digits, at most 18 (always within a bigint).
ID_PATTERN = re.compile(r"[0-9]{1,18}")
#: Deepest nesting of arrays and objects accepted in a JSON field of a form.
MAX_JSON_DEPTH = 32


def parse_id(value: object) -> int | None:
    """Return ``value`` as an id, or None when it is not one.

    Only ASCII digits count: ``"²"`` and ``"①"`` pass ``str.isdigit()`` but are
    no id. At most 18 digits, so the number always fits a 64-bit column.

    Example::

        parse_id("42") == 42; parse_id("²") is None; parse_id("9" * 19) is None
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value < 10**18 else None
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        return None
    return int(value)


def query_problem(request: HttpRequest) -> str:
    """Say what in the query string cannot be used in a database query, or ""."""
    for key, values in request.GET.lists():
        for text in (key, *values):
            problem = text_problem(text)
            if problem:
                return f"The parameter {key!r}: {problem}"
    return ""


def json_nesting(text: str) -> int:
    """Return how deep arrays and objects nest in a JSON text (strings are skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def json_value_problem(value: Any) -> str:
    """Say what in a parsed JSON value cannot be stored, or "" when nothing."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                return f"A string: {problem}"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "Numbers must be finite (no NaN or Infinity)."
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return ""


class SafeJSONField(forms.JSONField):
    """Django's JSON form field, refusing what would fail after it with a field error.

    Refused: nesting deeper than :data:`MAX_JSON_DEPTH` (Python's parser would
    raise ``RecursionError``), integers of more digits than Python converts
    (``ValueError``), ``NaN`` and ``Infinity`` (PostgreSQL's jsonb refuses
    them), and strings with a NUL character or a lone surrogate (the page
    could not be encoded when the form is shown again).
    """

    default_error_messages = {
        "too_deep": f"Nested deeper than {MAX_JSON_DEPTH} levels.",
        "unstorable": "%(problem)s",
    }

    def _parse(self, text: str) -> Any:
        if text.count("[") + text.count("{") > MAX_JSON_DEPTH and (
            json_nesting(text) > MAX_JSON_DEPTH
        ):
            raise ValidationError(self.error_messages["too_deep"], code="too_deep")
        try:
            return json.loads(text, cls=self.decoder)
        except (json.JSONDecodeError, ValueError, RecursionError) as exc:
            raise ValidationError(
                self.error_messages["invalid"], code="invalid", params={"value": text}
            ) from exc

    def to_python(self, value: Any) -> Any:
        if self.disabled:
            return value
        if value in self.empty_values:
            return None
        if isinstance(value, list | dict | int | float | forms.fields.JSONString):
            return value
        converted = self._parse(str(value))
        problem = json_value_problem(converted)
        if problem:
            raise ValidationError(
                self.error_messages["unstorable"], code="unstorable", params={"problem": problem}
            )
        if isinstance(converted, str):
            return forms.fields.JSONString(converted)
        return converted

    def bound_data(self, data: Any, initial: Any) -> Any:
        if self.disabled:
            return initial
        if data is None:
            return None
        try:
            value = self._parse(str(data))
        except ValidationError:
            return InvalidJSONInput(data)
        # Shown again as typed, not as parsed: a lone surrogate cannot be encoded.
        return InvalidJSONInput(data) if json_value_problem(value) else value


class EnvironmentField(SafeJSONField):
    """A job's environment: a JSON object, or ``KEY=value`` lines as templates take them.

    A line that is not ``KEY=value`` is refused naming its number and text
    (``container_manager.environment.parse_env_text``).
    """

    def _parse(self, text: str) -> Any:
        if text.lstrip().startswith(("{", "[", '"')) or not text.strip():
            return super()._parse(text)
        return parse_env_text(text)

    def bound_data(self, data: Any, initial: Any) -> Any:
        if self.disabled:
            return initial
        if data is None:
            return None
        # Shown again as typed: KEY=value lines stay lines.
        return InvalidJSONInput(data)


class SafeModelForm(forms.ModelForm):
    """A model form whose model errors on fields it does not show go to the whole form.

    Django raises ``ValueError`` ("has no field named") when ``Model.clean()``
    names a field that is not on the form, such as a job's ``status``.
    """

    def add_error(self, field: str | None, error: Any) -> None:
        if field is None and hasattr(error, "error_dict"):
            for name, errors in list(error.error_dict.items()):
                if name != NON_FIELD_ERRORS and name not in self.fields:
                    del error.error_dict[name]
                    extra = [f"{name}: {message}" for e in errors for message in e.messages]
                    error.error_dict.setdefault(NON_FIELD_ERRORS, []).extend(
                        ValidationError(message) for message in extra
                    )
        super().add_error(field, error)


def filter_lookups(model: type[models.Model], list_filter: Any) -> set[str]:
    """Return the query-string keys the filters of ``list_filter`` use.

    A field name gives ``<name>__exact`` and ``<name>__isnull`` (and, for a
    foreign key, ``<name>__<target>__exact``); a ``SimpleListFilter`` class its
    ``parameter_name``.
    """
    lookups: set[str] = set()
    for item in list_filter:
        if isinstance(item, type):
            name = getattr(item, "parameter_name", None)
            if name:
                lookups.add(str(name))
            continue
        path = item[0] if isinstance(item, tuple | list) else item
        if not isinstance(path, str):
            continue
        lookups.update({f"{path}__exact", f"{path}__isnull", path})
        field = model._meta.get_field(path.split(LOOKUP_SEP)[0])
        if field.is_relation and getattr(field, "target_field", None) is not None:
            target = field.target_field.name  # type: ignore[union-attr]
            lookups.add(f"{path}__{target}__exact")
            lookups.add(f"{path}__{target}")
    return lookups


class SafeInputAdminMixin(_AdminBase):
    """Mixed into every ModelAdmin of the app, before ``admin.ModelAdmin``.

    Subclasses may name further allowed query-string lookups in
    ``extra_lookups`` (the job list allows ``worker_id``).
    """

    extra_lookups: tuple[str, ...] = ()
    form = SafeModelForm
    formfield_overrides = {models.JSONField: {"form_class": SafeJSONField}}

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        """Allow only the lookups of the list's filters (and ``extra_lookups``).

        Django's default allows any lookup on a local field, such as
        ``?name__regex=(``, which PostgreSQL refuses with an error.
        """
        allowed = filter_lookups(self.model, self.list_filter) | set(self.extra_lookups)
        return lookup in allowed

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Any:
        """The object of ``object_id``, or None when it is no id (read with :func:`parse_id`)."""
        if from_field is None and parse_id(object_id) is None:
            return None
        return super().get_object(request, object_id, from_field)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The list; 400 when the query string holds what no query can use."""
        problem = query_problem(request)
        if problem:
            return HttpResponseBadRequest(problem, content_type="text/plain; charset=utf-8")
        return super().changelist_view(request, extra_context)

    def response_action(
        self, request: HttpRequest, queryset: Any, *args: Any, **kwargs: Any
    ) -> HttpResponse | None:
        """Run the chosen action, unless a selected id is not an id: then refuse, change nothing."""
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        bad = [value for value in selected if parse_id(value) is None]
        if bad:
            shown = ", ".join(repr(value[:20]) for value in bad[:5])
            self.message_user(
                request,
                f"Nothing was done: {len(bad)} selected value(s) are not ids ({shown}).",
                messages.ERROR,
            )
            return HttpResponseRedirect(request.get_full_path())
        return super().response_action(request, queryset, *args, **kwargs)


__all__ = [
    "ID_PATTERN",
    "MAX_JSON_DEPTH",
    "SafeInputAdminMixin",
    "SafeJSONField",
    "SafeModelForm",
    "filter_lookups",
    "json_nesting",
    "parse_id",
    "query_problem",
    "text_problem",
]
