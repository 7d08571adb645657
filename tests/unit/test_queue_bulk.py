"""create_and_queue and queue_jobs: new jobs written already queued, validated first."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from container_manager.exceptions import JobNotQueueableError
from container_manager.models import ContainerJob
from container_manager.queue import queue_manager
from container_manager.states import JobStatus

pytestmark = pytest.mark.django_db


def writes(queries) -> list[str]:
    return [q["sql"].split()[0] for q in queries if q["sql"].split()[0] in ("INSERT", "UPDATE")]


def test_create_and_queue_writes_one_queued_job_in_one_insert():
    with CaptureQueriesContext(connection) as queries:
        job = queue_manager.create_and_queue(name="report", command="echo hi", priority=70)

    assert writes(queries) == ["INSERT"]
    stored = ContainerJob.objects.get(pk=job.pk)
    assert (stored.status, stored.priority, stored.name) == (JobStatus.QUEUED, 70, "report")
    assert stored.queued_at is not None
    assert list(queue_manager.get_ready_jobs()) == [stored]
    assert job.status == JobStatus.QUEUED


def test_queue_jobs_writes_a_batch_in_few_statements_with_one_wake_up_per_queue(
    django_capture_on_commit_callbacks,
):
    jobs = [
        ContainerJob(name=f"j{n}", command="echo", queue="a" if n % 2 else "b") for n in range(2500)
    ]

    with (
        CaptureQueriesContext(connection) as queries,
        django_capture_on_commit_callbacks() as woken,
    ):
        saved = queue_manager.queue_jobs(jobs)

    inserts = writes(queries)
    assert set(inserts) == {"INSERT"}
    if connection.vendor == "postgresql":
        assert len(inserts) == 3  # 1,000 rows per statement
    else:
        # SQLite caps the variables of one statement: Django splits the rows further.
        assert len(inserts) <= 2500 / 20
    assert len(woken) == 2  # one per queue
    assert [job.name for job in saved] == [f"j{n}" for n in range(2500)]
    assert ContainerJob.objects.filter(status=JobStatus.QUEUED).count() == 2500


def test_queue_jobs_schedules_the_batch():
    later = timezone.now() + timedelta(hours=1)

    [job] = queue_manager.queue_jobs([ContainerJob(command="echo")], schedule_for=later)

    assert ContainerJob.objects.get(pk=job.pk).scheduled_for == later
    assert list(queue_manager.get_ready_jobs()) == []


def test_one_bad_job_refuses_the_whole_batch_naming_it_and_its_field():
    jobs = [ContainerJob(command="echo") for _ in range(3)] + [
        ContainerJob(command="echo", priority=101)
    ]

    with pytest.raises(ValidationError) as caught:
        queue_manager.queue_jobs(jobs)

    assert "priority" in caught.value.message_dict
    assert caught.value.message_dict["priority"][0].startswith("Job 3 of the batch: ")
    assert not ContainerJob.objects.exists()


def test_a_saved_job_is_refused_and_nothing_is_written():
    saved = ContainerJob.objects.create(command="echo")

    with pytest.raises(JobNotQueueableError, match="new, unsaved jobs; item 1"):
        queue_manager.queue_jobs([ContainerJob(command="echo"), saved])

    assert list(ContainerJob.objects.values_list("pk", "status")) == [(saved.pk, JobStatus.PENDING)]


def test_a_schedule_that_is_not_a_datetime_is_refused():
    with pytest.raises(ValidationError, match="Not a datetime"):
        queue_manager.create_and_queue(command="echo", schedule_for="tomorrow")

    assert not ContainerJob.objects.exists()
