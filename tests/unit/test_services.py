"""job_service: launch results and their classification, finishing, control, legacy processing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from container_manager.exceptions import ExecutorUnavailableError, ImageNotFoundError
from container_manager.executors.base import ContainerRef, ExitStatus
from container_manager.models import ContainerJob
from container_manager.services import job_ref, job_service
from container_manager.states import JobStatus
from tests.unit import fake_executor as fakes

fake_host = fakes.fake_host
fake_executor = fakes.fake_executor

pytestmark = pytest.mark.django_db


def claimed_job(host, **fields):
    job = ContainerJob.objects.create(command="echo hi", host=host, **fields)
    ContainerJob.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED)
    ContainerJob.objects.filter(pk=job.pk).update(
        status=JobStatus.VALIDATING, worker_id="w1", attempt=1
    )
    job.refresh_from_db()
    return job


def running_job(host, executor, **fields):
    job = claimed_job(host, **fields)
    ref = executor.add_container(job.pk, job.attempt)
    job.mark_as_running(container_id=ref.container_id)
    return job, ref


# Launch --------------------------------------------------------------------------


def test_launch_returns_the_container_and_only_records_the_preparing_step(fake_host, fake_executor):
    job = claimed_job(fake_host)

    result = job_service.launch_job(job)

    assert result.success
    assert result.ref == ContainerRef(job.pk, 1, result.container_id)
    assert fake_executor.launches[0].job_id == job.pk
    job.refresh_from_db()
    assert job.status == JobStatus.PREPARING
    assert job.current_step == "Preparing"


def test_launch_records_the_steps_the_executor_reports(fake_host, fake_executor):
    seen = []
    fake_executor.steps = ["pulling", "unknown-step"]
    job = claimed_job(fake_host)
    original = fake_executor.launch

    def launch(spec, on_step=None):
        def record(step):
            on_step(step)
            seen.append(ContainerJob.objects.get(pk=job.pk).status)

        return original(spec, record)

    fake_executor.launch = launch

    assert job_service.launch_job(job).success

    assert seen == [JobStatus.PULLING, JobStatus.PULLING]
    job.refresh_from_db()
    assert (job.status, job.current_step) == (JobStatus.PULLING, "Pulling image")


@pytest.mark.parametrize(
    ("error", "code", "transient"),
    [
        (ExecutorUnavailableError("daemon down"), "DOCKER_NETWORK_ERROR", True),
        (ImageNotFoundError("no such image"), "DOCKER_IMAGE_NOT_FOUND", False),
        (RuntimeError("something odd"), "UNKNOWN_ERROR", None),
        (ConnectionResetError("reset by peer"), "CONNECTION_ERROR", True),
    ],
)
def test_failed_launch_is_caught_and_classified(fake_host, fake_executor, error, code, transient):
    fake_executor.fail_next = [error]
    job = claimed_job(fake_host)

    result = job_service.launch_job(job)

    assert not result.success
    assert (result.error_code, result.transient) == (code, transient)
    assert result.error == str(error)


def test_launch_without_host_is_a_transient_no_host_error(db):
    job = ContainerJob.objects.create(command="echo")

    result = job_service.launch_job(job)

    assert (result.success, result.error_code, result.transient) == (
        False,
        "NO_HOST_AVAILABLE",
        True,
    )


# Finish ----------------------------------------------------------------------------


def test_exit_zero_completes_the_job_with_its_output_and_removes_the_container(
    fake_host, fake_executor
):
    job, ref = running_job(fake_host, fake_executor)

    assert job_service.finish_job(job, ExitStatus(ref, 0), worker_id="w1")

    job.refresh_from_db()
    assert (job.status, job.exit_code, job.progress) == (JobStatus.COMPLETED, 0, 100)
    assert (job.stdout, job.stderr) == ("out\n", "err\n")
    assert (job.worker_id, job.lease_expires_at) == ("", None)
    assert fake_executor.removed == [ref.container_id]


@override_settings(CONTAINER_MANAGER={"CONTAINER_RETENTION": "keep_failed"})
def test_nonzero_exit_fails_the_job_and_keep_failed_keeps_the_container(fake_host, fake_executor):
    job, ref = running_job(fake_host, fake_executor)

    job_service.finish_job(job, ExitStatus(ref, 3))

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

    job_service.finish_job(job, ExitStatus(ref, 137, is_oom_killed=True))

    job.refresh_from_db()
    assert (job.status, job.error_code) == (JobStatus.FAILED, "CONTAINER_OOM_KILLED")


@override_settings(CONTAINER_MANAGER={"LOG_MAX_BYTES": 2, "CONTAINER_RETENTION": "keep"})
def test_logs_are_read_with_the_configured_cap_and_keep_retention_keeps(fake_host, fake_executor):
    job, ref = running_job(fake_host, fake_executor)

    job_service.finish_job(job, ExitStatus(ref, 0))

    assert fake_executor.logs_max_bytes == [2]
    assert ContainerJob.objects.get(pk=job.pk).stdout == "ou"
    assert fake_executor.removed == []


def test_finish_leaves_a_cancelled_job_cancelled(fake_host, fake_executor):
    job, ref = running_job(fake_host, fake_executor)
    ContainerJob.objects.get(pk=job.pk).mark_as_cancelled()

    assert not job_service.finish_job(job, ExitStatus(ref, 0))

    assert ContainerJob.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def test_finish_by_a_worker_that_lost_the_job_writes_nothing(fake_host, fake_executor):
    job, ref = running_job(fake_host, fake_executor)

    assert not job_service.finish_job(job, ExitStatus(ref, 0), worker_id="someone-else")

    assert ContainerJob.objects.get(pk=job.pk).status == JobStatus.RUNNING


def test_timeout_kills_and_records_the_timeout(fake_host, fake_executor):
    job, ref = running_job(fake_host, fake_executor)

    assert job_service.timeout_job(job, ref)

    job.refresh_from_db()
    assert (job.status, job.error_code) == (JobStatus.TIMEOUT, "SYSTEM_TIMEOUT")
    assert fake_executor.killed == [ref.container_id]
    assert job.stdout == "out\n"


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
        job_service.finish_job(ContainerJob.objects.get(pk=job.pk), ExitStatus(killing, 137))

    fake_executor.kill = record
    assert job_service.timeout_job(job, ref)
    assert seen == [JobStatus.TIMEOUT]
    stored = ContainerJob.objects.get(pk=job.pk)
    assert (stored.status, stored.exit_code) == (JobStatus.TIMEOUT, 137)


# Control ------------------------------------------------------------------------------


def test_stop_pause_and_resume_act_on_the_container_of_the_current_attempt(
    fake_host, fake_executor
):
    job, ref = running_job(fake_host, fake_executor)

    assert job_service.pause_container(job)
    assert job_service.resume_container(job)
    assert job_service.stop_container(job)

    assert fake_executor.paused == fake_executor.resumed == fake_executor.killed
    assert fake_executor.killed == [ref.container_id]


def test_stop_finds_the_container_by_labels_when_the_job_has_no_id(fake_host, fake_executor):
    job = claimed_job(fake_host)
    ref = fake_executor.add_container(job.pk, 1)

    assert job_service.stop_container(job)
    assert fake_executor.killed == [ref.container_id]


def test_stop_without_container_does_nothing(fake_host, fake_executor):
    job = claimed_job(fake_host)

    assert not job_service.stop_container(job)
    assert fake_executor.killed == []


def test_job_ref_is_the_current_attempt():
    job = ContainerJob(pk=4, attempt=2, container_id="abc")
    assert job_ref(job) == ContainerRef(4, 2, "abc")


# Legacy processing ------------------------------------------------------------------------


def test_process_job_finishes_a_running_job_whose_container_ended(fake_host, fake_executor):
    job, ref = running_job(fake_host, fake_executor)
    fake_executor.end(ref, 0)

    result = job_service.process_job(job)

    assert (result.success, result.detail, result.status) == (True, "finished", "completed")


def test_process_job_leaves_a_running_container_running(fake_host, fake_executor):
    job, _ = running_job(fake_host, fake_executor)

    result = job_service.process_job(job)

    assert (result.success, result.detail) == (True, "still running")
    assert ContainerJob.objects.get(pk=job.pk).status == JobStatus.RUNNING


def test_process_job_times_out_a_job_past_its_timeout(fake_host, fake_executor):
    job, ref = running_job(fake_host, fake_executor, timeout_seconds=5)
    ContainerJob.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(seconds=10))
    job.refresh_from_db()

    result = job_service.process_job(job)

    assert (result.success, result.status) == (True, JobStatus.TIMEOUT)
    assert fake_executor.killed == [ref.container_id]


def test_process_job_fails_a_running_job_whose_container_is_gone(fake_host, fake_executor):
    job = claimed_job(fake_host)
    job.mark_as_running()

    result = job_service.process_job(job)

    assert not result.success
    assert "gone" in result.error
    assert ContainerJob.objects.get(pk=job.pk).status == JobStatus.FAILED


def test_process_job_reports_terminal_jobs_without_touching_them(fake_host):
    job = ContainerJob.objects.create(command="echo", host=fake_host)
    job.mark_as_cancelled()

    result = job_service.process_job(job)

    assert (result.success, result.detail) == (True, "nothing to do")
