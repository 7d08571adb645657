"""Every admin page and action needs its Django permission: 403 without it, never data."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from container_manager.models import ContainerJob, ExecutorHost, JobQueue, Worker
from container_manager.states import JobStatus
from tests.unit.test_admin_jobs import CHANGELIST, client_for, make_job

pytestmark = pytest.mark.django_db

SECRET = "s3cret-output-line"


@pytest.fixture
def job():
    return make_job(JobStatus.FAILED, name="private", stdout=SECRET)


def job_urls(job) -> dict[str, str]:
    return {
        "changelist": reverse(CHANGELIST),
        "change": reverse("admin:container_manager_containerjob_change", args=[job.pk]),
        "stats": reverse("admin:container_manager_containerjob_queue_stats"),
        "logs": reverse("admin:container_manager_containerjob_logs", args=[job.pk]),
        "logs_json": reverse("admin:container_manager_containerjob_logs_json", args=[job.pk]),
    }


def test_stats_page_lives_at_the_url_of_seed_000():
    assert (
        reverse("admin:container_manager_containerjob_queue_stats")
        == "/admin/container_manager/containerjob/queue-stats/"
    )


@pytest.mark.parametrize("page", ["changelist", "change", "stats", "logs", "logs_json"])
def test_staff_without_permission_gets_403_and_no_data(job, page):
    response = client_for().get(job_urls(job)[page])
    assert response.status_code == 403
    assert SECRET not in response.content.decode()


@pytest.mark.parametrize("page", ["changelist", "stats", "logs", "logs_json"])
def test_anonymous_and_non_staff_are_sent_to_the_login_page(job, page):
    from django.contrib.auth.models import User

    anonymous = Client().get(job_urls(job)[page])
    member = Client()
    member.force_login(User.objects.create_user("member"))
    for response in (anonymous, member.get(job_urls(job)[page])):
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]


@pytest.mark.parametrize("page", ["changelist", "change", "stats", "logs", "logs_json"])
def test_view_permission_opens_every_reading_page(job, page):
    response = client_for("view_containerjob").get(job_urls(job)[page])
    assert response.status_code == 200


@pytest.mark.parametrize("operation", ["queue", "dequeue", "cancel", "pause", "resume"])
def test_view_only_user_cannot_press_a_button(job, operation):
    url = reverse("admin:container_manager_containerjob_operation", args=[job.pk, operation])
    response = client_for("view_containerjob").post(url)
    assert response.status_code == 403
    assert ContainerJob.objects.get(pk=job.pk).status == JobStatus.FAILED


def test_view_only_user_is_offered_no_action_and_cannot_run_one(job):
    client = client_for("view_containerjob")
    response = client.get(reverse(CHANGELIST))
    assert response.context["action_form"] is None or not [
        name for name, _ in response.context["action_form"].fields["action"].choices if name
    ]
    response = client.post(
        reverse(CHANGELIST), {"action": "retry_failed_jobs", "_selected_action": [job.pk]}
    )
    assert response.status_code in (200, 302)
    assert ContainerJob.objects.get(pk=job.pk).status == JobStatus.FAILED


def test_view_only_user_sees_no_buttons_on_the_job_page(job):
    response = client_for("view_containerjob").get(job_urls(job)["change"])
    assert response.context["job_buttons"] == []
    assert response.context["can_view_logs"] is True


def test_change_permission_runs_actions_and_buttons(job):
    client = client_for("view_containerjob", "change_containerjob")
    client.post(reverse(CHANGELIST), {"action": "retry_failed_jobs", "_selected_action": [job.pk]})
    assert ContainerJob.objects.get(pk=job.pk).status == JobStatus.QUEUED
    url = reverse("admin:container_manager_containerjob_operation", args=[job.pk, "cancel"])
    assert client.post(url).status_code == 302
    assert ContainerJob.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def test_queue_controls_need_the_queue_change_permission():
    url = reverse("admin:container_manager_containerjob_queue_control")
    viewer = client_for("view_containerjob")
    assert viewer.post(url, {"queue": "default", "action": "pause"}).status_code == 403
    assert not JobQueue.objects.filter(name="default", is_paused=True).exists()
    stats = viewer.get(reverse("admin:container_manager_containerjob_queue_stats"))
    assert stats.context["can_control_queues"] is False
    assert 'value="pause"' not in stats.content.decode()
    operator = client_for("view_containerjob", "change_jobqueue", username="queues")
    assert operator.post(url, {"queue": "default", "action": "pause"}).status_code == 302
    assert JobQueue.objects.get(name="default").is_paused


def test_host_pause_action_needs_the_host_change_permission():
    host = ExecutorHost.objects.create(name="alpha", executor_type="process")
    url = reverse("admin:container_manager_executorhost_changelist")
    data = {"action": "pause_hosts", "_selected_action": [host.pk]}
    viewer = client_for("view_executorhost")
    assert viewer.get(url).status_code == 200
    viewer.post(url, data)
    assert not ExecutorHost.objects.get(pk=host.pk).is_paused
    assert client_for(username="nobody").get(url).status_code == 403
    client_for("view_executorhost", "change_executorhost", username="hosts").post(url, data)
    assert ExecutorHost.objects.get(pk=host.pk).is_paused


def test_workers_page_needs_the_worker_view_permission():
    from django.utils import timezone

    Worker.objects.create(worker_id="w1", hostname="box", pid=1, last_heartbeat_at=timezone.now())
    url = reverse("admin:container_manager_worker_changelist")
    assert client_for().get(url).status_code == 403
    assert client_for("view_worker", username="watcher").get(url).status_code == 200
