"""On the real engine: a start call that fails on our side after the engine started the
container never leads to a second attempt beside it."""

from __future__ import annotations

import pytest
import requests

from container_manager.exceptions import ExecutorUnavailableError
from container_manager.executors import close_executors, get_executor
from container_manager.executors.base import LABEL_ATTEMPT, LABEL_JOB
from container_manager.models import ContainerJob, ExecutorHost
from container_manager.queue import queue_manager
from container_manager.states import LAUNCHING_STATUSES, JobStatus
from tests.docker_fixtures import DOCKER_URL, RUN_ID, TEST_IMAGE

pytestmark = [pytest.mark.docker, pytest.mark.postgres, pytest.mark.django_db]

WAIT_SECONDS = 20


@pytest.fixture
def host(docker_engine):
    row = ExecutorHost.objects.create(
        name=f"outcomes-{RUN_ID}",
        executor_type="docker",
        connection_string=DOCKER_URL,
        executor_config={"default_network": "none"},
        auto_pull_images=False,
    )
    yield row
    close_executors()


def containers_by_attempt(docker_engine, job_id):
    rows = docker_engine.api.containers(all=True, filters={"label": f"{LABEL_JOB}={job_id}"})
    return sorted(int(row["Labels"][LABEL_ATTEMPT]) for row in rows)


def claimed(host, command):
    job = ContainerJob.objects.create(
        command=command, is_shell_command=True, host=host, image=TEST_IMAGE
    )
    queue_manager.queue_job(job)
    [job] = queue_manager.claim_jobs("w-outcomes", 1)
    return job


def start_then_time_out(executor, monkeypatch):
    """The start call reaches the engine, then our side gives up waiting for its answer."""
    real_start = executor._client().api.start

    def start(container_id, *args, **kwargs):
        real_start(container_id, *args, **kwargs)
        raise requests.exceptions.ReadTimeout("Read timed out. (read timeout=10.0)")

    monkeypatch.setattr(executor._client().api, "start", start)


def test_a_start_that_timed_out_after_the_engine_started_the_container_is_followed(
    host, docker_engine, monkeypatch
):
    job = claimed(host, "echo once")
    executor = get_executor(host)
    start_then_time_out(executor, monkeypatch)

    outcome = queue_manager.launch_claimed(job)

    assert outcome.success, outcome.error
    job.refresh_from_db()
    assert (job.status, job.attempt, job.retry_count) == (JobStatus.RUNNING, 1, 0)
    assert containers_by_attempt(docker_engine, job.pk) == [1]
    ref = queue_manager.containers.current_ref(job)
    [ended] = executor.wait_finished([ref], WAIT_SECONDS)
    assert queue_manager.finish_job(job, ended)
    job.refresh_from_db()
    assert (job.status, job.stdout) == (JobStatus.COMPLETED, "once\n")


def test_a_start_that_timed_out_while_the_host_cannot_be_asked_waits_for_the_rescue(
    host, docker_engine, monkeypatch
):
    job = claimed(host, "sleep 1; echo once")
    executor = get_executor(host)
    start_then_time_out(executor, monkeypatch)
    real_find = executor.find
    answers = iter([ExecutorUnavailableError("Docker inspect failed: daemon restarting")])

    def find(job_id, attempt):
        for error in answers:
            raise error
        return real_find(job_id, attempt)

    monkeypatch.setattr(executor, "find", find)

    outcome = queue_manager.launch_claimed(job)

    assert not outcome.success
    assert not outcome.retry_scheduled
    job.refresh_from_db()
    # Still in its launch (validating: it failed before preparing was due to be written).
    assert job.status in LAUNCHING_STATUSES
    assert job.retry_count == 0
    # The host answers again: the rescue adopts the container the engine did start.
    [expired] = queue_manager.expired_jobs()
    assert queue_manager.containers.find(expired) is not None
    assert containers_by_attempt(docker_engine, job.pk) == [1]
