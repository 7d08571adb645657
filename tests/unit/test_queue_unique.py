"""Unique keys: queueing the same work twice returns the job that holds the key."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from container_manager.models import ContainerJob
from container_manager.queue import queue_manager
from container_manager.signals import job_queued

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_key_held_by_an_unfinished_job_returns_that_job(db):
    first = queue_manager.create_and_queue(name="report", unique_key="report:2026-12-07")
    again = queue_manager.create_and_queue(name="report again", unique_key="report:2026-12-07")
    assert again.pk == first.pk
    assert again.name == "report"
    assert ContainerJob.objects.count() == 1
    other_queue = queue_manager.create_and_queue(
        name="elsewhere", queue="reports", unique_key="report:2026-12-07"
    )
    assert other_queue.pk != first.pk


def test_once_the_holder_ended_the_key_is_free_again(db):
    first = queue_manager.create_and_queue(name="report", unique_key="k")
    queue_manager.cancel_job(first)
    second = queue_manager.create_and_queue(name="report", unique_key="k")
    assert second.pk != first.pk
    assert second.status == "queued"


def test_a_window_key_holds_whatever_the_status_until_the_window_ends(db):
    first = queue_manager.create_and_queue(name="hourly", unique_key="sync", unique_for=3600)
    queue_manager.cancel_job(first)
    again = queue_manager.create_and_queue(
        name="hourly", unique_key="sync", unique_for=timedelta(hours=1)
    )
    assert again.pk == first.pk
    start = first.unique_window_start
    assert start is not None
    assert start.timestamp() % 3600 == 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"unique_for": 60}, "unique_key"),
        ({"unique_key": "k", "unique_for": 0}, "unique_for"),
        ({"unique_key": "k", "unique_for": "1h"}, "unique_for"),
    ],
)
def test_a_bad_window_is_refused_naming_the_field(db, fields, field):
    with pytest.raises(ValidationError) as caught:
        queue_manager.create_and_queue(name="x", **fields)
    assert field in caught.value.message_dict
    assert not ContainerJob.objects.exists()


def test_a_duplicate_is_not_heard_as_queued(db):
    heard = []

    def receive(sender, job, **kwargs):
        heard.append(job.pk)

    job_queued.connect(receive, sender=ContainerJob, weak=False)
    try:
        first = queue_manager.create_and_queue(name="a", unique_key="k")
        queue_manager.create_and_queue(name="a", unique_key="k")
    finally:
        job_queued.disconnect(receive, sender=ContainerJob)
    assert heard == [first.pk]


def test_a_batch_keeps_its_order_with_duplicates_replaced_by_their_holders(db):
    queue_manager.create_and_queue(name="held", unique_key="k1")
    jobs = queue_manager.queue_jobs(
        [
            ContainerJob(name="plain"),
            ContainerJob(name="dup", unique_key="k1"),
            ContainerJob(name="new", unique_key="k2"),
            ContainerJob(name="dup of new", unique_key="k2"),
        ]
    )
    assert [job.name for job in jobs] == ["plain", "held", "new", "new"]
    assert ContainerJob.objects.count() == 3


@pytest.mark.postgres
def test_racing_enqueues_of_one_key_make_one_job(db):
    callers = 8
    barrier = threading.Barrier(callers)
    got: list[int] = []
    errors: list[BaseException] = []

    def enqueue() -> None:
        try:
            barrier.wait(10)
            job = queue_manager.create_and_queue(name="race", unique_key="once")
            got.append(job.pk)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=enqueue) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(got) == callers
    assert len(set(got)) == 1
    assert ContainerJob.objects.filter(unique_key="once").count() == 1


def test_retrying_a_job_whose_key_is_held_again_is_refused_clearly(db):
    from container_manager import operations
    from container_manager.exceptions import JobNotQueueableError

    first = queue_manager.create_and_queue(name="a", unique_key="k")
    ContainerJob.objects.filter(pk=first.pk).update(status="failed")
    second = queue_manager.create_and_queue(name="b", unique_key="k")
    assert second.pk != first.pk
    first.refresh_from_db()
    with pytest.raises(JobNotQueueableError, match=f"job {second.pk} of queue 'default' holds"):
        queue_manager.retry_failed_job(first)
    assert ContainerJob.objects.get(pk=first.pk).status == "failed"
    answer = operations.run(
        {"action": "queue_manage", "params": {"action": "retry", "task_id": str(first.pk)}}
    )
    assert answer["success"] is False
    assert "holds its unique key 'k'" in answer["error"]
