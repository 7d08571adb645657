"""The signals a project receives: queued, started, finished; after commit; never fatal."""

from __future__ import annotations

import logging

import pytest
from django.db import transaction

from container_manager.exceptions import ImageNotFoundError
from container_manager.executors.base import ExitStatus
from container_manager.models import ContainerJob
from container_manager.queue import queue_manager
from container_manager.signals import job_finished, job_queued, job_started
from container_manager.worker import Worker
from tests.unit import fake_executor as fakes

fake_host = fakes.fake_host
fake_executor = fakes.fake_executor

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def heard():
    """Every signal received, as (name, job id, status, extra)."""
    seen: list[tuple[str, int, str, dict]] = []

    def listener(name):
        def receive(sender, job, **kwargs):
            assert sender is ContainerJob
            kwargs.pop("signal")
            seen.append((name, job.pk, job.status, kwargs))

        return receive

    receivers = [
        (job_queued, listener("queued")),
        (job_started, listener("started")),
        (job_finished, listener("finished")),
    ]
    for signal, receiver in receivers:
        signal.connect(receiver, sender=ContainerJob, weak=False)
    yield seen
    for signal, receiver in receivers:
        signal.disconnect(receiver, sender=ContainerJob)


def test_queued_is_sent_for_each_job_once_the_transaction_commits(heard, fake_host):
    with transaction.atomic():
        jobs = queue_manager.queue_jobs([ContainerJob(name="a"), ContainerJob(name="b")])
        assert heard == []  # Not before the commit.
    assert heard == [("queued", job.pk, "queued", {}) for job in jobs]


def test_nothing_is_sent_for_a_change_that_was_rolled_back(heard, fake_host):
    def queue_then_fail():
        with transaction.atomic():
            queue_manager.create_and_queue(name="gone")
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        queue_then_fail()
    assert heard == []
    assert not ContainerJob.objects.exists()


def test_a_job_is_heard_queued_started_and_finished_with_its_outcome(
    heard, fake_host, fake_executor
):
    job = ContainerJob.objects.create(name="one", command="echo")
    queue_manager.queue_job(job)
    [claimed] = queue_manager.claim_jobs("w1", 1)
    assert queue_manager.launch_claimed(claimed).success
    ref = fake_executor.containers[(job.pk, 1)]
    queue_manager.finish_job(claimed, ExitStatus(ref, 3), worker_id="w1")
    assert [(name, status) for name, _, status, _ in heard] == [
        ("queued", "queued"),
        ("started", "running"),
        ("finished", "failed"),
    ]
    assert heard[-1][3] == {"status": "failed", "error_code": "CONTAINER_EXIT_NONZERO"}


def test_a_cancel_a_final_launch_failure_and_a_failed_dependency_are_heard(
    heard, fake_host, fake_executor
):
    cancelled = queue_manager.create_and_queue(name="cancel me")
    queue_manager.cancel_job(cancelled)
    fake_executor.fail_next = [ImageNotFoundError("no such image")]
    broken = queue_manager.create_and_queue(name="broken", image="nope:1")
    waiting = queue_manager.queue_after(ContainerJob(name="after"), after=[broken])
    [claimed] = queue_manager.claim_jobs("w1", 1)
    assert claimed.pk == broken.pk
    queue_manager.launch_claimed(claimed)
    queue_manager.fail_dependents()
    finished = [(pk, extra) for name, pk, _, extra in heard if name == "finished"]
    assert finished == [
        (cancelled.pk, {"status": "cancelled", "error_code": ""}),
        (broken.pk, {"status": "failed", "error_code": "DOCKER_IMAGE_NOT_FOUND"}),
        (waiting.pk, {"status": "failed", "error_code": "DEPENDENCY_FAILED"}),
    ]


@pytest.mark.postgres
def test_a_receiver_that_raises_is_logged_and_breaks_neither_others_nor_the_worker(
    heard, fake_host, fake_executor, caplog
):
    def explode(sender, job, **kwargs):
        raise ValueError("receiver bug")

    job_started.connect(explode, sender=ContainerJob, weak=False)
    job_finished.connect(explode, sender=ContainerJob, weak=False)
    try:
        jobs = queue_manager.queue_jobs(
            [ContainerJob(name=f"j{n}", command="echo") for n in range(3)]
        )
        with caplog.at_level(logging.ERROR, logger="container_manager.signals"):
            worker = Worker(worker_id="w-signals", once=True)
            stats = worker.run()
    finally:
        job_started.disconnect(explode, sender=ContainerJob)
        job_finished.disconnect(explode, sender=ContainerJob)
    assert stats.jobs_launched == 3
    assert {job.status for job in ContainerJob.objects.filter(pk__in=[j.pk for j in jobs])} == {
        "running"
    }
    # The other receiver heard every start.
    assert sorted(pk for name, pk, _, _ in heard if name == "started") == [j.pk for j in jobs]
    raised = [
        r
        for r in caplog.records
        if r.name == "container_manager.signals"
        and "receiver bug" in str(r.exc_info[1] if r.exc_info else "")
    ]
    assert len(raised) == 3
    assert "the job is not affected" in raised[0].getMessage()
