"""What the admin shows of ended jobs, times and stopped workers (the first hour of a new user)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from container_manager.admin.display import short_time
from container_manager.models import ContainerJob, ExecutorHost
from container_manager.models import Worker as WorkerRow
from container_manager.operations import task_info
from container_manager.queue import queue_manager
from container_manager.testing import end_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client():
    client = Client()
    client.force_login(User.objects.create_superuser("polish", password="x"))
    return client


def test_an_ended_job_shows_no_stale_launch_step(admin_client):
    host = ExecutorHost.objects.create(
        name="m", executor_type="mock", executor_config={"run_seconds": None}
    )
    job = ContainerJob.objects.create(command="echo", host=host)
    queue_manager.process_job(job)
    job.refresh_from_db()
    assert job.current_step == "Validating"  # what the launch left
    assert job.live_step == ""  # running: the container reported no step of its own
    assert task_info(job)["current_step"] == ""
    end_job(job, exit_code=0)
    queue_manager.process_job(job)
    job.refresh_from_db()
    assert job.live_step == ""
    page = admin_client.get("/admin/container_manager/containerjob/").content.decode()
    assert "100% Validating" not in page
    assert "100%</span>" in page
    ContainerJob.objects.filter(pk=job.pk).update(current_step="Loading rows")
    job.refresh_from_db()
    assert job.live_step == ""  # completed: nothing left to say
    assert ContainerJob(status="failed", current_step="Loading rows").live_step == "Loading rows"
    assert ContainerJob(status="failed", current_step="Pulling image").live_step == ""


def test_a_running_job_shows_the_step_its_container_reported():
    job = ContainerJob(status="running", current_step="Loading rows")
    assert job.live_step == "Loading rows"
    assert ContainerJob(status="preparing", current_step="Preparing").live_step == "Preparing"


def test_times_show_seconds_and_the_full_date_when_not_today():
    now = timezone.localtime()
    assert short_time(now).endswith(f">{now.strftime('%H:%M:%S')}</time>")
    earlier = now - timedelta(days=3)
    assert short_time(earlier).endswith(f">{earlier.strftime('%Y-%m-%d %H:%M:%S')}</time>")


def test_the_jobs_page_shows_its_times_to_the_second_with_the_date(admin_client):
    from django.urls import reverse

    when = timezone.now().replace(microsecond=0) - timedelta(days=3, seconds=7)
    job = ContainerJob.objects.create(name="dated", command="x")
    ContainerJob.objects.filter(pk=job.pk).update(queued_at=when)
    page = admin_client.get(reverse("admin:container_manager_containerjob_change", args=[job.pk]))
    shown = timezone.localtime(when).strftime("%Y-%m-%d %H:%M:%S")
    assert f'<time datetime="{when.isoformat()}">{shown} ' in page.content.decode()


def test_a_cleanly_stopped_worker_is_not_shown_as_failed(admin_client):
    now = timezone.now()
    WorkerRow.objects.create(
        worker_id="clean",
        hostname="h",
        pid=1,
        status="stopped",
        last_heartbeat_at=now,
        stopped_at=now,
    )
    WorkerRow.objects.create(
        worker_id="lost",
        hostname="h",
        pid=2,
        status="running",
        last_heartbeat_at=now - timedelta(hours=1),
    )
    page = admin_client.get("/admin/container_manager/worker/").content.decode()
    assert 'cm-alive-stopped">Stopped' in page
    assert 'cm-alive-no">Not alive' in page


def test_a_running_jobs_page_points_to_the_live_log_not_to_no_output(admin_client):
    host = ExecutorHost.objects.create(
        name="m2", executor_type="mock", executor_config={"run_seconds": None}
    )
    job = ContainerJob.objects.create(command="echo", host=host)
    queue_manager.process_job(job)
    page = admin_client.get(
        f"/admin/container_manager/containerjob/{job.pk}/change/"
    ).content.decode()
    assert "(stored when the job ends; the live log shows it now)" in page
    assert "(no output)" not in page


def test_the_worker_page_is_read_only_and_a_live_worker_cannot_be_deleted(admin_client):
    now = timezone.now()
    live = WorkerRow.objects.create(
        worker_id="live", hostname="h", pid=1, status="running", last_heartbeat_at=now
    )
    gone = WorkerRow.objects.create(
        worker_id="gone",
        hostname="h",
        pid=2,
        status="stopped",
        last_heartbeat_at=now,
        stopped_at=now,
    )
    page = admin_client.get(f"/admin/container_manager/worker/{live.pk}/change/").content.decode()
    assert 'name="_save"' not in page
    assert "deletelink" not in page
    assert (
        admin_client.post(
            f"/admin/container_manager/worker/{live.pk}/delete/", {"post": "yes"}
        ).status_code
        == 403
    )
    assert (
        "deletelink"
        in admin_client.get(f"/admin/container_manager/worker/{gone.pk}/change/").content.decode()
    )
    both = {"action": "delete_selected", "_selected_action": [live.pk, gone.pk], "post": "yes"}
    assert admin_client.post("/admin/container_manager/worker/", both).status_code == 403
    assert WorkerRow.objects.count() == 2
    only_gone = {"action": "delete_selected", "_selected_action": [gone.pk], "post": "yes"}
    admin_client.post("/admin/container_manager/worker/", only_gone)
    assert list(WorkerRow.objects.values_list("worker_id", flat=True)) == ["live"]


def test_run_again_makes_a_new_queued_job_with_the_same_settings(admin_client):
    host = ExecutorHost.objects.create(name="m3", executor_type="mock")
    old = ContainerJob.objects.create(
        name="nightly",
        command="echo hi",
        host=host,
        queue="reports",
        priority=80,
        environment={"A": "1"},
        memory_limit_mb=64,
    )
    ContainerJob.objects.filter(pk=old.pk).update(status="queued")
    ContainerJob.objects.filter(pk=old.pk).update(status="cancelled")
    response = admin_client.post(
        "/admin/container_manager/containerjob/",
        {"action": "run_jobs_again", "_selected_action": [old.pk]},
        follow=True,
    )
    new = ContainerJob.objects.exclude(pk=old.pk).get()
    assert (
        new.status,
        new.name,
        new.queue,
        new.priority,
        new.environment,
        new.memory_limit_mb,
    ) == (
        "queued",
        "nightly",
        "reports",
        80,
        {"A": "1"},
        64,
    )
    assert new.host == host
    assert ContainerJob.objects.get(pk=old.pk).status == "cancelled"
    assert f"New jobs: #{new.pk}" in response.content.decode()


def test_check_now_records_the_hosts_health(admin_client):
    good = ExecutorHost.objects.create(name="answers", executor_type="mock")
    bad = ExecutorHost.objects.create(
        name="silent",
        executor_type="docker",
        connection_string="unix:///nonexistent/docker.sock",
        executor_config={"api_timeout_seconds": 1},
    )
    response = admin_client.post(
        "/admin/container_manager/executorhost/",
        {"action": "check_hosts_now", "_selected_action": [good.pk, bad.pk]},
        follow=True,
    )
    page = response.content.decode()
    assert "Host &#x27;answers&#x27; answers." in page
    assert "Host &#x27;silent&#x27; does not answer" in page
    good.refresh_from_db()
    bad.refresh_from_db()
    assert (good.health_status, bad.health_status) == ("healthy", "unhealthy")
    assert bad.last_health_check_at is not None
