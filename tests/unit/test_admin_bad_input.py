"""Bad input to the admin answers 400, 404 or a form error, never 500: one test per reproducer.

Tests marked ``postgres`` need PostgreSQL, whose text columns refuse NUL
characters and whose regular expressions refuse ``(``.
"""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.urls import reverse

from container_manager.admin import inputs
from container_manager.models import ContainerJob, ExecutorHost, JobQueue
from container_manager.queue import queue_manager
from container_manager.states import JobStatus
from tests.unit.test_admin_jobs import CHANGELIST, make_job, superuser_client

pytestmark = pytest.mark.django_db

BASE = "/admin/container_manager/containerjob/"
STATS = "admin:container_manager_containerjob_queue_stats"
CONTROL = "admin:container_manager_containerjob_queue_control"
ADD = "admin:container_manager_containerjob_add"


@pytest.fixture
def admin_client_cm():
    return superuser_client()


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def force_status(job: ContainerJob, status: str) -> None:
    """Store a status outside the state machine, as rows written before the CHECK may hold.

    The model and the ``cm_job_status_known`` constraint refuse it, so the
    constraint is dropped inside the test's transaction (PostgreSQL, rolled
    back with it) or ignored for the connection (SQLite).
    """
    table = connection.ops.quote_name(ContainerJob._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Deferred foreign-key checks of earlier inserts must run before ALTER TABLE.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS cm_job_status_known")
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        elif connection.vendor == "sqlite":
            cursor.execute("PRAGMA ignore_check_constraints = ON")
        try:
            cursor.execute(f"UPDATE {table} SET status = %s WHERE id = %s", [status, job.pk])
        finally:
            if connection.vendor == "sqlite":
                cursor.execute("PRAGMA ignore_check_constraints = OFF")


def snapshot() -> list[tuple]:
    return list(ContainerJob.objects.order_by("pk").values_list("pk", "status", "priority"))


# Ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1", "007", "9" * 18])
def test_parse_id_reads_ascii_digits(value):
    assert inputs.parse_id(value) == int(value)


@pytest.mark.parametrize(
    "value", ["²", "①", "\u0661", "", " 1", "1 ", "-1", "+1", "1.0", "9" * 19, "\x00"]
)
def test_parse_id_refuses_what_is_no_id(value):
    assert inputs.parse_id(value) is None


@pytest.mark.parametrize("term", ["²", "①", "#²", "9" * 30])
def test_search_by_a_non_ascii_digit_is_a_text_search(admin_client_cm, term):
    make_job(name="a job")
    response = admin_client_cm.get(reverse(CHANGELIST), {"q": term})
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == []


@pytest.mark.parametrize("object_id", ["%C2%B2", "%E2%91%A0", "99999999999999999999", "%00", "-1"])
@pytest.mark.parametrize("page", ["logs/", "logs.json"])
def test_logs_of_a_non_id_is_404(admin_client_cm, object_id, page):
    make_job()
    assert admin_client_cm.get(f"{BASE}{object_id}/{page}").status_code == 404


@pytest.mark.parametrize("object_id", ["%C2%B2", "99999999999999999999", "%00"])
def test_buttons_and_detail_of_a_non_id_are_404_or_not_found(admin_client_cm, object_id):
    job = make_job()
    before = snapshot()
    assert admin_client_cm.post(f"{BASE}{object_id}/do/cancel/").status_code == 404
    # Django's "does not exist" answer: back to the admin index with a message.
    assert admin_client_cm.get(f"{BASE}{object_id}/change/").status_code == 302
    assert snapshot() == before
    assert admin_client_cm.get(f"{BASE}{job.pk}/change/").status_code == 200


# Unknown status ------------------------------------------------------------------


@pytest.fixture
def bogus_job() -> ContainerJob:
    job = make_job(name="odd")
    force_status(job, "<b>bogus</b>")
    return job


def test_job_list_shows_an_unknown_status_as_itself_escaped(admin_client_cm, bogus_job):
    response = admin_client_cm.get(reverse(CHANGELIST))
    assert response.status_code == 200
    body = response.content.decode()
    assert "&lt;b&gt;bogus&lt;/b&gt;" in body
    assert "<b>bogus</b>" not in body
    assert "cm-status-unknown" in body


def test_log_page_and_json_show_an_unknown_status(admin_client_cm, bogus_job):
    page = admin_client_cm.get(f"{BASE}{bogus_job.pk}/logs/")
    assert page.status_code == 200
    assert "&lt;b&gt;bogus&lt;/b&gt;" in page.content.decode()
    data = admin_client_cm.get(f"{BASE}{bogus_job.pk}/logs.json").json()
    assert data["status"] == data["status_label"] == "<b>bogus</b>"
    assert data["is_active"] is False
    assert "not one of the job states" in data["message"]


def test_detail_page_of_an_unknown_status_renders_and_saving_does_not_500(
    admin_client_cm, bogus_job
):
    url = f"{BASE}{bogus_job.pk}/change/"
    page = admin_client_cm.get(url)
    assert page.status_code == 200
    assert "cancel" not in [b["name"] for b in page.context["job_buttons"]]
    response = admin_client_cm.post(
        url,
        {
            "name": "renamed",
            "queue": "default",
            "command": "echo hi",
            "kind": "run",
            "image": "alpine",
            "environment": "{}",
            "timeout_seconds": "60",
            "priority": "50",
            "retry_strategy": "default",
        },
    )
    assert response.status_code in (200, 302)
    assert ContainerJob.objects.values_list("status", flat=True).get(pk=bogus_job.pk) == (
        "<b>bogus</b>"
    )


# Actions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "selected",
    [["abc"], [""], ["²"], ["99999999999999999999"], ["1", "x"], ["1e3"], ["\x00"]],
)
@pytest.mark.parametrize(
    ("url", "action"),
    [
        (CHANGELIST, "cancel_selected_jobs"),
        (CHANGELIST, "delete_selected"),
        ("admin:container_manager_executorhost_changelist", "pause_hosts"),
        ("admin:container_manager_jobqueue_changelist", "pause_queues"),
    ],
)
def test_action_with_ids_that_are_no_ids_changes_nothing(admin_client_cm, url, action, selected):
    job = make_job(status=JobStatus.QUEUED)
    ExecutorHost.objects.create(name="h", executor_type="process")
    JobQueue.objects.create(name="q")
    selected = [str(job.pk) if value == "1" else value for value in selected]
    before = (snapshot(), list(ExecutorHost.objects.values_list("pk", "is_paused")))
    response = admin_client_cm.post(
        reverse(url), {"action": action, "_selected_action": selected, "post": "yes"}, follow=True
    )
    assert response.status_code == 200
    assert any("not ids" in m for m in messages_of(response))
    assert (snapshot(), list(ExecutorHost.objects.values_list("pk", "is_paused"))) == before
    assert not JobQueue.objects.filter(is_paused=True).exists()


def test_action_with_a_huge_but_valid_looking_id_finds_nothing(admin_client_cm):
    job = make_job(status=JobStatus.QUEUED)
    before = snapshot()
    response = admin_client_cm.post(
        reverse(CHANGELIST),
        {"action": "cancel_selected_jobs", "_selected_action": ["9" * 18]},
        follow=True,
    )
    assert response.status_code == 200
    assert snapshot() == before
    assert ContainerJob.objects.get(pk=job.pk).status == JobStatus.QUEUED


# Query string -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["name__regex=(", "command__icontains=x", "id__gt=1", "host__name__regex=(", "priority=1"],
)
def test_lookups_outside_the_list_filters_are_400(admin_client_cm, query):
    make_job()
    assert admin_client_cm.get(f"{reverse(CHANGELIST)}?{query}").status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        "status__exact=queued",
        "host__id__exact=1",
        "host__isnull=True",
        "queue=default",
        "priority_band=high",
        "queue_status=queued",
        "worker_id=w1",
        "status__exact=nope",
    ],
)
def test_lookups_of_the_list_filters_still_work(admin_client_cm, query):
    make_job()
    assert admin_client_cm.get(f"{reverse(CHANGELIST)}?{query}").status_code in (200, 302)


@pytest.mark.parametrize(
    "query", ["queue=%00", "status__exact=%00", "worker_id=%00", "q=a%00b", "%00=1"]
)
@pytest.mark.parametrize(
    "url",
    [
        CHANGELIST,
        "admin:container_manager_executorhost_changelist",
        "admin:container_manager_jobqueue_changelist",
        "admin:container_manager_worker_changelist",
        "admin:container_manager_environmentvariabletemplate_changelist",
    ],
)
def test_nul_in_the_query_string_of_a_list_is_400(admin_client_cm, url, query):
    assert admin_client_cm.get(f"{reverse(url)}?{query}").status_code == 400


@pytest.mark.postgres
@pytest.mark.parametrize(
    "query",
    ["queue=%00", "status__exact=%00", "worker_id=%00", "name__regex=(", "q=%00"],
)
def test_postgres_refusals_of_the_job_list_are_400(admin_client_cm, query):
    make_job()
    assert admin_client_cm.get(f"{reverse(CHANGELIST)}?{query}").status_code == 400
    # The connection is still usable: nothing aborted the transaction.
    assert admin_client_cm.get(reverse(CHANGELIST)).status_code == 200


@pytest.mark.postgres
def test_postgres_long_queue_name_in_the_list_filter_is_an_empty_list(admin_client_cm):
    make_job()
    response = admin_client_cm.get(reverse(CHANGELIST), {"queue": "q" * 101})
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == []


# Statistics and queue control ----------------------------------------------------------


@pytest.mark.parametrize("name", ["\x00", "a\x00", "q" * 101])
def test_stats_page_of_a_name_no_queue_can_have_shows_all_queues_and_says_why(
    admin_client_cm, name
):
    make_job()
    response = admin_client_cm.get(reverse(STATS), {"queue": name})
    assert response.status_code == 200
    assert response.context["selected_queue"] is None
    assert any("queue name" in m for m in messages_of(response))


@pytest.mark.parametrize("action", ["pause", "resume"])
@pytest.mark.parametrize("name", ["\x00", "a\x00", "q" * 101])
def test_pausing_a_name_no_queue_can_have_is_refused_with_a_message(admin_client_cm, action, name):
    response = admin_client_cm.post(
        reverse(CONTROL), {"queue": name, "action": action}, follow=True
    )
    assert response.status_code == 200
    assert any("queue name" in m for m in messages_of(response))
    assert not JobQueue.objects.exists()


def test_a_value_error_of_the_queue_manager_is_a_message(admin_client_cm, monkeypatch):
    def refuse(name):
        raise ValueError("no such thing")

    monkeypatch.setattr(queue_manager, "pause_queue", refuse)
    response = admin_client_cm.post(
        reverse(CONTROL), {"queue": "fine", "action": "pause"}, follow=True
    )
    assert response.status_code == 200
    assert any("Could not pause queue fine: no such thing" in m for m in messages_of(response))


@pytest.mark.postgres
@pytest.mark.parametrize("name", ["\x00", "q" * 101])
def test_postgres_stats_and_control_refuse_bad_queue_names(admin_client_cm, name):
    assert admin_client_cm.get(reverse(STATS), {"queue": name}).status_code == 200
    response = admin_client_cm.post(reverse(CONTROL), {"queue": name, "action": "pause"})
    assert response.status_code == 302
    assert not JobQueue.objects.exists()
    assert admin_client_cm.get(reverse(STATS)).status_code == 200


# JSON fields of the forms ------------------------------------------------------------------


def job_form(**fields: str) -> dict[str, str]:
    data = {
        "name": "x",
        "queue": "default",
        "command": "echo hi",
        "kind": "run",
        "image": "alpine",
        "image_options": "{}",
        "environment": "{}",
        "timeout_seconds": "60",
        "priority": "50",
        "max_retries": "",
        "retry_strategy": "default",
    }
    data.update(fields)
    return data


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 5000 + "1" + "}" * 5000,
        "[" * 33 + "]" * 33,
        '{"A": "\\ud800"}',
        '{"\\udfff": "x"}',
        '{"A": "a\\u0000b"}',
        '{"A": NaN}',
        '{"A": 1e400}',
        '{"A": ' + "1" * 5000 + "}",
        "[",
    ],
)
def test_json_that_cannot_be_stored_is_a_field_error(admin_client_cm, text):
    response = admin_client_cm.post(reverse(ADD), job_form(environment=text))
    assert response.status_code == 200
    assert "environment" in response.context["adminform"].form.errors
    response.content.decode("utf-8")  # the page is valid UTF-8
    assert not ContainerJob.objects.exists()


@pytest.mark.parametrize("text", ["[" * 40 + "]" * 40, '{"a": "\\ud800"}'])
def test_host_config_json_that_cannot_be_stored_is_a_field_error(admin_client_cm, text):
    response = admin_client_cm.post(
        reverse("admin:container_manager_executorhost_add"),
        {
            "name": "h",
            "executor_type": "process",
            "connection_string": "",
            "executor_config": text,
            "max_concurrent_jobs": "1",
            "weight": "100",
        },
    )
    assert response.status_code == 200
    assert "executor_config" in response.context["adminform"].form.errors
    assert not ExecutorHost.objects.exists()


def test_valid_json_is_still_accepted(admin_client_cm):
    response = admin_client_cm.post(
        reverse(ADD), job_form(environment=json.dumps({"A": "ü", "B": "1"}))
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert ContainerJob.objects.get().environment == {"A": "ü", "B": "1"}


def test_json_nesting_skips_brackets_inside_strings():
    assert inputs.json_nesting('{"a": "[[[[\\"{{"}') == 1
    assert inputs.json_nesting("[[[]]]") == 3


def test_the_environment_takes_key_value_lines_too(admin_client_cm):
    response = admin_client_cm.post(reverse(ADD), job_form(environment="DEBUG=true\nWORKERS=4\n"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert ContainerJob.objects.get().environment == {"DEBUG": "true", "WORKERS": "4"}


def test_a_wrong_environment_line_is_named_and_kept_as_typed(admin_client_cm):
    typed = "DEBUG=true\nnot a variable\n"
    response = admin_client_cm.post(reverse(ADD), job_form(environment=typed))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["environment"]
    assert errors == ["Line 2 ('not a variable') is not KEY=VALUE."]
    assert "DEBUG=true\nnot a variable" in response.content.decode()
    assert not ContainerJob.objects.exists()
