"""The command's legacy mode: queue_manager.process_job brings one job up to date."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from container_manager.models import ContainerJob
from container_manager.queue import queue_manager
from container_manager.states import JobStatus
from tests.unit import fake_executor as fakes

fake_host = fakes.fake_host
fake_executor = fakes.fake_executor

pytestmark = pytest.mark.django_db

claimed_job = fakes.claimed_job
running_job = fakes.running_job


# Legacy processing ------------------------------------------------------------------------


def test_process_job_finishes_a_running_job_whose_container_ended(fake_host, fake_executor):
    job, ref = running_job(fake_host, fake_executor)
    fake_executor.end(ref, 0)

    result = queue_manager.process_job(job)

    assert (result.success, result.detail, result.status) == (True, "finished", "completed")


def test_process_job_leaves_a_running_container_running(fake_host, fake_executor):
    job, _ = running_job(fake_host, fake_executor)

    result = queue_manager.process_job(job)

    assert (result.success, result.detail) == (True, "still running")
    assert ContainerJob.objects.get(pk=job.pk).status == JobStatus.RUNNING


def test_process_job_times_out_a_job_past_its_timeout(fake_host, fake_executor):
    job, ref = running_job(fake_host, fake_executor, timeout_seconds=5)
    ContainerJob.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(seconds=10))
    job.refresh_from_db()

    result = queue_manager.process_job(job)

    assert (result.success, result.status) == (True, JobStatus.TIMEOUT)
    assert fake_executor.killed == [ref.container_id]
    stored = ContainerJob.objects.get(pk=job.pk)
    assert (stored.exit_code, stored.stdout) == (137, "out\n")


def test_process_job_leaves_a_job_whose_lease_a_live_worker_holds(fake_host, fake_executor):
    job, ref = running_job(fake_host, fake_executor)
    ContainerJob.objects.filter(pk=job.pk).update(
        worker_id="queue-worker", lease_expires_at=timezone.now() + timedelta(seconds=60)
    )
    fake_executor.end(ref, 1)
    job.refresh_from_db()

    result = queue_manager.process_job(job)

    assert (result.success, result.detail) == (True, "held by worker queue-worker")
    stored = ContainerJob.objects.get(pk=job.pk)
    assert (stored.status, stored.exit_code, stored.worker_id) == (
        JobStatus.RUNNING,
        None,
        "queue-worker",
    )


def test_process_job_finishes_a_job_whose_lease_expired(fake_host, fake_executor):
    job, ref = running_job(fake_host, fake_executor)
    ContainerJob.objects.filter(pk=job.pk).update(
        worker_id="gone-worker", lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    fake_executor.end(ref, 0)
    job.refresh_from_db()

    result = queue_manager.process_job(job)

    assert (result.detail, result.status) == ("finished", JobStatus.COMPLETED)


def test_process_job_fails_a_running_job_whose_container_is_gone(fake_host, fake_executor):
    job = claimed_job(fake_host)
    job.mark_as_running()

    result = queue_manager.process_job(job)

    assert not result.success
    assert "gone" in result.error
    assert ContainerJob.objects.get(pk=job.pk).status == JobStatus.FAILED


def test_process_job_reports_terminal_jobs_without_touching_them(fake_host):
    job = ContainerJob.objects.create(command="echo", host=fake_host)
    job.mark_as_cancelled()

    result = queue_manager.process_job(job)

    assert (result.success, result.detail) == (True, "nothing to do")
