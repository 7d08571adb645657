"""The log view: stored output escaped, live output of a running job, and a host that is down."""

from __future__ import annotations

import time

import pytest
from django.urls import reverse

from container_manager.executors import close_executors
from container_manager.models import ExecutorHost
from container_manager.states import JobStatus
from tests.unit.test_admin_actions import start_running_job
from tests.unit.test_admin_jobs import make_job, superuser_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_cm():
    return superuser_client()


@pytest.fixture
def process_host():
    host = ExecutorHost.objects.create(name="local", executor_type="process")
    yield host
    close_executors()  # kills any process a test left running


def logs_url(job, kind="logs"):
    return reverse(f"admin:container_manager_containerjob_{kind}", args=[job.pk])


def test_log_page_shows_stored_output_as_text(admin_client_cm):
    job = make_job(JobStatus.COMPLETED, stdout="<script>alert(1)</script>", stderr="warn & err")
    response = admin_client_cm.get(logs_url(job))
    html = response.content.decode()
    assert response.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)</script>" not in html
    assert "warn &amp; err" in html
    assert 'data-active="0"' in html


def test_log_json_of_a_finished_job_returns_stored_output_and_stops_polling(admin_client_cm):
    job = make_job(JobStatus.FAILED, stdout="out", stderr="err", progress=30)
    response = admin_client_cm.get(logs_url(job, "logs_json"))
    data = response.json()
    assert "no-store" in response["Cache-Control"]
    assert (data["stdout"], data["stderr"], data["progress"]) == ("out", "err", 30)
    assert data["is_active"] is False
    assert data["is_live"] is False
    assert data["status_label"] == "Failed"


def test_log_json_follows_the_output_of_a_running_process(admin_client_cm, process_host):
    job, _ = start_running_job(process_host, command="sh -c 'echo line-one; sleep 30'")
    deadline = time.monotonic() + 10
    data = admin_client_cm.get(logs_url(job, "logs_json")).json()
    while "line-one" not in data["stdout"] and time.monotonic() < deadline:
        time.sleep(0.05)
        data = admin_client_cm.get(logs_url(job, "logs_json")).json()
    assert data["is_live"] is True
    assert data["is_active"] is True
    assert data["stdout"] == "line-one\n"
    html = admin_client_cm.get(logs_url(job)).content.decode()
    assert 'data-active="1"' in html
    assert "container_manager/logs.js" in html


def test_log_json_of_a_job_on_an_unreachable_host_shows_stored_output_and_why(admin_client_cm):
    host = ExecutorHost.objects.create(name="far", connection_string="tcp://127.0.0.1:9")
    job = make_job(
        JobStatus.RUNNING, host=host, container_id="abc", attempt=1, stdout="so far", progress=12
    )
    try:
        response = admin_client_cm.get(logs_url(job, "logs_json"))
    finally:
        close_executors()
    data = response.json()
    assert response.status_code == 200
    assert data["is_live"] is False
    assert data["stdout"] == "so far"
    assert data["message"].startswith("Live output is unavailable (host far:")


def test_log_json_of_a_job_not_yet_launched_says_it_waits(admin_client_cm):
    job = make_job(JobStatus.QUEUED)
    data = admin_client_cm.get(logs_url(job, "logs_json")).json()
    assert data["is_active"] is True
    assert data["message"] == "The job has no running container yet; waiting for it."


def test_view_logs_link_opens_a_popup(admin_client_cm):
    job = make_job()
    html = admin_client_cm.get(
        reverse("admin:container_manager_containerjob_change", args=[job.pk])
    ).content.decode()
    assert f'href="{logs_url(job)}"' in html
    assert "data-cm-popup" in html
    assert "container_manager/popup.js" in html
    popup = admin_client_cm.get(logs_url(job), {"_popup": "1"}).content.decode()
    assert 'class="breadcrumbs"' not in popup
