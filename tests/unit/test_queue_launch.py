"""launch_job, launch_job_with_retry and launch_next_batch, with a fake container layer."""

from __future__ import annotations

import pytest
from django.utils import timezone

from container_manager.exceptions import ImageNotFoundError
from container_manager.models import ContainerJob
from container_manager.states import JobStatus
from tests.unit import test_queue as queue_fixtures
from tests.unit.test_queue import (
    FakeResult,
    make_host,
    make_job,
    queued,
    set_queued_at,
    snapshot,
)

pytestmark = pytest.mark.django_db

# The `service` and `manager` fixtures come from tests/unit/test_queue.py.
service = queue_fixtures.service
manager = queue_fixtures.manager


def test_launch_job_claims_launches_and_marks_the_job_running(manager, service):
    host = make_host()
    [job] = queued()
    result = manager.launch_job(job)
    assert result == {"success": True, "error": ""}
    # The container layer saw a claimed job: validating, first attempt, host chosen.
    assert service.seen_status == [(JobStatus.VALIDATING, 1, host.pk)]
    row = snapshot(job)
    assert (row["status"], row["container_id"], row["worker_id"]) == (
        JobStatus.RUNNING,
        f"container-{job.pk}",
        "test-worker",
    )
    assert row["launched_at"] is not None
    assert job.status == JobStatus.RUNNING
    assert job.queue_status == "launched"


@pytest.mark.parametrize("status", [JobStatus.PENDING, JobStatus.RUNNING, JobStatus.COMPLETED])
def test_launch_job_of_a_job_that_is_not_ready_launches_nothing(manager, service, status):
    make_host()
    job = make_job(status=status)
    before = snapshot(job)
    result = manager.launch_job(job)
    assert result["success"] is False
    assert "not ready to launch" in result["error"]
    assert service.launched == []
    assert snapshot(job) == before


def test_launch_job_never_launches_a_job_of_a_paused_queue(manager, service):
    make_host()
    [job] = queued(queue="reports")
    manager.pause_queue("reports")
    assert manager.launch_job(job)["success"] is False
    assert service.launched == []
    assert snapshot(job)["status"] == JobStatus.QUEUED


def test_transient_failure_result_schedules_a_retry(manager, service):
    make_host()
    [job] = queued()
    service.results = [FakeResult(False, "pull timed out", "DOCKER_PULL_FAILED", True)]
    result = manager.launch_job_with_retry(job)
    assert result["success"] is False
    assert result["retry_scheduled"] is True
    assert "pull timed out" in result["error"]
    row = snapshot(job)
    assert (row["status"], row["retry_count"], row["error_code"]) == (
        JobStatus.RETRYING,
        1,
        "DOCKER_PULL_FAILED",
    )
    assert row["scheduled_for"] > timezone.now()
    assert row["last_error"] == "pull timed out"
    assert row["worker_id"] == ""
    assert job.queue_status == "scheduled"


def test_exception_from_the_executor_is_classified_by_type(manager, service):
    make_host()
    [job] = queued()
    service.results = [ConnectionRefusedError(111, "Connection refused")]
    result = manager.launch_job_with_retry(job)
    assert result["retry_scheduled"] is True
    assert snapshot(job)["error_code"] == "CONNECTION_ERROR"


def test_permanent_failure_fails_at_once_with_its_code(manager, service):
    make_host()
    [job] = queued()
    service.results = [ImageNotFoundError("No such image: nope:latest")]
    result = manager.launch_job_with_retry(job)
    assert result == {
        "success": False,
        "error": "DOCKER_IMAGE_NOT_FOUND: No such image: nope:latest",
        "retry_scheduled": False,
    }
    row = snapshot(job)
    assert (row["status"], row["error_code"], row["retry_count"]) == (
        JobStatus.FAILED,
        "DOCKER_IMAGE_NOT_FOUND",
        1,
    )
    assert job.queue_status == "launch_failed"


def test_failure_without_verdict_is_classified_by_code_then_message(manager, service):
    make_host()
    first, second = queued(2)
    set_queued_at(second, -1)
    service.results = [
        FakeResult(False, "whatever", "VALIDATION_INVALID_PARAMS"),
        FakeResult(False, "Error: no space left on device"),
    ]
    assert manager.launch_job_with_retry(first)["retry_scheduled"] is False
    assert manager.launch_job_with_retry(second)["retry_scheduled"] is True
    assert snapshot(second)["error_code"] == "SYSTEM_DISK_SPACE"


def test_unknown_errors_retry_with_conservative_limits(manager, service):
    make_host()
    [job] = queued(retry_strategy="aggressive")
    service.results = [RuntimeError("something odd"), RuntimeError("something odd")]
    assert manager.launch_job_with_retry(job)["retry_scheduled"] is True
    ContainerJob.objects.filter(pk=job.pk).update(scheduled_for=timezone.now())
    # aggressive allows 5 attempts, but an unknown error gets 2 at most.
    assert manager.launch_job_with_retry(job)["retry_scheduled"] is False
    row = snapshot(job)
    assert (row["status"], row["error_code"], row["retry_count"]) == (
        JobStatus.FAILED,
        "UNKNOWN_ERROR",
        2,
    )


def test_launch_job_of_a_job_cancelled_during_launch_stops_the_container(manager, service):
    make_host()
    [job] = queued()

    def launch_then_cancel(claimed, on_step=None):
        ContainerJob.objects.filter(pk=claimed.pk).update(status=JobStatus.CANCELLED)
        return FakeResult(True, container_id="late")

    service.launch = launch_then_cancel
    result = manager.launch_job(job)
    assert result["success"] is False
    assert service.calls == [("stop", job.pk)]
    assert snapshot(job)["status"] == JobStatus.CANCELLED


def test_launch_next_batch_launches_up_to_max_concurrent_by_priority(manager, service):
    make_host()
    jobs = queued(4)
    ContainerJob.objects.filter(pk=jobs[3].pk).update(priority=90)
    result = manager.launch_next_batch(max_concurrent=2)
    assert result == {"launched": 2, "errors": []}
    assert service.launched[0] == jobs[3].pk
    assert ContainerJob.objects.filter(status=JobStatus.RUNNING).count() == 2


def test_launch_next_batch_counts_the_jobs_this_worker_already_holds(manager, service):
    make_host()
    queued(4)
    assert manager.launch_next_batch(max_concurrent=3)["launched"] == 3
    assert manager.launch_next_batch(max_concurrent=3) == {"launched": 0, "errors": []}
    assert manager.launch_next_batch(max_concurrent=4)["launched"] == 1


def test_launch_next_batch_reports_each_failed_launch(manager, service):
    make_host()
    _first, second = queued(2)
    set_queued_at(second, -1)
    service.results = [None, ImageNotFoundError("No such image: x")]
    result = manager.launch_next_batch(max_concurrent=5)
    assert result["launched"] == 1
    assert result["errors"] == [f"Job {second.pk}: DOCKER_IMAGE_NOT_FOUND: No such image: x"]


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"max_concurrent": 0}, "max_concurrent"), ({"timeout": 0}, "timeout")]
)
def test_launch_next_batch_refuses_bad_arguments(manager, service, kwargs, message):
    make_host()
    [job] = queued()
    with pytest.raises(ValueError, match=message):
        manager.launch_next_batch(**kwargs)
    assert snapshot(job)["status"] == JobStatus.QUEUED
    assert service.launched == []
