"""On the real engine and real PostgreSQL: one clean-up pass removes exactly the leftovers.

Containers are made the way a worker makes them (``executor.launch`` of a
job's attempt: the project's name and labels), then left behind as faults
leave them; the engine itself, listed by label with the SDK, says which are
gone after one :meth:`Sweeper.sweep`.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from container_manager.executors import close_executors, get_executor
from container_manager.executors.base import LABEL_ATTEMPT, LABEL_JOB, LaunchSpec
from container_manager.models import ContainerJob
from container_manager.queue import queue_manager
from container_manager.states import JobStatus
from container_manager.worker.state import WorkerState
from container_manager.worker.sweeper import Sweeper
from tests.acceptance.worker_process import make_docker_host, wait_until
from tests.docker_fixtures import RUN_ID, RUN_LABEL, TEST_IMAGE

pytestmark = [pytest.mark.docker, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WAIT_SECONDS = 30


@pytest.fixture
def host(docker_engine):
    yield make_docker_host()
    close_executors()


def on_engine(docker_engine, job_ids):
    """(job id, attempt, state) of every container of ``job_ids``, as the engine lists them."""
    rows = docker_engine.api.containers(all=True, filters={"label": f"{RUN_LABEL}={RUN_ID}"})
    found = set()
    for row in rows:
        job_id = int(row["Labels"][LABEL_JOB])
        if job_id in job_ids:
            found.add((job_id, int(row["Labels"][LABEL_ATTEMPT]), row["State"]))
    return found


def job_in(host, status, attempt, command="sleep 300", **fields):
    """A job row of ``host`` put straight into ``status`` at ``attempt``."""
    job = ContainerJob.objects.create(
        command=command, is_shell_command=True, host=host, image=TEST_IMAGE
    )
    rows = ContainerJob.objects.filter(pk=job.pk)
    rows.update(status=JobStatus.QUEUED)
    rows.update(status=JobStatus.VALIDATING, attempt=attempt, worker_id="w-other")
    rows.update(status=JobStatus.RUNNING, lease_expires_at=timezone.now() + timedelta(hours=1))
    if status != JobStatus.RUNNING:
        rows.update(status=status, **fields)
    job.refresh_from_db()
    return job


def launch(host, job, attempt=None):
    """Start the container of one attempt of ``job`` as a worker does."""
    spec = LaunchSpec.from_job(job)
    if attempt is not None:
        spec = LaunchSpec(**{**spec.__dict__, "attempt": attempt})
    return get_executor(host).launch(spec)


def ended(docker_engine, ref):
    return docker_engine.api.inspect_container(ref.container_id)["State"]["Status"] == "exited"


def test_one_pass_removes_the_leftovers_and_leaves_the_current_attempt(host, docker_engine):
    # The job was deleted while its container ran.
    deleted = job_in(host, JobStatus.RUNNING, attempt=1)
    launch(host, deleted)
    deleted_id = deleted.pk
    ContainerJob.objects.filter(pk=deleted_id).delete()
    # Attempt 1 was given up for lost and attempt 2 started: both run.
    rerun = job_in(host, JobStatus.RUNNING, attempt=2)
    launch(host, rerun, attempt=1)
    launch(host, rerun)
    # A job that runs its only attempt, held by a live worker.
    current = job_in(host, JobStatus.RUNNING, attempt=1)
    launch(host, current)
    # A completed job whose output is stored: its worker died before removing it.
    done = job_in(host, JobStatus.RUNNING, attempt=1, command="echo done")
    done_ref = launch(host, done)
    wait_until(lambda: ended(docker_engine, done_ref), WAIT_SECONDS, what="echo to exit")
    with override_settings(CONTAINER_MANAGER={"CONTAINER_RETENTION": "keep"}):
        status = queue_manager.containers.wait_finished(host, [done_ref], WAIT_SECONDS)
        assert queue_manager.finish_job(done, status[0])
    done.refresh_from_db()
    assert (done.status, done.stdout) == (JobStatus.COMPLETED, "done\n")
    # A job cancelled long ago whose killed container's end nobody recorded.
    cancelled = job_in(host, JobStatus.RUNNING, attempt=1, command="echo bye; exit 3")
    cancelled_ref = launch(host, cancelled)
    wait_until(lambda: ended(docker_engine, cancelled_ref), WAIT_SECONDS, what="exit 3")
    ContainerJob.objects.filter(pk=cancelled.pk).update(
        status=JobStatus.CANCELLED,
        completed_at=timezone.now() - timedelta(minutes=10),
        worker_id="",
        lease_expires_at=None,
    )
    ids = {deleted_id, rerun.pk, current.pk, done.pk, cancelled.pk}
    before = on_engine(docker_engine, ids)
    assert {(j, a) for j, a, _ in before} == {
        (deleted_id, 1),
        (rerun.pk, 1),
        (rerun.pk, 2),
        (current.pk, 1),
        (done.pk, 1),
        (cancelled.pk, 1),
    }
    part = Sweeper(queue_manager, queue_manager.containers, WorkerState("w-sweep"))

    with override_settings(CONTAINER_MANAGER={"CONTAINER_RETENTION": "remove"}):
        part.sweep()

    assert on_engine(docker_engine, ids) == {
        (rerun.pk, 2, "running"),
        (current.pk, 1, "running"),
    }
    cancelled.refresh_from_db()
    assert (cancelled.status, cancelled.exit_code, cancelled.stdout) == (
        JobStatus.CANCELLED,
        3,
        "bye\n",
    )
    stats = part.state.stats
    # The pass sees the whole shared engine: leftovers of other tests (jobs
    # no row names) go too, so ours are a lower bound; the engine, above, is exact.
    assert stats.containers_removed >= 3
    assert stats.containers_killed >= 2
    assert stats.container_ends_recorded == 1
    for job in (rerun, current):
        queue_manager.containers.stop(job)
