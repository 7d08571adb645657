"""Generated input through every admin URL of the app: never a 500, refusals change nothing.

As a superuser, through Django's test client (which raises any uncaught
exception of a view), on whichever database the run uses. The text sent
includes NUL characters, lone surrogates (sent as the bytes ``ED A0 80``,
which the server decodes with replacement, and as ``\\ud800`` escapes in
JSON), non-ASCII digits (``²``, ``①``, Arabic-Indic ones), very long strings and the
metacharacters of regular expressions and ``LIKE``. The surfaces:

- the list of each model, with ``q``, ``o``, ``p`` and every filter's parameter;
- the detail, history and delete pages of each model, the log page, its JSON
  and the per-job buttons, with generated ids;
- every action of each list, with generated ``_selected_action`` ids: when one
  is not an id, nothing changes;
- the add form of each model and the change form of a job and a host, with
  generated values for every field: a refused form changes nothing, an
  accepted add writes exactly one row;
- the statistics page and its pause/resume control, with generated queue
  names: a name no queue can have creates no queue.

Each example runs in a savepoint that is rolled back, so every example starts
from the same rows. The number of examples per test is 12 by default (a few
hundred in all, well under a minute); set ``CM_PROPERTY_EXAMPLES`` for more,
e.g. ``CM_PROPERTY_EXAMPLES=500``. The inputs tried per surface are printed
at the end of the run (see tests/property/conftest.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from django import forms
from django.contrib import admin as django_admin
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Model
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from container_manager.admin.inputs import parse_id
from container_manager.admin.views import JOB_OPERATIONS
from container_manager.models import (
    ContainerJob,
    EnvironmentVariableTemplate,
    ExecutorHost,
    JobQueue,
    Worker,
)
from container_manager.states import JobStatus
from tests.property.tally import record
from tests.unit.test_admin_bad_input import force_status

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("CM_PROPERTY_EXAMPLES", "12"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

MODELS: dict[str, type[Model]] = {
    "containerjob": ContainerJob,
    "executorhost": ExecutorHost,
    "jobqueue": JobQueue,
    "worker": Worker,
    "environmentvariabletemplate": EnvironmentVariableTemplate,
}
ADDABLE = [name for name in MODELS if name != "worker"]

# Text ----------------------------------------------------------------------------

SPECIAL = [
    "",
    " ",
    "0",
    "1",
    "-1",
    "²",
    "①",
    "\u0661\u0662\u0663",  # Arabic-Indic digits
    "#²",
    "9" * 18,
    "9" * 19,
    "9" * 40,
    "1e400",
    "NaN",
    "inf",
    "\x00",
    "a\x00b",
    "\ud800",
    "a\udfffb",
    "(",
    "[",
    "*",
    "+?",
    "\\",
    "%",
    "_",
    "'",
    '"',
    "<script>alert(1)</script>",
    "x" * 101,
    "x" * 5000,
    "queued",
    "bogus",
    "default",
    "True",
    "None",
    "null",
    "{}",
    "[]",
]
any_char = st.characters(codec=None, exclude_categories=())
nasty_text = st.one_of(
    st.sampled_from(SPECIAL),
    st.text(any_char, max_size=30),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
    st.text(st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=20),
    st.text(st.sampled_from("()[]{}*+?.^$|\\%_'\"#-0123456789\x00"), max_size=20),
    st.builds(lambda c, n: c * n, st.sampled_from("x9([\x00²é"), st.integers(90, 3000)),
)
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(any_char, max_size=20),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(any_char, max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _dump(value: Any) -> str:
    import json

    return json.dumps(value)  # ensure_ascii: a lone surrogate is sent as "\ud800"


json_text = st.one_of(
    nasty_text,
    json_value.map(_dump),
    st.dictionaries(
        st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True), st.text(max_size=10)
    ).map(_dump),
    st.integers(1, 200_000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 5000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.sampled_from(['{"A": NaN}', '{"A": Infinity}', '{"A": 1e999}', "1" * 5000, '"\\u0000"']),
)


def enc(text: str) -> str:
    """Percent-encode text as UTF-8; a lone surrogate goes as its three bytes."""
    return quote_from_bytes(text.encode("utf-8", "surrogatepass"), safe="")


def served(text: str) -> str:
    """The text as the server decodes it from :func:`enc` (invalid bytes become U+FFFD)."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def form_body(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{enc(key)}={enc(value)}" for key, value in pairs)


# Rows ----------------------------------------------------------------------------------


class _Rollback(Exception):
    pass


@contextmanager
def rolled_back() -> Iterator[None]:
    """Run the block in a savepoint and undo what it wrote."""
    try:
        with transaction.atomic():
            yield
            raise _Rollback
    except _Rollback:
        pass


def state() -> dict[str, list[dict[str, Any]]]:
    return {name: list(model.objects.order_by("pk").values()) for name, model in MODELS.items()}


def count(model: type[Model]) -> int:
    return int(model.objects.count())


@pytest.fixture
def seed() -> dict[str, list[int]]:
    """One row of each model, jobs in several states, one with a status outside the states."""
    host = ExecutorHost.objects.create(name="alpha", executor_type="process")
    template = EnvironmentVariableTemplate.objects.create(
        name="base", environment_variables_text="A=1"
    )
    jobs = [
        ContainerJob.objects.create(
            status=status, command="echo hi", name=f"job {status}", queue="default"
        )
        for status in (JobStatus.PENDING, JobStatus.QUEUED, JobStatus.FAILED, JobStatus.COMPLETED)
    ]
    jobs.append(
        ContainerJob.objects.create(command="echo hi", host=host, environment_template=template)
    )
    odd = ContainerJob.objects.create(command="echo odd", name="odd")
    force_status(odd, "bogus")
    queue = JobQueue.objects.create(name="reports")
    worker = Worker.objects.create(
        worker_id="w1", hostname="box", pid=1, last_heartbeat_at=timezone.now()
    )
    return {
        "containerjob": [job.pk for job in jobs] + [odd.pk],
        "executorhost": [host.pk],
        "jobqueue": [queue.pk],
        "worker": [worker.pk],
        "environmentvariabletemplate": [template.pk],
    }


@pytest.fixture
def su_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", password=None))
    return client


def model_admin(name: str) -> Any:
    return django_admin.site._registry[MODELS[name]]


def superuser_request() -> Any:
    request = RequestFactory().get("/")
    request.user = User.objects.get(username="root")
    return request


def ids(name: str, seed: dict[str, list[int]]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from([str(pk) for pk in seed[name]]), nasty_text)


def assert_answered(response: Any, surface: str) -> None:
    record(surface, response.status_code)
    assert response.status_code < 500, response.status_code


# Lists ---------------------------------------------------------------------------------------


def list_params(name: str) -> list[str]:
    """The query-string keys the list understands: search, order, page and every filter's."""
    ma = model_admin(name)
    keys = ["q", "o", "p", "e", "_facets", "all"]
    for item in ma.list_filter:
        if isinstance(item, type):
            keys.append(item.parameter_name)
        else:
            keys += [f"{item}__exact", f"{item}__isnull"]
            if MODELS[name]._meta.get_field(item).is_relation:
                keys.append(f"{item}__id__exact")
    keys += list(getattr(ma, "extra_lookups", ()))
    return keys


#: Lookups no filter offers (Django's admin would run them), and odd keys.
FOREIGN_KEYS = ["name__regex", "pk__in", "id__gt", "host__name__regex", "status__iregex"]
list_value = st.one_of(
    nasty_text,
    st.sampled_from(["1", "0", "True", "False", "queued", "default", "high", "w1", "alpha"]),
)


@pytest.mark.parametrize("name", list(MODELS))
@PROPERTY
@given(data=st.data())
def test_lists_answer_any_query_string(su_client, seed, name, data):
    keys = list_params(name)
    pairs = data.draw(st.lists(st.tuples(st.sampled_from(keys), list_value), max_size=4))
    if data.draw(st.integers(0, 4)) == 0:  # now and then a key the list does not offer
        pairs.append((data.draw(st.sampled_from(FOREIGN_KEYS) | nasty_text), data.draw(list_value)))
    url = reverse(f"admin:container_manager_{name}_changelist")
    surface = f"list {name} (GET params)"
    with rolled_back():
        before = state()
        assert_answered(su_client.get(f"{url}?{form_body(pairs)}"), surface)
        assert state() == before


# Object pages ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
@PROPERTY
@given(data=st.data())
def test_object_pages_answer_any_id(su_client, seed, name, data):
    object_id = data.draw(ids(name, seed))
    pages = ["change/", "history/", "delete/", ""]
    if name == "containerjob":
        pages += ["logs/", "logs.json"]
    page = data.draw(st.sampled_from(pages))
    surface = f"object page {name} (id)"
    with rolled_back():
        before = state()
        response = su_client.get(f"/admin/container_manager/{name}/{enc(object_id)}/{page}")
        assert_answered(response, surface)
        assert state() == before


@PROPERTY
@given(data=st.data())
def test_job_buttons_answer_any_id_and_operation(su_client, seed, data):
    object_id = data.draw(ids("containerjob", seed))
    operation = data.draw(st.sampled_from(sorted(JOB_OPERATIONS)) | nasty_text)
    surface = "job button (id, operation)"
    with rolled_back():
        before = state()
        response = su_client.post(
            f"/admin/container_manager/containerjob/{enc(object_id)}/do/{enc(operation)}/"
        )
        assert_answered(response, surface)
        if parse_id(served(object_id)) is None or served(operation) not in JOB_OPERATIONS:
            assert state() == before


# Actions -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
@PROPERTY
@given(data=st.data())
def test_actions_answer_any_selection(su_client, seed, name, data):
    actions = sorted(model_admin(name).get_actions(superuser_request()))
    action = data.draw(st.sampled_from(actions) | nasty_text)
    selected = data.draw(st.lists(ids(name, seed), max_size=4))
    pairs = [("action", action)] + [("_selected_action", value) for value in selected]
    if data.draw(st.booleans()):
        pairs.append(("index", data.draw(st.sampled_from(["0", "1"]) | nasty_text)))
    if data.draw(st.booleans()):
        pairs.append(("select_across", data.draw(st.sampled_from(["0", "1"]) | nasty_text)))
    if data.draw(st.booleans()):
        pairs.append(("post", "yes"))
    url = reverse(f"admin:container_manager_{name}_changelist")
    surface = f"action {name} (_selected_action)"
    with rolled_back():
        before = state()
        response = su_client.post(
            url, form_body(pairs), content_type="application/x-www-form-urlencoded"
        )
        assert_answered(response, surface)
        if any(parse_id(served(value)) is None for value in selected):
            assert state() == before


# Forms --------------------------------------------------------------------------------------------


plain_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=20)
#: Values a person would type, per field name, where the field's type says too little.
PLAUSIBLE: dict[str, st.SearchStrategy[str]] = {
    "name": st.builds(lambda n: f"name {n}", st.integers(0, 10**6)),
    "queue": st.sampled_from(["default", "reports", "q1"]),
    "command": st.sampled_from(["echo hi", "sleep 1"]),
    "image": st.sampled_from(["alpine", "", "python:3.12-slim"]),
    "kind": st.sampled_from(["run", "run", "image_pull"]),
    "image_options": st.sampled_from(["{}", "{}", '{"platform": "linux/amd64"}']),
    "working_directory": st.sampled_from(["/tmp", ""]),
    "retry_strategy": st.sampled_from(["default", "aggressive", "conservative"]),
    "connection_string": st.sampled_from(["", "unix:///var/run/docker.sock", "tcp://h:2375"]),
    "environment": st.dictionaries(
        st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True), plain_text, max_size=3
    ).map(_dump),
    "executor_config": st.just("{}"),
    "environment_variables_text": st.sampled_from(["", "A=1", "A=1\nB=2", "# c\nX=y"]),
}
NASTY_NUMBERS = st.one_of(
    nasty_text, st.integers(-(2**70), 2**70).map(str), st.sampled_from(["1.5", "-0", "1e3"])
)


def plausible_value(field_name: str, field: forms.Field, seed: dict[str, list[int]]) -> Any:
    if field_name in PLAUSIBLE:
        return PLAUSIBLE[field_name]
    if isinstance(field, forms.ModelChoiceField):
        related = field.queryset.model._meta.model_name
        return st.sampled_from([str(pk) for pk in seed.get(str(related), [])] + [""])
    if isinstance(field, forms.BooleanField):
        return st.sampled_from(["on", ""])
    if isinstance(field, forms.ChoiceField):
        return st.sampled_from([str(value) for value, _ in field.choices])
    if isinstance(field, forms.IntegerField | forms.FloatField):
        return st.integers(1, 100).map(str) | st.just("")
    return plain_text


def nasty_value(field: forms.Field) -> Any:
    if isinstance(field, forms.JSONField):
        return json_text
    if isinstance(field, forms.IntegerField | forms.FloatField):
        return NASTY_NUMBERS
    return nasty_text


def field_values(
    data: Any, form_class: type[forms.BaseForm], seed: dict[str, list[int]]
) -> list[tuple[str, str]]:
    """A value for every field of the form: plausible ones, and generated text in up to three."""
    fields = form_class.base_fields
    spoiled = data.draw(st.sets(st.sampled_from(sorted(fields)), max_size=3)) if fields else set()
    pairs: list[tuple[str, str]] = []
    for field_name, field in fields.items():
        if isinstance(field, forms.SplitDateTimeField):
            for part, value in (("0", "2030-01-02"), ("1", "03:04:05")):
                drawn = data.draw(nasty_text) if field_name in spoiled else value
                pairs.append((f"{field_name}_{part}", drawn))
            continue
        strategy = (
            nasty_value(field)
            if field_name in spoiled
            else plausible_value(field_name, field, seed)
        )
        pairs.append((field_name, data.draw(strategy)))
    return pairs


@pytest.mark.parametrize("name", ADDABLE)
@PROPERTY
@given(data=st.data())
def test_add_forms_answer_any_values(su_client, seed, name, data):
    form_class = model_admin(name).get_form(superuser_request(), None, change=False)
    pairs = field_values(data, form_class, seed)
    url = reverse(f"admin:container_manager_{name}_add")
    surface = f"add form {name} (field values)"
    with rolled_back():
        before = state()
        response = su_client.post(
            url, form_body(pairs), content_type="application/x-www-form-urlencoded"
        )
        assert_answered(response, surface)
        if response.status_code == 302:
            assert count(MODELS[name]) == len(before[name]) + 1
        else:
            assert state() == before
            response.content.decode("utf-8")


@pytest.mark.parametrize("name", ["containerjob", "executorhost", "jobqueue"])
@PROPERTY
@given(data=st.data())
def test_change_forms_answer_any_values(su_client, seed, name, data):
    pk = data.draw(st.sampled_from(seed[name]))
    obj = MODELS[name].objects.get(pk=pk)
    form_class = model_admin(name).get_form(superuser_request(), obj, change=True)
    pairs = field_values(data, form_class, seed)
    url = reverse(f"admin:container_manager_{name}_change", args=[pk])
    surface = f"change form {name} (field values)"
    with rolled_back():
        before = state()
        response = su_client.post(
            url, form_body(pairs), content_type="application/x-www-form-urlencoded"
        )
        assert_answered(response, surface)
        if response.status_code != 302:
            assert state() == before
            response.content.decode("utf-8")


# Statistics ---------------------------------------------------------------------------------------


@PROPERTY
@given(queue=nasty_text)
def test_stats_page_answers_any_queue(su_client, seed, queue):
    surface = "stats page (?queue)"
    url = reverse("admin:container_manager_containerjob_queue_stats")
    with rolled_back():
        before = state()
        assert_answered(su_client.get(f"{url}?queue={enc(queue)}"), surface)
        assert state() == before


@PROPERTY
@given(queue=nasty_text, action=st.sampled_from(["pause", "resume"]) | nasty_text)
def test_queue_control_answers_any_queue(su_client, seed, queue, action):
    surface = "queue pause/resume (queue, action)"
    url = reverse("admin:container_manager_containerjob_queue_control")
    with rolled_back():
        before = state()
        response = su_client.post(
            url,
            form_body([("queue", queue), ("action", action)]),
            content_type="application/x-www-form-urlencoded",
        )
        assert_answered(response, surface)
        name = served(queue).strip()
        if (
            not name
            or "\x00" in name
            or len(name) > 100
            or served(action) not in ("pause", "resume")
        ):
            assert state()["jobqueue"] == before["jobqueue"]
