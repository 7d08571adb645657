"""No new attempt beside a container that may run; no end stored without its output."""

from __future__ import annotations

import pytest

from container_manager.containers import containers
from container_manager.exceptions import ContainerNotFoundError, ExecutorUnavailableError
from container_manager.executors.base import ExitStatus
from container_manager.models import ContainerJob
from container_manager.queue import queue_manager
from container_manager.states import JobStatus
from tests.unit import fake_executor as fakes

fake_host = fakes.fake_host
fake_executor = fakes.fake_executor

pytestmark = pytest.mark.django_db


def stored(job):
    return ContainerJob.objects.get(pk=job.pk)


# Launches that fail after the engine may have done the work ----------------------


def test_a_failed_launch_whose_container_exists_is_completed_with_that_container(
    fake_host, fake_executor
):
    job = fakes.claimed_job(fake_host)
    made = fake_executor.add_container(job.pk, 1)  # the engine made it; our call timed out
    fake_executor.fail_next = [ExecutorUnavailableError("Read timed out. (read timeout=10.0)")]

    outcome = queue_manager.launch_claimed(job)

    assert outcome.success
    row = stored(job)
    assert (row.status, row.container_id, row.attempt, row.retry_count) == (
        JobStatus.RUNNING,
        made.container_id,
        1,
        0,
    )


def test_a_failed_launch_without_container_is_retried_as_before(fake_host, fake_executor):
    job = fakes.claimed_job(fake_host)
    fake_executor.fail_next = [ExecutorUnavailableError("connection refused")]

    outcome = queue_manager.launch_claimed(job)

    assert outcome.retry_scheduled
    assert (stored(job).status, stored(job).retry_count) == (JobStatus.RETRYING, 1)


def test_a_failed_launch_the_host_cannot_settle_is_left_for_the_rescue_without_a_retry(
    fake_host, fake_executor
):
    job = fakes.claimed_job(fake_host)
    fake_executor.fail_next = [ExecutorUnavailableError("Read timed out")]
    fake_executor.find_fail_next = [ExecutorUnavailableError("daemon restarting")]

    result = containers.launch(job)
    assert result.is_outcome_unknown
    assert not result.success

    job = stored(job)
    fake_executor.fail_next = [ExecutorUnavailableError("Read timed out")]
    fake_executor.find_fail_next = [ExecutorUnavailableError("daemon restarting")]
    outcome = queue_manager.launch_claimed(job)

    row = stored(job)
    assert not outcome.success
    assert not outcome.retry_scheduled
    assert row.status in (JobStatus.VALIDATING, JobStatus.PREPARING)
    assert row.retry_count == 0
    assert row.error_code == "DOCKER_NETWORK_ERROR"
    assert list(queue_manager.expired_jobs()) == [row]


def test_a_permanent_launch_failure_is_not_looked_up(fake_host, fake_executor):
    job = fakes.claimed_job(fake_host)
    from container_manager.exceptions import ImageNotFoundError

    fake_executor.fail_next = [ImageNotFoundError("No such image: ghost")]
    fake_executor.find_fail_next = [AssertionError("find must not be called")]

    outcome = queue_manager.launch_claimed(job)

    assert (outcome.success, stored(job).status) == (False, JobStatus.FAILED)


# Handing a job back on stop --------------------------------------------------------


def test_release_hands_back_only_a_job_without_container(fake_host, fake_executor):
    empty = fakes.claimed_job(fake_host)
    adopted = fakes.claimed_job(fake_host)
    fake_executor.add_container(adopted.pk, 1)

    assert queue_manager.release_job(empty, "w1")
    assert not queue_manager.release_job(adopted, "w1")

    assert stored(empty).status == JobStatus.QUEUED
    assert stored(adopted).status == JobStatus.VALIDATING
    assert [j.pk for j in queue_manager.expired_jobs()] == [adopted.pk]


def test_release_keeps_the_job_when_its_host_does_not_answer(fake_host, fake_executor):
    job = fakes.claimed_job(fake_host)
    fake_executor.find_fail_next = [ExecutorUnavailableError("daemon down")]

    assert not queue_manager.release_job(job, "w1")

    assert stored(job).status == JobStatus.VALIDATING
    assert [j.pk for j in queue_manager.expired_jobs()] == [job.pk]


# Ends and their output -------------------------------------------------------------


def test_an_end_whose_output_cannot_be_read_now_is_not_stored_nor_removed(fake_host, fake_executor):
    job, ref = fakes.running_job(fake_host, fake_executor)
    fake_executor.logs_fail_next = [ExecutorUnavailableError("daemon restarting")]

    with pytest.raises(ExecutorUnavailableError):
        queue_manager.finish_job(job, ExitStatus(ref, 0), worker_id="w1")

    assert stored(job).status == JobStatus.RUNNING
    assert fake_executor.removed == []
    # Tried again once the engine answers: stored with its output.
    assert queue_manager.finish_job(stored(job), ExitStatus(ref, 0), worker_id="w1")
    assert (stored(job).status, stored(job).stdout) == (JobStatus.COMPLETED, "out\n")
    assert fake_executor.removed == [ref.container_id]


def test_an_end_whose_output_is_gone_for_good_says_so(fake_host, fake_executor):
    job, ref = fakes.running_job(fake_host, fake_executor)
    fake_executor.logs_fail_next = [ContainerNotFoundError("Container is gone")]

    assert queue_manager.finish_job(job, ExitStatus(ref, 0), worker_id="w1")

    row = stored(job)
    assert (row.status, row.exit_code, row.error_code) == (
        JobStatus.COMPLETED,
        0,
        "LOGS_UNAVAILABLE",
    )
    assert "could not be read" in row.last_error


def test_a_failed_end_whose_output_is_gone_keeps_its_exit_error(fake_host, fake_executor):
    job, ref = fakes.running_job(fake_host, fake_executor)
    fake_executor.logs_fail_next = [ContainerNotFoundError("Container is gone")]

    queue_manager.finish_job(job, ExitStatus(ref, 3), worker_id="w1")

    row = stored(job)
    assert (row.status, row.error_code) == (JobStatus.FAILED, "CONTAINER_EXIT_NONZERO")
    assert row.last_error.startswith("Exited with code 3. The output could not be read")
