"""JobQueueManager: the seed's operations (queue, dequeue, ready jobs, failed jobs, retry)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from container_manager.containers import LaunchResult
from container_manager.exceptions import (
    JobAlreadyQueuedError,
    JobNotQueueableError,
    JobNotQueuedError,
    QueueError,
    StaleJobError,
)
from container_manager.executors.base import HealthReport
from container_manager.models import ContainerJob, ExecutorHost, JobQueue
from container_manager.queue import JobQueueManager, queue_manager
from container_manager.states import JobStatus

pytestmark = pytest.mark.django_db


# Shared helpers (the other test_queue_* modules import them) ---------------


#: What the fake container layer answers: the real result type.
FakeResult = LaunchResult


@dataclass
class FakeContainers:
    """Stands in for the container layer (container_manager.containers) in unit tests."""

    results: list = field(default_factory=list)
    launched: list = field(default_factory=list)
    calls: list = field(default_factory=list)
    seen_status: list = field(default_factory=list)
    found: dict = field(default_factory=dict)

    def launch(self, job, on_step=None):
        self.launched.append(job.pk)
        self.seen_status.append((job.status, job.attempt, job.host_id))
        result = self.results.pop(0) if self.results else None
        if isinstance(result, BaseException):
            raise result
        return result or FakeResult(True, container_id=f"container-{job.pk}")

    def pause(self, job):
        self.calls.append(("pause", job.pk))

    def resume(self, job):
        self.calls.append(("resume", job.pk))

    def stop(self, job):
        self.calls.append(("stop", job.pk))

    def find(self, job):
        self.calls.append(("find", job.pk))
        return self.found.get(job.pk)

    def check_host(self, host):
        self.calls.append(("check_host", host.pk))
        return HealthReport(is_healthy=True, detail="fake host answers")


def make_host(name="local", **fields):
    fields.setdefault("executor_type", "process")
    fields.setdefault("max_concurrent_jobs", 50)
    return ExecutorHost.objects.create(name=name, **fields)


def make_job(status=JobStatus.PENDING, **fields):
    fields.setdefault("command", "echo hello")
    return ContainerJob.objects.create(status=status, **fields)


def queued(n=1, **fields):
    jobs = [make_job(**fields) for _ in range(n)]
    for job in jobs:
        queue_manager.queue_job(job)
    return jobs


def snapshot(job):
    """Every stored column of the job, to prove a bad call changed nothing."""
    return ContainerJob.objects.filter(pk=job.pk).values().get()


@pytest.fixture
def service():
    return FakeContainers()


@pytest.fixture
def manager(service):
    return JobQueueManager(worker_id="test-worker", containers=service)


# queue_job -------------------------------------------------------------------


def test_queue_job_moves_a_pending_job_to_queued_and_returns_it():
    job = make_job()
    before = timezone.now()
    returned = queue_manager.queue_job(job)
    assert returned is job
    row = snapshot(job)
    assert row["status"] == JobStatus.QUEUED
    assert row["queued_at"] >= before
    assert row["scheduled_for"] is None
    assert job.is_queued
    assert job.queue_status == "queued"


def test_queue_job_with_priority_stores_the_priority():
    job = make_job(priority=10)
    queue_manager.queue_job(job, priority=80)
    assert snapshot(job)["priority"] == 80


def test_queue_job_with_schedule_makes_the_job_scheduled_and_not_ready():
    job = make_job()
    later = timezone.now() + timedelta(hours=2)
    queue_manager.queue_job(job, schedule_for=later)
    assert snapshot(job)["scheduled_for"] == later
    assert job.queue_status == "scheduled"
    assert job not in queue_manager.get_ready_jobs()


def test_seed_example_queues_jobs_immediately_with_priority_and_for_later():
    job = ContainerJob.objects.create(command="echo hello")
    queue_manager.queue_job(job)
    urgent = ContainerJob.objects.create(command="echo urgent")
    queue_manager.queue_job(urgent, priority=80)
    later = ContainerJob.objects.create(command="echo scheduled")
    queue_manager.queue_job(later, schedule_for=timezone.now() + timedelta(hours=1))
    assert [j.pk for j in queue_manager.get_ready_jobs(limit=5)] == [urgent.pk, job.pk]


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RETRYING])
def test_queue_job_refuses_an_already_queued_job_and_changes_nothing(status):
    job = make_job(status=status, queued_at=timezone.now())
    before = snapshot(job)
    with pytest.raises(JobAlreadyQueuedError, match="already queued") as caught:
        queue_manager.queue_job(job, priority=90)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, QueueError)
    assert snapshot(job) == before


@pytest.mark.parametrize(
    "status",
    [
        JobStatus.COMPLETED,
        JobStatus.CANCELLED,
        JobStatus.RUNNING,
        JobStatus.VALIDATING,
        JobStatus.PAUSED,
    ],
)
def test_queue_job_refuses_jobs_in_other_states_and_changes_nothing(status):
    job = make_job(status=status)
    before = snapshot(job)
    with pytest.raises(JobNotQueueableError, match=f"Cannot queue {status}") as caught:
        queue_manager.queue_job(job)
    assert isinstance(caught.value, ValueError)
    assert snapshot(job) == before


@pytest.mark.parametrize("priority", [101, -1, "high", True])
def test_queue_job_refuses_an_invalid_priority_and_changes_nothing(priority):
    job = make_job()
    before = snapshot(job)
    with pytest.raises(ValidationError, match="Priority must be an integer 0-100"):
        queue_manager.queue_job(job, priority=priority)
    assert snapshot(job) == before


def test_queue_job_refuses_a_schedule_that_is_not_a_datetime():
    job = make_job()
    before = snapshot(job)
    with pytest.raises(ValidationError, match="Not a datetime"):
        queue_manager.queue_job(job, schedule_for="tomorrow")
    assert snapshot(job) == before


def test_queue_job_refuses_an_unsaved_job():
    with pytest.raises(JobNotQueueableError, match="unsaved"):
        queue_manager.queue_job(ContainerJob(command="echo"))
    assert ContainerJob.objects.count() == 0


def test_queue_job_with_a_stale_instance_raises_and_keeps_the_stored_row():
    job = make_job()
    ContainerJob.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED)
    before = snapshot(job)
    with pytest.raises(StaleJobError):
        queue_manager.queue_job(job)
    assert snapshot(job) == before


def test_queue_job_requeues_a_failed_job():
    job = make_job(status=JobStatus.FAILED, retry_count=1)
    queue_manager.queue_job(job)
    assert snapshot(job)["status"] == JobStatus.QUEUED


# dequeue_job -----------------------------------------------------------------


def test_dequeue_job_returns_the_job_to_pending_and_clears_queue_fields():
    job = make_job()
    queue_manager.queue_job(job, schedule_for=timezone.now() + timedelta(hours=1))
    ContainerJob.objects.filter(pk=job.pk).update(retry_count=2)
    job.refresh_from_db()
    queue_manager.dequeue_job(job)
    row = snapshot(job)
    assert (row["status"], row["queued_at"], row["scheduled_for"], row["retry_count"]) == (
        JobStatus.PENDING,
        None,
        None,
        0,
    )
    assert job.queue_status == "not_queued"


@pytest.mark.parametrize(
    "status", [JobStatus.PENDING, JobStatus.RUNNING, JobStatus.COMPLETED, JobStatus.PAUSED]
)
def test_dequeue_job_refuses_a_job_that_is_not_queued_and_changes_nothing(status):
    job = make_job(status=status)
    before = snapshot(job)
    with pytest.raises(JobNotQueuedError, match="is not queued") as caught:
        queue_manager.dequeue_job(job)
    assert isinstance(caught.value, ValueError)
    assert snapshot(job) == before


def test_dequeue_job_of_a_job_claimed_meanwhile_raises_and_keeps_the_claim(manager):
    make_host()
    [job] = queued()
    manager.claim_jobs("other-worker", 1)
    before = snapshot(job)
    with pytest.raises(JobNotQueuedError):
        queue_manager.dequeue_job(job)
    assert snapshot(job) == before
    assert before["status"] == JobStatus.VALIDATING


# get_ready_jobs --------------------------------------------------------------


def set_queued_at(job, minutes_ago):
    ContainerJob.objects.filter(pk=job.pk).update(
        queued_at=timezone.now() - timedelta(minutes=minutes_ago)
    )


def test_get_ready_jobs_orders_by_priority_then_first_in_first_out():
    low_old, high_new, high_old, mid = queued(4)
    for job, priority, age in [
        (low_old, 10, 30),
        (high_new, 90, 1),
        (high_old, 90, 20),
        (mid, 50, 5),
    ]:
        ContainerJob.objects.filter(pk=job.pk).update(priority=priority)
        set_queued_at(job, age)
    assert list(queue_manager.get_ready_jobs()) == [high_old, high_new, mid, low_old]


def test_get_ready_jobs_includes_due_scheduled_and_retrying_jobs_only():
    now_job, past_job, future_job, retry_due, retry_later = queued(5)
    ContainerJob.objects.filter(pk=past_job.pk).update(scheduled_for=timezone.now() - timedelta(1))
    ContainerJob.objects.filter(pk=future_job.pk).update(
        scheduled_for=timezone.now() + timedelta(minutes=5)
    )
    ContainerJob.objects.filter(pk__in=[retry_due.pk, retry_later.pk]).update(
        status=JobStatus.RETRYING
    )
    ContainerJob.objects.filter(pk=retry_due.pk).update(scheduled_for=timezone.now())
    ContainerJob.objects.filter(pk=retry_later.pk).update(
        scheduled_for=timezone.now() + timedelta(seconds=30)
    )
    ready = set(queue_manager.get_ready_jobs())
    assert ready == {now_job, past_job, retry_due}


def test_get_ready_jobs_skips_paused_queues_paused_hosts_and_paused_jobs():
    paused_host = make_host("paused", is_paused=True)
    inactive_host = make_host("inactive", is_active=False)
    open_host = make_host("open")
    plain, on_paused, on_inactive, on_open, in_paused_queue, paused_job = queued(6)
    ContainerJob.objects.filter(pk=on_paused.pk).update(host=paused_host)
    ContainerJob.objects.filter(pk=on_inactive.pk).update(host=inactive_host)
    ContainerJob.objects.filter(pk=on_open.pk).update(host=open_host)
    ContainerJob.objects.filter(pk=in_paused_queue.pk).update(queue="reports")
    JobQueue.objects.create(name="reports", is_paused=True)
    ContainerJob.objects.filter(pk=paused_job.pk).update(status=JobStatus.PAUSED)
    assert set(queue_manager.get_ready_jobs()) == {plain, on_open}


def test_get_ready_jobs_applies_limit_and_exclude_ids():
    jobs = queued(4)
    for age, job in enumerate(reversed(jobs)):
        set_queued_at(job, age)
    assert list(queue_manager.get_ready_jobs(limit=2)) == jobs[:2]
    assert list(queue_manager.get_ready_jobs(exclude_ids=[jobs[0].pk])) == jobs[1:]
    assert list(queue_manager.get_ready_jobs(limit=0)) == []


def test_get_ready_jobs_refuses_a_negative_limit():
    with pytest.raises(ValueError, match="limit must be a whole number 0 or more"):
        queue_manager.get_ready_jobs(limit=-1)


# get_failed_jobs and retry_failed_job -----------------------------------------


def test_get_failed_jobs_returns_failed_and_timed_out_jobs_newest_first():
    now = timezone.now()
    old = make_job(status=JobStatus.FAILED, completed_at=now - timedelta(hours=1))
    new = make_job(status=JobStatus.TIMEOUT, completed_at=now)
    make_job(status=JobStatus.COMPLETED, completed_at=now)
    other = make_job(
        status=JobStatus.FAILED, completed_at=now - timedelta(minutes=30), queue="reports"
    )
    assert list(queue_manager.get_failed_jobs()) == [new, other, old]
    assert list(queue_manager.get_failed_jobs(queue="reports")) == [other]


def test_retry_failed_job_requeues_and_keeps_the_retry_count():
    job = make_job(status=JobStatus.FAILED, retry_count=3, error_code="DOCKER_PULL_FAILED")
    returned = queue_manager.retry_failed_job(job)
    row = snapshot(job)
    assert returned is job
    assert (row["status"], row["retry_count"]) == (JobStatus.QUEUED, 3)
    assert job in queue_manager.get_ready_jobs()


def test_retry_failed_job_with_reset_count_gives_all_attempts_back():
    job = make_job(status=JobStatus.TIMEOUT, retry_count=3)
    queue_manager.retry_failed_job(job, reset_count=True)
    row = snapshot(job)
    assert (row["status"], row["retry_count"], job.retry_count) == (JobStatus.QUEUED, 0, 0)


@pytest.mark.parametrize(
    "status", [JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED]
)
def test_retry_failed_job_refuses_jobs_that_did_not_fail_and_changes_nothing(status):
    job = make_job(status=status)
    before = snapshot(job)
    with pytest.raises(JobNotQueueableError, match="Only failed or timed-out jobs"):
        queue_manager.retry_failed_job(job)
    assert snapshot(job) == before


def test_module_level_queue_manager_is_a_job_queue_manager():
    assert isinstance(queue_manager, JobQueueManager)
    assert queue_manager.worker_id.endswith(f":{__import__('os').getpid()}")


def test_get_ready_jobs_excludes_ids_of_any_size_and_refuses_ids_that_are_not_numbers():
    make_host()
    [job] = queued()

    assert list(queue_manager.get_ready_jobs(exclude_ids=[2**63, -(2**70)])) == [job]
    with pytest.raises(ValueError, match="exclude_ids must be whole numbers"):
        queue_manager.get_ready_jobs(exclude_ids=["1"])
