"""The queue statistics page against a known set of jobs."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from container_manager.models import ContainerJob, ExecutorHost, JobQueue
from container_manager.states import JobStatus
from tests.unit.test_admin_jobs import make_job, superuser_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_cm():
    return superuser_client()


STATS = "admin:container_manager_containerjob_queue_stats"


@pytest.fixture
def known_jobs():
    """Ten jobs whose statistics are worked out by hand in the tests below."""
    now = timezone.now()
    for seconds, queue in ((10, "default"), (20, "default"), (30, "reports")):
        make_job(
            JobStatus.COMPLETED,
            queue=queue,
            queued_at=now,
            launched_at=now - timedelta(seconds=seconds),
            started_at=now - timedelta(seconds=seconds),
            completed_at=now,
        )
    make_job(  # failed before it launched, out of retries
        JobStatus.FAILED,
        queued_at=now,
        completed_at=now,
        retry_count=3,
        error_code="DOCKER_PULL_FAILED",
        last_error="pull failed",
    )
    make_job(
        JobStatus.TIMEOUT,
        queued_at=now,
        launched_at=now,
        started_at=now,
        completed_at=now,
        retry_count=1,
        error_code="SYSTEM_TIMEOUT",
    )
    make_job(JobStatus.QUEUED, queued_at=now, priority=90)
    make_job(JobStatus.QUEUED, queued_at=now)
    make_job(JobStatus.QUEUED, queued_at=now, scheduled_for=now + timedelta(hours=2))
    running = make_job(JobStatus.RUNNING, queued_at=now, launched_at=now, started_at=now)
    pending = make_job()
    ContainerJob.objects.filter(pk=pending.pk).update(created_at=now - timedelta(days=2))
    ContainerJob.objects.filter(pk=running.pk).update(created_at=now - timedelta(hours=3))
    ExecutorHost.objects.create(name="alpha", executor_type="process", max_concurrent_jobs=4)


def text_of(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', html, re.S)
    assert match, element_id
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def figure(html: str, key: str) -> str:
    match = re.search(rf'id="cm-figure-{key}">\s*<span class="cm-figure-value">(\d+)<', html)
    assert match, key
    return match.group(1)


def test_stats_page_shows_the_figures_of_seed_000(admin_client_cm, known_jobs):
    html = admin_client_cm.get(reverse(STATS)).content.decode()
    expected = {
        "queue_depth": "3",
        "ready": "2",
        "running": "1",
        "scheduled": "1",
        "completed_today": "3",
        "failed_today": "2",
        "high_priority_waiting": "1",
    }
    assert {key: figure(html, key) for key in expected} == expected


def test_stats_page_shows_the_statistics_of_seed_003(admin_client_cm, known_jobs):
    html = admin_client_cm.get(reverse(STATS)).content.decode()
    assert text_of(html, "cm-success-rate") == "60.0%"
    assert text_of(html, "cm-average-duration") == "20.0 s"
    assert text_of(html, "cm-completed") == "3"
    assert text_of(html, "cm-failed") == "2"
    assert text_of(html, "cm-total-retries") == "4"
    assert text_of(html, "cm-tasks-with-retries") == "2"
    assert text_of(html, "cm-max-retries-reached") == "1"
    assert text_of(html, "cm-last-24h") == "9"
    assert text_of(html, "cm-last-hour") == "8"
    assert text_of(html, "cm-total") == "10"


def test_status_and_error_distributions_are_drawn_as_bars(admin_client_cm, known_jobs):
    response = admin_client_cm.get(reverse(STATS))
    bars = {bar["key"]: (bar["count"], bar["width"]) for bar in response.context["status_bars"]}
    assert bars["queued"] == (3, 100.0)  # the largest count fills the bar
    assert bars["completed"] == (3, 100.0)
    assert bars["running"] == (1, 33.3)
    assert bars["cancelled"] == (0, 0.0)
    errors = {bar["key"]: bar for bar in response.context["error_bars"]}
    assert set(errors) == {"DOCKER_PULL_FAILED", "SYSTEM_TIMEOUT"}
    assert errors["SYSTEM_TIMEOUT"]["description"] == "Task execution timed out"
    html = response.content.decode()
    assert 'class="cm-bar cm-bar-status-running" style="width: 33.3%"' in html
    assert "Raise the job&#x27;s timeout_seconds" in html


def test_stats_page_narrows_to_one_named_queue(admin_client_cm, known_jobs):
    response = admin_client_cm.get(reverse(STATS), {"queue": "reports"})
    html = response.content.decode()
    assert text_of(html, "cm-selected-queue") == "reports"
    assert text_of(html, "cm-total") == "1"
    assert text_of(html, "cm-success-rate") == "100.0%"
    assert figure(html, "queue_depth") == "0"
    assert '<option value="reports" selected>' in html
    assert '<option value="default">' in html


def test_queue_table_pauses_and_resumes_a_queue(admin_client_cm, known_jobs):
    url = reverse("admin:container_manager_containerjob_queue_control")
    response = admin_client_cm.post(url, {"queue": "reports", "action": "pause"}, follow=True)
    assert JobQueue.objects.get(name="reports").is_paused
    assert "Paused queue reports" in response.content.decode()
    assert "reports (paused)" in response.content.decode()
    admin_client_cm.post(url, {"queue": "reports", "action": "resume"})
    assert not JobQueue.objects.get(name="reports").is_paused


def test_queue_control_rejects_a_missing_name_or_action(admin_client_cm):
    url = reverse("admin:container_manager_containerjob_queue_control")
    response = admin_client_cm.post(url, {"queue": "", "action": "pause"}, follow=True)
    assert "Choose a queue" in response.content.decode()
    admin_client_cm.post(url, {"queue": "x", "action": "explode"})
    assert not JobQueue.objects.exists()
    assert admin_client_cm.get(url).status_code == 405


def test_stats_page_of_an_empty_table_shows_dashes_not_errors(admin_client_cm):
    html = admin_client_cm.get(reverse(STATS)).content.decode()
    assert text_of(html, "cm-success-rate") == "-"
    assert text_of(html, "cm-average-duration") == "-"
    assert "No job has an error code." in html


def test_queue_name_with_html_is_escaped(admin_client_cm):
    make_job(queue="<b>q</b>")
    html = admin_client_cm.get(reverse(STATS), {"queue": "<b>q</b>"}).content.decode()
    assert "<b>q</b>" not in html
    assert "&lt;b&gt;q&lt;/b&gt;" in html
