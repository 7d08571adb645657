"""Generated field values through the models: rows round-trip, or an error names the field.

For each model a person or a program writes (jobs, hosts, environment
templates), each example builds an instance from generated values for a
random subset of its editable fields (text with NUL, lone surrogates and
very long strings; numbers out of every column's range, NaN and infinities,
booleans, strings; JSON nested deep, with non-string keys, or not JSON at
all) and calls ``full_clean()`` and ``save()``. Each must either succeed or
raise a ``ValidationError`` whose every key is one of the model's fields (or
``__all__``); nothing else may escape. A refused ``save()`` writes no row; an
accepted one stores the text it was given, as given.

Each example runs in a savepoint that is rolled back. ``CM_PROPERTY_EXAMPLES``
sets the examples per test (12 by default).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models, transaction
from hypothesis import given
from hypothesis import strategies as st

from container_manager.conf import settings as cm_settings
from container_manager.models import ContainerJob, EnvironmentVariableTemplate, ExecutorHost
from tests.property.tally import record
from tests.property.test_admin_input import PROPERTY, json_value, nasty_text, rolled_back

pytestmark = pytest.mark.django_db

any_number = st.one_of(
    st.integers(-(2**70), 2**70),
    st.integers(-5, 100_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.sampled_from(["", "12", "x", "1e400", [], {}]),
)
any_bool = st.one_of(st.booleans(), st.none(), st.sampled_from(["yes", "", 0, 1, 2]))
any_json = st.one_of(
    json_value,
    st.none(),
    st.integers(1, 200).map(lambda n: _nested(n)),
    st.dictionaries(st.integers(), st.text(max_size=5), max_size=3),
    st.sampled_from([float("nan"), {"A": float("inf")}, {"A": "\x00"}, {"\ud800": "x"}, b"1"]),
)
any_datetime = st.one_of(
    st.none(),
    # Aware: a naive one is Django's own warning, which this suite turns into an error.
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.just(UTC),
    ),
    st.sampled_from(["yesterday", 0, [], 1.5]),
)


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def strategy_for(field: models.Field) -> st.SearchStrategy[Any]:
    if isinstance(field, models.JSONField):
        return any_json
    if isinstance(field, models.BooleanField):
        return any_bool
    if isinstance(field, models.DateTimeField):
        return any_datetime
    if isinstance(field, (models.IntegerField, models.FloatField)):
        return any_number
    return st.one_of(nasty_text, st.none(), st.integers())


def editable_fields(model: type[models.Model]) -> list[models.Field]:
    return [
        f
        for f in model._meta.concrete_fields
        if f.editable and not f.primary_key and not isinstance(f, models.ForeignKey)
    ]


def values_for(model: type[models.Model]) -> st.SearchStrategy[dict[str, Any]]:
    fields = editable_fields(model)
    return st.fixed_dictionaries({}, optional={field.name: strategy_for(field) for field in fields})


def check_refusal(model: type[models.Model], exc: ValidationError) -> None:
    names = {f.name for f in model._meta.concrete_fields} | {NON_FIELD_ERRORS}
    assert hasattr(exc, "error_dict"), f"{exc!r} names no field"
    assert set(exc.error_dict) <= names, exc.error_dict


#: Valid values each example starts from, so that the generated ones decide the outcome.
BASE: dict[type[models.Model], dict[str, Any]] = {
    ContainerJob: {"name": "job", "command": "echo hi"},
    ExecutorHost: {
        "name": "host",
        "executor_type": "docker",
        "connection_string": "unix:///var/run/docker.sock",
    },
    EnvironmentVariableTemplate: {"name": "template", "environment_variables_text": "A=1"},
}


def try_model(model: type[models.Model], generated: dict[str, Any], surface: str) -> None:
    values = {**BASE[model], **generated}
    with rolled_back():
        before = model.objects.count()
        try:
            instance = model(**values)
        except (TypeError, ValueError) as exc:
            # Django's own constructor refuses some values (a string for a
            # boolean is not one of them); nothing was written.
            pytest.fail(f"{model.__name__}({values!r}) raised {exc!r}")
        try:
            instance.full_clean()
        except ValidationError as exc:
            check_refusal(model, exc)
        try:
            with transaction.atomic():
                instance.save()
        except ValidationError as exc:
            check_refusal(model, exc)
            assert model.objects.count() == before
            record(surface, 400)
            return
        record(surface, 200)
        stored = model.objects.get(pk=instance.pk)
        if values.get("image") == "":
            # Documented: a job that names no image gets DEFAULT_IMAGE.
            values = {**values, "image": str(cm_settings.DEFAULT_IMAGE)}
        for name, value in values.items():
            if isinstance(value, str) and isinstance(
                model._meta.get_field(name), (models.CharField, models.TextField)
            ):
                assert getattr(stored, name) == value, name


@PROPERTY
@given(values=values_for(ContainerJob))
def test_a_job_round_trips_or_a_validation_error_names_the_field(values):
    values.pop("status", None)
    try_model(ContainerJob, values, "model ContainerJob")


@PROPERTY
@given(values=values_for(ExecutorHost))
def test_a_host_round_trips_or_a_validation_error_names_the_field(values):
    try_model(ExecutorHost, values, "model ExecutorHost")


@PROPERTY
@given(values=values_for(EnvironmentVariableTemplate))
def test_a_template_round_trips_or_a_validation_error_names_the_field(values):
    try_model(EnvironmentVariableTemplate, values, "model EnvironmentVariableTemplate")


@PROPERTY
@given(values=values_for(ContainerJob))
def test_create_and_queue_queues_the_job_or_names_the_field(values):
    from container_manager.queue import queue_manager

    values.pop("status", None)
    values = {**BASE[ContainerJob], **values}
    with rolled_back():
        try:
            job = queue_manager.create_and_queue(**values)
        except ValidationError as exc:
            check_refusal(ContainerJob, exc)
            assert not ContainerJob.objects.exists()
            record("queue API create_and_queue", 400)
            return
        record("queue API create_and_queue", 200)
        assert ContainerJob.objects.get(pk=job.pk).status == "queued"
