"""get_queue_stats, get_worker_metrics and stats.get_statistics."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from container_manager.models import ContainerJob, JobQueue
from container_manager.queue import JobQueueManager, queue_manager
from container_manager.states import JobStatus
from container_manager.stats import get_statistics
from tests.unit.test_queue import make_host, make_job, queued

pytestmark = pytest.mark.django_db


def populate():
    host = make_host(max_concurrent_jobs=10)
    now = timezone.now()
    queued(3)
    [urgent] = queued(priority=90)
    [later] = queued()
    ContainerJob.objects.filter(pk=later.pk).update(scheduled_for=now + timedelta(hours=1))
    make_job(status=JobStatus.RUNNING, host=host, worker_id="test-worker")
    make_job(status=JobStatus.RUNNING, host=host, worker_id="other")
    make_job(
        status=JobStatus.COMPLETED,
        started_at=now - timedelta(seconds=30),
        completed_at=now - timedelta(seconds=20),
    )
    make_job(
        status=JobStatus.COMPLETED,
        started_at=now - timedelta(seconds=50),
        completed_at=now - timedelta(seconds=20),
    )
    make_job(
        status=JobStatus.FAILED,
        queued_at=now,
        completed_at=now,
        retry_count=3,
        error_code="DOCKER_PULL_FAILED",
    )
    make_job(
        status=JobStatus.FAILED, completed_at=now, retry_count=1, error_code="SYSTEM_DISK_SPACE"
    )
    make_job(status=JobStatus.PENDING, queue="reports")
    return urgent


def test_get_queue_stats_counts_the_documented_keys():
    populate()
    stats = queue_manager.get_queue_stats()
    assert {k: stats[k] for k in ("queued", "scheduled", "running", "launch_failed")} == {
        "queued": 4,
        "scheduled": 1,
        "running": 2,
        "launch_failed": 1,
    }


def test_get_worker_metrics_has_what_dry_run_prints():
    populate()
    JobQueue.objects.create(name="reports", is_paused=True)
    metrics = JobQueueManager(worker_id="test-worker").get_worker_metrics()
    assert (
        metrics["ready_now"],
        metrics["scheduled_future"],
        metrics["running"],
        metrics["launch_failed"],
    ) == (4, 1, 2, 1)
    assert metrics["held_by_worker"] == 1
    assert metrics["paused_queues"] == ["reports"]
    assert (metrics["available_hosts"], metrics["free_host_slots"]) == (1, 8)


def test_get_statistics_has_every_section_from_a_few_queries():
    populate()
    with CaptureQueriesContext(connection) as queries:
        stats = get_statistics()
    # Six, plus the image tasks by kind (over their partial index) and the
    # due jobs waiting for other jobs (from the dependency table).
    assert len(queries) <= 8
    assert stats["summary"] == {
        "total_tasks": 12,
        "max_concurrent_tasks": 10,
        "current_running": 2,
        "queue_size": 5,
    }
    assert stats["status_distribution"]["queued"] == 5
    assert stats["status_distribution"]["timeout"] == 0
    assert stats["queue_distribution"] == {"default": 11, "reports": 1}
    assert stats["error_distribution"]["DOCKER_PULL_FAILED"]["count"] == 1
    assert stats["error_distribution"]["SYSTEM_DISK_SPACE"]["description"] == (
        "Insufficient disk space"
    )
    assert stats["performance"] == {
        "success_rate": 50.0,
        "average_duration_seconds": 20.0,
        "completed_tasks": 2,
        "failed_tasks": 2,
    }
    assert stats["retries"] == {
        "total_retries": 4,
        "tasks_with_retries": 2,
        "max_retries_reached": 1,
    }
    assert stats["recent_activity"] == {"last_24h": 12, "last_hour": 12}
    admin = stats["admin"]
    assert (admin["queue_depth"], admin["ready"], admin["scheduled"], admin["running"]) == (
        5,
        4,
        1,
        2,
    )
    assert (admin["completed_today"], admin["failed_today"], admin["high_priority_waiting"]) == (
        2,
        2,
        1,
    )


def test_get_statistics_of_one_queue_and_of_an_empty_database():
    assert get_statistics()["performance"]["success_rate"] is None
    assert get_statistics()["performance"]["average_duration_seconds"] is None
    populate()
    reports = get_statistics(queue="reports")
    assert reports["summary"]["total_tasks"] == 1
    assert reports["status_distribution"]["pending"] == 1
