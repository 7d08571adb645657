"""Hosts, queues and workers pages: capacity, health, liveness, pause and resume."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from container_manager.models import ExecutorHost, JobQueue, Worker
from container_manager.states import JobStatus
from tests.unit.test_admin_jobs import make_job, superuser_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_cm():
    return superuser_client()


HOSTS = "admin:container_manager_executorhost_changelist"
QUEUES = "admin:container_manager_jobqueue_changelist"
WORKERS = "admin:container_manager_worker_changelist"


def test_hosts_page_shows_capacity_in_use_and_health(admin_client_cm):
    host = ExecutorHost.objects.create(
        name="alpha",
        executor_type="process",
        max_concurrent_jobs=4,
        health_status="unhealthy",
        health_error="socket refused",
    )
    now = timezone.now()
    make_job(JobStatus.RUNNING, host=host)
    make_job(JobStatus.PREPARING, host=host)
    make_job(JobStatus.PAUSED, host=host, launched_at=now)  # frozen container: still holds a slot
    make_job(JobStatus.PAUSED, host=host)  # paused before launch: holds nothing
    make_job(JobStatus.QUEUED, host=host)
    make_job(JobStatus.COMPLETED, host=host)
    response = admin_client_cm.get(reverse(HOSTS))
    html = response.content.decode()
    assert "3 / 4" in html
    assert "cm-health-unhealthy" in html
    assert "Unhealthy: socket refused" in html
    assert "cm-host-available" in html


def test_hosts_page_counts_capacity_in_one_query_whatever_the_number_of_hosts(admin_client_cm):
    admin_client_cm.get(reverse(HOSTS))
    with CaptureQueriesContext(connection) as one:
        admin_client_cm.get(reverse(HOSTS))
    for i in range(10):
        host = ExecutorHost.objects.create(name=f"h{i}", executor_type="process")
        make_job(JobStatus.RUNNING, host=host)
    with CaptureQueriesContext(connection) as many:
        admin_client_cm.get(reverse(HOSTS))
    assert len(many) == len(one)


def test_pause_and_resume_host_actions(admin_client_cm):
    alpha = ExecutorHost.objects.create(name="alpha", executor_type="process")
    beta = ExecutorHost.objects.create(name="beta", executor_type="process")
    data = {"action": "pause_hosts", "_selected_action": [alpha.pk, beta.pk]}
    response = admin_client_cm.post(reverse(HOSTS), data, follow=True)
    assert set(ExecutorHost.objects.filter(is_paused=True).values_list("name", flat=True)) == {
        "alpha",
        "beta",
    }
    assert "Paused 2 host(s): alpha, beta." in response.content.decode()
    assert "cm-host-paused" in response.content.decode()
    data["action"] = "resume_hosts"
    admin_client_cm.post(reverse(HOSTS), data)
    assert not ExecutorHost.objects.filter(is_paused=True).exists()


def test_queues_page_counts_waiting_and_active_jobs_and_pauses(admin_client_cm):
    queue = JobQueue.objects.create(name="reports", max_concurrent=2)
    make_job(JobStatus.QUEUED, queue="reports")
    make_job(JobStatus.RETRYING, queue="reports")
    make_job(JobStatus.RUNNING, queue="reports")
    make_job(JobStatus.QUEUED, queue="other")
    response = admin_client_cm.get(reverse(QUEUES))
    (row,) = response.context["cl"].result_list
    assert (row.waiting_jobs, row.active_jobs) == (2, 1)
    admin_client_cm.post(
        reverse(QUEUES), {"action": "pause_queues", "_selected_action": [queue.pk]}
    )
    assert JobQueue.objects.get(pk=queue.pk).is_paused
    admin_client_cm.post(
        reverse(QUEUES), {"action": "resume_queues", "_selected_action": [queue.pk]}
    )
    assert not JobQueue.objects.get(pk=queue.pk).is_paused


@override_settings(CONTAINER_MANAGER={"LEASE_SECONDS": 60})
def test_workers_page_tells_alive_from_dead_and_counts_held_jobs(admin_client_cm):
    now = timezone.now()
    alive = Worker.objects.create(
        worker_id="alive-1", hostname="box", pid=10, last_heartbeat_at=now
    )
    Worker.objects.create(
        worker_id="dead-1", hostname="box", pid=11, last_heartbeat_at=now - timedelta(seconds=61)
    )
    Worker.objects.create(
        worker_id="stopped-1", hostname="box", pid=12, last_heartbeat_at=now, status="stopped"
    )
    held = make_job(JobStatus.RUNNING, worker_id="alive-1", name="held one")
    make_job(JobStatus.VALIDATING, worker_id="alive-1")
    make_job(JobStatus.COMPLETED, worker_id="alive-1")
    response = admin_client_cm.get(reverse(WORKERS))
    rows = {w.worker_id: w for w in response.context["cl"].result_list}
    assert rows["alive-1"].held_count == 2
    assert rows["dead-1"].held_count == 0
    yes = admin_client_cm.get(reverse(WORKERS), {"alive": "yes"}).context["cl"].result_list
    no = admin_client_cm.get(reverse(WORKERS), {"alive": "no"}).context["cl"].result_list
    assert [w.worker_id for w in yes] == ["alive-1"]
    assert sorted(w.worker_id for w in no) == ["dead-1", "stopped-1"]
    detail = admin_client_cm.get(
        reverse("admin:container_manager_worker_change", args=[alive.pk])
    ).content.decode()
    assert f"Job {held.pk} (held one)" in detail
    jobs = admin_client_cm.get(
        reverse("admin:container_manager_containerjob_changelist"), {"worker_id": "alive-1"}
    )
    assert len(jobs.context["cl"].result_list) == 3


def test_workers_cannot_be_added_by_hand(admin_client_cm):
    assert admin_client_cm.get(reverse("admin:container_manager_worker_add")).status_code == 403
