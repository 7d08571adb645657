"""The container layer: launch results and their classification, finding, control."""

from __future__ import annotations

import pytest

from container_manager.containers import containers, job_ref
from container_manager.exceptions import ExecutorUnavailableError, ImageNotFoundError
from container_manager.executors.base import ContainerRef
from container_manager.models import ContainerJob
from container_manager.queue import queue_manager
from container_manager.states import JobStatus
from tests.unit import fake_executor as fakes

fake_host = fakes.fake_host
fake_executor = fakes.fake_executor

pytestmark = pytest.mark.django_db

claimed_job = fakes.claimed_job
running_job = fakes.running_job


# Launch --------------------------------------------------------------------------


def test_launch_returns_the_container_and_only_records_the_preparing_step(fake_host, fake_executor):
    job = claimed_job(fake_host)

    result = containers.launch(job, on_step=lambda step: queue_manager.record_step(job, step))

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

    assert containers.launch(job, on_step=lambda step: queue_manager.record_step(job, step)).success

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

    result = containers.launch(job)

    assert not result.success
    assert (result.error_code, result.transient) == (code, transient)
    assert result.error == str(error)


def test_launch_without_host_is_a_transient_no_host_error(db):
    job = ContainerJob.objects.create(command="echo")

    result = containers.launch(job)

    assert (result.success, result.error_code, result.transient) == (
        False,
        "NO_HOST_AVAILABLE",
        True,
    )


def test_launch_writes_nothing_itself(fake_host, fake_executor):
    job = claimed_job(fake_host)
    steps = []

    assert containers.launch(job, on_step=steps.append).success

    assert steps == ["preparing"]
    stored = ContainerJob.objects.get(pk=job.pk)
    assert (stored.status, stored.current_step, stored.container_id) == (
        JobStatus.VALIDATING,
        job.current_step,
        "",
    )


# Control ------------------------------------------------------------------------------


def test_stop_pause_and_resume_act_on_the_container_of_the_current_attempt(
    fake_host, fake_executor
):
    job, ref = running_job(fake_host, fake_executor)

    assert containers.pause(job)
    assert containers.resume(job)
    assert containers.stop(job)

    assert fake_executor.paused == fake_executor.resumed == fake_executor.killed
    assert fake_executor.killed == [ref.container_id]


def test_stop_finds_the_container_by_labels_when_the_job_has_no_id(fake_host, fake_executor):
    job = claimed_job(fake_host)
    ref = fake_executor.add_container(job.pk, 1)

    assert containers.stop(job)
    assert fake_executor.killed == [ref.container_id]


def test_stop_without_container_does_nothing(fake_host, fake_executor):
    job = claimed_job(fake_host)

    assert not containers.stop(job)
    assert fake_executor.killed == []


def test_job_ref_is_the_current_attempt():
    job = ContainerJob(pk=4, attempt=2, container_id="abc")
    assert job_ref(job) == ContainerRef(4, 2, "abc")


def test_find_asks_the_host_even_when_the_row_names_a_container(fake_host, fake_executor):
    job, ref = running_job(fake_host, fake_executor)

    assert containers.find(job) == ref
    assert containers.current_ref(job) == ref
    fake_executor.containers.pop((job.pk, job.attempt))
    assert containers.find(job) is None
    assert containers.current_ref(job) == ref  # the recorded id, not looked up
