"""The job admin: list columns, filters, search, paging, and the detail page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from container_manager.admin.pagination import EXACT_COUNT_LIMIT, EstimatedCountPaginator
from container_manager.models import ContainerJob, ExecutorHost
from container_manager.states import JobStatus

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:container_manager_containerjob_changelist"


def make_user(*perms: str, username: str = "operator") -> User:
    """A staff user holding exactly ``perms`` (codenames of container_manager)."""
    user = User.objects.create_user(username, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="container_manager", codename__in=perms)
    )
    return User.objects.get(pk=user.pk)  # fresh: no stale permission cache


def client_for(*perms: str, username: str = "operator") -> Client:
    client = Client()
    client.force_login(make_user(*perms, username=username))
    return client


def superuser_client() -> Client:
    """A client logged in as a superuser."""
    client = Client()
    client.force_login(User.objects.create_superuser("root", password=None))
    return client


@pytest.fixture
def admin_client_cm() -> Client:
    return superuser_client()


def make_job(status: str = JobStatus.PENDING, **fields) -> ContainerJob:
    fields.setdefault("command", "echo hello")
    return ContainerJob.objects.create(status=status, **fields)


def listed_ids(response) -> list[int]:
    return [job.pk for job in response.context["cl"].result_list]


# List ----------------------------------------------------------------------


def test_job_list_shows_every_column_of_seed_000(admin_client_cm):
    host = ExecutorHost.objects.create(name="alpha", executor_type="process")
    now = timezone.now()
    make_job(
        JobStatus.FAILED,
        name="nightly report",
        host=host,
        queue="reports",
        priority=90,
        queued_at=now - timedelta(minutes=5),
        started_at=now - timedelta(minutes=4),
        launched_at=now - timedelta(minutes=4),
        completed_at=now - timedelta(minutes=1),
        retry_count=2,
        error_code="DOCKER_PULL_FAILED",
        last_error="pull access denied for nope",
        progress=40,
        current_step="Loading",
    )
    response = admin_client_cm.get(reverse(CHANGELIST))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="cm-badge cm-status-failed"' in html
    assert 'class="cm-badge cm-qs-launched"' in html
    assert "cm-priority-high" in html
    assert "▲ 90" in html
    assert "reports" in html
    assert "alpha" in html
    assert "3 min 00 s" in html  # duration
    assert "2 / 3" in html  # retries of the default strategy
    assert "DOCKER_PULL_FAILED" in html
    assert "pull access denied" in html
    assert 'style="width: 40%"' in html
    assert "40% Loading" in html
    assert "Queue statistics" in html


def test_job_list_costs_the_same_queries_for_5_and_50_jobs(
    admin_client_cm, django_assert_max_num_queries
):
    host = ExecutorHost.objects.create(name="alpha", executor_type="process")
    for i in range(5):
        make_job(host=host, name=f"job {i}")
    admin_client_cm.get(reverse(CHANGELIST))  # warm the session and content types
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        admin_client_cm.get(reverse(CHANGELIST))
    for i in range(45):
        make_job(host=host, name=f"more {i}")
    with CaptureQueriesContext(connection) as many:
        response = admin_client_cm.get(reverse(CHANGELIST))
    assert len(listed_ids(response)) == 50
    assert len(many) == len(few)
    stdout_selected = [q["sql"] for q in many if '"stdout"' in q["sql"]]
    assert stdout_selected == []  # the list defers the output columns


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("not_queued", {"pending"}),
        ("queued", {"queued"}),
        ("scheduled", {"scheduled"}),
        ("launched", {"running"}),
        ("launch_failed", {"launch_failed"}),
    ],
)
def test_queue_status_filter_has_the_five_values_of_seed_000(admin_client_cm, value, expected):
    now = timezone.now()
    make_job(name="pending")
    make_job(JobStatus.QUEUED, name="queued", queued_at=now)
    make_job(
        JobStatus.QUEUED, name="scheduled", queued_at=now, scheduled_for=now + timedelta(hours=1)
    )
    make_job(JobStatus.RUNNING, name="running", queued_at=now, launched_at=now, started_at=now)
    make_job(JobStatus.FAILED, name="launch_failed", queued_at=now)
    response = admin_client_cm.get(reverse(CHANGELIST), {"queue_status": value})
    assert {job.name for job in response.context["cl"].result_list} == expected
    html = response.content.decode()
    for label in (
        "Not Queued",
        "Queued (Ready)",
        "Scheduled (Future)",
        "Launched",
        "Launch Failed",
    ):
        assert label in html


def test_filters_by_status_queue_host_and_priority_band(admin_client_cm):
    alpha = ExecutorHost.objects.create(name="alpha", executor_type="process")
    beta = ExecutorHost.objects.create(name="beta", executor_type="process")
    a = make_job(name="a", queue="reports", host=alpha, priority=90)
    b = make_job(JobStatus.CANCELLED, name="b", queue="default", host=beta, priority=50)
    c = make_job(name="c", queue="reports", host=beta, priority=10)
    url = reverse(CHANGELIST)
    assert listed_ids(admin_client_cm.get(url, {"status__exact": "cancelled"})) == [b.pk]
    assert sorted(listed_ids(admin_client_cm.get(url, {"queue": "reports"}))) == [a.pk, c.pk]
    assert sorted(listed_ids(admin_client_cm.get(url, {"host__id__exact": beta.pk}))) == [
        b.pk,
        c.pk,
    ]
    assert listed_ids(admin_client_cm.get(url, {"priority_band": "high"})) == [a.pk]
    assert listed_ids(admin_client_cm.get(url, {"priority_band": "normal"})) == [b.pk]
    assert listed_ids(admin_client_cm.get(url, {"priority_band": "low"})) == [c.pk]
    html = admin_client_cm.get(url).content.decode()
    assert "?queue=reports" in html  # the queue filter offers the queues in use


@pytest.mark.parametrize(
    ("term", "expected"),
    [("weekly", "by name"), ("pg_dump", "by command"), ("alpine:3", "by image")],
)
def test_search_matches_name_command_and_image(admin_client_cm, term, expected):
    make_job(name="weekly export")  # by name
    make_job(name="by command", command="pg_dump mydb")
    make_job(name="by image", image="alpine:3")
    make_job(name="other")
    names = {
        j.name
        for j in admin_client_cm.get(reverse(CHANGELIST), {"q": term}).context["cl"].result_list
    }
    assert names == ({"weekly export"} if expected == "by name" else {expected})


def test_search_by_number_finds_the_job_with_that_id(admin_client_cm):
    jobs = [make_job(name=f"job {i}") for i in range(3)]
    target = jobs[1]
    make_job(name=f"report {target.pk}")  # a number alone is an id, not text
    for term in (str(target.pk), f"#{target.pk}", f" {target.pk} "):
        assert listed_ids(admin_client_cm.get(reverse(CHANGELIST), {"q": term})) == [target.pk]
    assert listed_ids(admin_client_cm.get(reverse(CHANGELIST), {"q": "job 1"})) == [jobs[1].pk]
    assert listed_ids(admin_client_cm.get(reverse(CHANGELIST), {"q": "999999"})) == []
    filtered = {"q": str(target.pk), "status__exact": "failed"}
    assert listed_ids(admin_client_cm.get(reverse(CHANGELIST), filtered)) == []


def test_list_is_ordered_newest_first_and_sortable_by_priority(admin_client_cm):
    low = make_job(name="low", priority=10)
    high = make_job(name="high", priority=90)
    assert listed_ids(admin_client_cm.get(reverse(CHANGELIST)))[:2] == [high.pk, low.pk]
    response = admin_client_cm.get(reverse(CHANGELIST), {"o": "5"})  # priority column
    assert set(listed_ids(response)) == {low.pk, high.pk}


def test_paginator_counts_exactly_below_the_limit_and_caps_the_scan():
    for i in range(3):
        make_job(name=f"job {i}")
    paginator = EstimatedCountPaginator(ContainerJob.objects.order_by("pk"), 2)
    assert paginator.count == 3
    assert paginator.num_pages == 2
    assert EXACT_COUNT_LIMIT >= 1000


def test_list_pages_through_many_jobs(admin_client_cm):
    ContainerJob.objects.bulk_create(
        [ContainerJob(command="true", name=f"bulk {i}", image="busybox") for i in range(120)]
    )
    response = admin_client_cm.get(reverse(CHANGELIST), {"p": "3"})
    assert response.status_code == 200
    assert len(listed_ids(response)) == 20
    assert response.context["cl"].result_count == 120


# Detail --------------------------------------------------------------------


def test_detail_page_escapes_output_that_contains_html(admin_client_cm):
    job = make_job(
        JobStatus.FAILED,
        stdout="<script>alert('out')</script>",
        stderr="<img src=x onerror=alert(1)>",
        last_error="<b>boom</b>",
    )
    response = admin_client_cm.get(
        reverse("admin:container_manager_containerjob_change", args=[job.pk])
    )
    html = response.content.decode()
    assert "&lt;script&gt;alert(&#x27;out&#x27;)&lt;/script&gt;" in html
    assert "<script>alert('out')</script>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<b>boom</b>" not in html


def test_detail_page_shows_error_code_with_description_and_suggestion(admin_client_cm):
    job = make_job(
        JobStatus.FAILED, error_code="DOCKER_IMAGE_NOT_FOUND", last_error="no such image"
    )
    html = admin_client_cm.get(
        reverse("admin:container_manager_containerjob_change", args=[job.pk])
    ).content.decode()
    assert "DOCKER_IMAGE_NOT_FOUND" in html
    assert "Docker image not found locally" in html
    assert "Check the image name and tag" in html


def test_detail_page_offers_the_buttons_the_state_allows(admin_client_cm):
    def buttons(job):
        url = reverse("admin:container_manager_containerjob_change", args=[job.pk])
        return [b["name"] for b in admin_client_cm.get(url).context["job_buttons"]]

    assert buttons(make_job()) == ["queue", "cancel"]
    assert buttons(make_job(JobStatus.QUEUED, queued_at=timezone.now())) == [
        "dequeue",
        "pause",
        "cancel",
    ]
    assert buttons(make_job(JobStatus.PAUSED)) == ["resume", "cancel"]
    assert buttons(make_job(JobStatus.FAILED)) == ["queue"]
    assert buttons(make_job(JobStatus.COMPLETED)) == []


def test_spec_of_a_running_job_is_read_only(admin_client_cm):
    job = make_job(JobStatus.RUNNING, command="sleep 1")
    url = reverse("admin:container_manager_containerjob_change", args=[job.pk])
    response = admin_client_cm.get(url)
    assert "command" not in response.context["adminform"].form.fields
    assert "command" in make_job().__class__._meta.get_field("command").name


def test_saving_the_form_writes_only_changed_fields(admin_client_cm):
    job = make_job(name="before", priority=50)
    url = reverse("admin:container_manager_containerjob_change", args=[job.pk])
    form = admin_client_cm.get(url).context["adminform"].form
    data = {k: ("" if v is None else v) for k, v in form.initial.items() if k in form.fields}
    data.update(name="after", environment="{}", is_shell_command="")
    data.pop("is_shell_command")
    # A worker queues the job while the page is open.
    ContainerJob.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED, queued_at=timezone.now())
    response = admin_client_cm.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    job.refresh_from_db()
    assert (job.name, job.status) == ("after", JobStatus.QUEUED)
