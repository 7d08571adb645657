"""The queue's record of a container's end: exit codes, output, retention, timeouts."""

from __future__ import annotations

import pytest
from django.test import override_settings

from container_manager.exceptions import ExecutorError
from container_manager.executors.base import ExitStatus
from container_manager.models import ContainerJob
from container_manager.queue import queue_manager
from container_manager.states import JobStatus
from tests.unit import fake_executor as fakes

fake_host = fakes.fake_host
fake_executor = fakes.fake_executor

pytestmark = pytest.mark.django_db

claimed_job = fakes.claimed_job
running_job = fakes.running_job


# Finish ----------------------------------------------------------------------------


def test_exit_zero_completes_the_job_with_its_output_and_removes_the_container(
    fake_host, fake_executor
):
    job, ref = running_job(fake_host, fake_executor)

    assert queue_manager.finish_job(job, ExitStatus(ref, 0), worker_id="w1")

    job.refresh_from_db()
    assert (job.status, job.exit_code, job.progress) == (JobStatus.COMPLETED, 0, 100)
    assert (job.stdout, job.stderr) == ("out\n", "err\n")
    assert (job.worker_id, job.lease_expires_at) == ("", None)
    assert fake_executor.removed == [ref.container_id]


@override_settings(CONTAINER_MANAGER={"CONTAINER_RETENTION": "keep_failed"})
def test_nonzero_exit_fails_the_job_and_keep_failed_keeps_the_container(fake_host, fake_executor):
    job, ref = running_job(fake_host, fake_executor)

    queue_manager.finish_job(job, ExitStatus(ref, 3))

    job.refresh_from_db()
    assert (job.status, job.exit_code, job.error_code) == (
        JobStatus.FAILED,
        3,
        "CONTAINER_EXIT_NONZERO",
    )
    assert job.last_error == "Exited with code 3"
    assert fake_executor.removed == []


def test_oom_killed_container_fails_with_its_own_code(fake_host, fake_executor):
    job, ref = running_job(fake_host, fake_executor)

    queue_manager.finish_job(job, ExitStatus(ref, 137, is_oom_killed=True))

    job.refresh_from_db()
    assert (job.status, job.error_code) == (JobStatus.FAILED, "CONTAINER_OOM_KILLED")


@override_settings(CONTAINER_MANAGER={"LOG_MAX_BYTES": 2, "CONTAINER_RETENTION": "keep"})
def test_logs_are_read_with_the_configured_cap_and_keep_retention_keeps(fake_host, fake_executor):
    job, ref = running_job(fake_host, fake_executor)

    queue_manager.finish_job(job, ExitStatus(ref, 0))

    assert fake_executor.logs_max_bytes == [2]
    assert ContainerJob.objects.get(pk=job.pk).stdout == "ou"
    assert fake_executor.removed == []


def test_finish_leaves_a_cancelled_job_cancelled(fake_host, fake_executor):
    job, ref = running_job(fake_host, fake_executor)
    ContainerJob.objects.get(pk=job.pk).mark_as_cancelled()

    assert not queue_manager.finish_job(job, ExitStatus(ref, 0))

    assert ContainerJob.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def test_finish_by_a_worker_that_lost_the_job_writes_nothing(fake_host, fake_executor):
    job, ref = running_job(fake_host, fake_executor)

    assert not queue_manager.finish_job(job, ExitStatus(ref, 0), worker_id="someone-else")

    assert ContainerJob.objects.get(pk=job.pk).status == JobStatus.RUNNING


def test_timeout_kills_and_records_the_timeout(fake_host, fake_executor):
    job, ref = running_job(fake_host, fake_executor)

    assert queue_manager.timeout_job(job, ref)

    job.refresh_from_db()
    assert (job.status, job.error_code) == (JobStatus.TIMEOUT, "SYSTEM_TIMEOUT")
    assert fake_executor.killed == [ref.container_id]
    assert fake_executor.removed == [], "the container stays until its end brings the output"


def test_a_timed_out_job_gets_its_output_from_its_end_even_after_an_outage(
    fake_host, fake_executor
):
    job, ref = running_job(fake_host, fake_executor)
    assert queue_manager.timeout_job(job, ref)
    fake_executor.logs_fail_next.append(ExecutorError("engine unreachable", transient=True))

    with pytest.raises(ExecutorError):
        queue_manager.finish_job(ContainerJob.objects.get(pk=job.pk), ExitStatus(ref, 137))
    assert fake_executor.removed == []
    queue_manager.finish_job(ContainerJob.objects.get(pk=job.pk), ExitStatus(ref, 137))

    stored = ContainerJob.objects.get(pk=job.pk)
    assert (stored.status, stored.exit_code, stored.stdout) == (JobStatus.TIMEOUT, 137, "out\n")
    assert stored.error_code == "SYSTEM_TIMEOUT"
    assert fake_executor.removed == [ref.container_id]


def test_timeout_is_recorded_before_the_kill_so_the_end_cannot_win_as_a_failure(
    fake_host, fake_executor
):
    job, ref = running_job(fake_host, fake_executor)
    seen = []
    kill = fake_executor.kill

    def record(killing):
        seen.append(ContainerJob.objects.get(pk=job.pk).status)
        kill(killing)
        # What the follower does when the killed container's end arrives.
        queue_manager.finish_job(ContainerJob.objects.get(pk=job.pk), ExitStatus(killing, 137))

    fake_executor.kill = record
    assert queue_manager.timeout_job(job, ref)
    assert seen == [JobStatus.TIMEOUT]
    stored = ContainerJob.objects.get(pk=job.pk)
    assert (stored.status, stored.exit_code) == (JobStatus.TIMEOUT, 137)


def test_a_completed_job_does_not_keep_the_error_of_an_earlier_attempt(fake_host, fake_executor):
    job, ref = running_job(fake_host, fake_executor)
    ContainerJob.objects.filter(pk=job.pk).update(
        error_code="WORKER_LOST", last_error="Attempt 0 was lost with its worker"
    )
    job.refresh_from_db()

    assert queue_manager.finish_job(job, ExitStatus(ref, 0))

    stored = ContainerJob.objects.get(pk=job.pk)
    assert (stored.status, stored.error_code, stored.last_error) == (JobStatus.COMPLETED, "", "")
    assert stored.last_error_at is None


# Several ends at once ----------------------------------------------------------------


def test_several_ends_are_written_in_one_transaction_with_one_wake_up(
    fake_host, fake_executor, django_capture_on_commit_callbacks
):
    ran = [running_job(fake_host, fake_executor) for _ in range(3)]
    ends = [(job, ExitStatus(ref, code)) for (job, ref), code in zip(ran, (0, 0, 2), strict=True)]

    with django_capture_on_commit_callbacks() as callbacks:
        outcome = queue_manager.finish_jobs(ends, worker_id="w1")

    assert outcome.written == {job.pk for job, _ in ran}
    assert outcome.failed == {}
    stored = {j.pk: (j.status, j.exit_code) for j in ContainerJob.objects.all()}
    assert [stored[job.pk] for job, _ in ran] == [
        (JobStatus.COMPLETED, 0),
        (JobStatus.COMPLETED, 0),
        (JobStatus.FAILED, 2),
    ]
    # One commit for the three: one callback (the wake-up of this process's waiters).
    assert len(callbacks) == 1
    assert sorted(fake_executor.removed) == sorted(ref.container_id for _, ref in ran)


def test_an_end_whose_output_cannot_be_read_now_is_left_out_and_the_others_written(
    fake_host, fake_executor
):
    (first, first_ref), (second, second_ref) = [
        running_job(fake_host, fake_executor) for _ in range(2)
    ]
    fake_executor.logs_fail_next.append(ExecutorError("engine unreachable", transient=True))

    outcome = queue_manager.finish_jobs(
        [(first, ExitStatus(first_ref, 0)), (second, ExitStatus(second_ref, 0))], worker_id="w1"
    )

    assert outcome.written == {second.pk}
    assert list(outcome.failed) == [first.pk]
    assert ContainerJob.objects.get(pk=first.pk).status == JobStatus.RUNNING
    assert ContainerJob.objects.get(pk=second.pk).status == JobStatus.COMPLETED
    # Nothing of the unread one is removed: its output is not stored yet.
    assert fake_executor.removed == [second_ref.container_id]
