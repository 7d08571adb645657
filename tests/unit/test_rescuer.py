"""The rescuer on real rows: unhealthy hosts, truthful requeues, local attempts that ended.

Real ``JobQueueManager`` and database rows; the container layer is a small
fake where a Docker engine would be needed, and the real local executor
(real processes) for the local-process cases.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from container_manager.containers import Containers
from container_manager.exceptions import ExecutorError
from container_manager.executors import close_executors, get_executor, local
from container_manager.executors.base import ContainerRef, HealthReport, LaunchSpec
from container_manager.executors.local import LocalProcessExecutor, machine_name
from container_manager.models import ContainerJob, ExecutorHost, Worker
from container_manager.models.host import HealthStatus
from container_manager.queue import JobQueueManager
from container_manager.states import JobStatus
from container_manager.worker.rescuer import Rescuer
from container_manager.worker.state import WorkerState
from tests.docker_fixtures import RUN_ID
from tests.unit.test_executor_local import wait_one

pytestmark = pytest.mark.django_db


@dataclass
class FakeContainers(Containers):
    """The container layer of a Docker host, answered from a dict, or failing."""

    found: dict = field(default_factory=dict)
    find_error: Exception | None = None
    check: HealthReport = field(default_factory=lambda: HealthReport(True, "ok"))
    finds: list = field(default_factory=list)

    def find(self, job):
        self.finds.append(int(job.pk))
        if self.find_error is not None:
            raise self.find_error
        return self.found.get(int(job.pk))

    def check_host(self, host):
        return self.check


def docker_host(**fields) -> ExecutorHost:
    return ExecutorHost.objects.create(
        name=f"rescue-{RUN_ID}-{ExecutorHost.objects.count()}",
        executor_type="docker",
        connection_string="tcp://127.0.0.1:1",
        **fields,
    )


def expired_job(host, status=JobStatus.RUNNING, worker_id="lost", **fields) -> ContainerJob:
    """A job held by ``worker_id`` at attempt 1 whose lease has expired."""
    job = ContainerJob.objects.create(command="true", host=host)
    rows = ContainerJob.objects.filter(pk=job.pk)
    # The way a job gets there (the queryset's update checks each transition).
    for step in (JobStatus.QUEUED, JobStatus.VALIDATING):
        assert rows.update(status=step) == 1
    assert status == JobStatus.VALIDATING or rows.update(status=status) == 1
    rows.update(
        worker_id=worker_id,
        attempt=1,
        lease_expires_at=timezone.now() - timedelta(seconds=5),
        started_at=timezone.now() - timedelta(seconds=10) if status == JobStatus.RUNNING else None,
        **fields,
    )
    job.refresh_from_db()
    return job


def build(queue_manager, containers, relaunch=None, follow=None) -> Rescuer:
    return Rescuer(
        queue_manager,
        containers,
        WorkerState("w-rescue", lease_seconds=30),
        free_slots=lambda: 5,
        known_job_ids=set,
        relaunch=relaunch or (lambda job: None),
        follow=follow or (lambda job, ref: None),
    )


# Unhealthy hosts ---------------------------------------------------------------


def test_jobs_of_an_unhealthy_host_are_skipped_and_said_to_wait_once(caplog):
    host = docker_host(health_status=HealthStatus.UNHEALTHY, health_error="refused")
    jobs = [expired_job(host) for _ in range(3)]
    containers = FakeContainers(find_error=ExecutorError("connection refused"))
    rescuer = build(JobQueueManager(containers=containers), containers)

    with caplog.at_level(logging.WARNING, logger="container_manager.worker.rescuer"):
        assert rescuer.rescue(5) == 0
        assert rescuer.rescue(5) == 0

    assert containers.finds == []
    said = [r for r in caplog.records if "does not answer" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in caplog.records]
    assert "3 job(s)" in said[0].getMessage()
    assert not [r for r in caplog.records if "waits for its host" in r.getMessage()]
    assert {j.status for j in ContainerJob.objects.filter(pk__in=[j.pk for j in jobs])} == {
        JobStatus.RUNNING
    }

    # It answers again: its jobs are looked up (and requeued: no container).
    ExecutorHost.objects.filter(pk=host.pk).update(health_status=HealthStatus.HEALTHY)
    containers.find_error = None
    assert rescuer.rescue(5) == 3
    assert sorted(containers.finds) == sorted(j.pk for j in jobs)

    # A new outage is said again.
    ExecutorHost.objects.filter(pk=host.pk).update(health_status=HealthStatus.UNHEALTHY)
    expired_job(host)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="container_manager.worker.rescuer"):
        assert rescuer.rescue(5) == 0
    assert len([r for r in caplog.records if "does not answer" in r.getMessage()]) == 1


def test_a_host_that_fails_a_look_up_and_its_check_is_recorded_unhealthy_and_skipped(caplog):
    host = docker_host(health_status=HealthStatus.HEALTHY)
    expired_job(host)
    expired_job(host)
    containers = FakeContainers(
        find_error=ExecutorError("connection refused"), check=HealthReport(False, "refused")
    )
    rescuer = build(JobQueueManager(containers=containers), containers)

    with caplog.at_level(logging.WARNING):
        assert rescuer.rescue(5) == 0
        assert rescuer.rescue(5) == 0

    # One look-up, then the host is known to be down.
    assert len(containers.finds) == 1
    host.refresh_from_db()
    assert (host.health_status, host.health_error) == (HealthStatus.UNHEALTHY, "refused")
    assert not [r for r in caplog.records if "waits for its host" in r.getMessage()]


def test_a_look_up_failure_on_a_host_that_answers_its_check_is_logged_per_job(caplog):
    host = docker_host(health_status=HealthStatus.HEALTHY)
    job = expired_job(host)
    containers = FakeContainers(find_error=ExecutorError("no such thing"))
    rescuer = build(JobQueueManager(containers=containers), containers)

    with caplog.at_level(logging.WARNING):
        assert rescuer.rescue(5) == 0

    host.refresh_from_db()
    assert host.health_status == HealthStatus.HEALTHY
    assert [r for r in caplog.records if f"Job {job.pk} waits for its host" in r.getMessage()]


# Truthful requeues -------------------------------------------------------------


def test_a_job_left_for_the_rescue_while_its_host_was_down_is_requeued_saying_so():
    host = docker_host(health_status=HealthStatus.HEALTHY)
    job = expired_job(
        host,
        status=JobStatus.PREPARING,
        worker_id="alive",
        error_code="HOST_UNAVAILABLE",
        last_error="Host did not answer; attempt 1 is settled once the host answers",
    )
    containers = FakeContainers()
    rescuer = build(JobQueueManager(containers=containers), containers)

    assert rescuer.rescue(5) == 1

    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert job.attempt == 1
    # Its worker lived on: the code names the host, not a lost worker.
    assert job.error_code == "HOST_UNAVAILABLE"
    assert "never made" not in job.last_error
    assert "before its container was made" not in job.last_error
    assert f"was launched while host {host.name!r} did not answer" in job.last_error
    assert "the host answers again and has no container of it" in job.last_error


def test_a_lost_job_without_container_is_requeued_without_claiming_none_was_ever_made():
    host = docker_host(health_status=HealthStatus.HEALTHY)
    job = expired_job(host)
    containers = FakeContainers()
    rescuer = build(JobQueueManager(containers=containers), containers)

    assert rescuer.rescue(5) == 1

    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert job.error_code == "WORKER_LOST"
    assert (
        f"has no container on host {host.name!r} (none was made, or it was removed since)"
        in job.last_error
    )


# Local attempts that ended while their worker died ----------------------------


@pytest.fixture
def process_host(tmp_path):
    host = ExecutorHost.objects.create(
        name=f"process-{RUN_ID}-{ExecutorHost.objects.count()}",
        executor_type="process",
        executor_config={"output_dir": str(tmp_path)},
    )
    Worker.objects.create(
        worker_id="dead", hostname=machine_name(), pid=1, last_heartbeat_at=timezone.now()
    )
    yield host
    close_executors()


def run_elsewhere(host, job, command: str) -> ContainerRef:
    """Run attempt 1 to its end in an executor other than the rescuer's (a dead worker's)."""
    other = LocalProcessExecutor(host)
    ref = other.launch(LaunchSpec(int(job.pk), 1, "", ("/bin/sh", "-c", command)))
    wait_one(other, ref)
    return ref


@pytest.mark.skipif(not local.HAS_PROC, reason="needs Linux's /proc")
def test_a_running_local_job_whose_attempt_ended_is_finished_not_requeued(
    process_host, tmp_path, settings
):
    settings.CONTAINER_MANAGER = {"CONTAINER_RETENTION": "remove"}
    witness = tmp_path / "runs"
    job = expired_job(process_host, worker_id="dead")
    ref = run_elsewhere(process_host, job, f"echo ran >> {witness}; echo done-output; exit 0")
    ContainerJob.objects.filter(pk=job.pk).update(container_id=ref.container_id)
    job.refresh_from_db()
    queue_manager = JobQueueManager()
    followed = []
    rescuer = build(queue_manager, queue_manager.containers, follow=lambda j, r: followed.append(r))

    assert rescuer.rescue(5) == 1

    assert followed == [ref]
    executor = get_executor(process_host)
    assert executor.can_follow(ref)
    # What the follower does with it: the normal end.
    (status,) = executor.wait_finished([ref], 5)
    job.refresh_from_db()
    assert job.worker_id == "w-rescue"
    assert queue_manager.finish_job(job, status, worker_id="w-rescue")
    job.refresh_from_db()
    assert (job.status, job.exit_code, job.attempt) == (JobStatus.COMPLETED, 0, 1)
    assert job.stdout == "done-output\n"
    assert witness.read_text() == "ran\n"
    assert not Path(executor._directory_of(ref)).exists()


@pytest.mark.skipif(not local.HAS_PROC, reason="needs Linux's /proc")
def test_a_local_job_caught_in_a_launch_step_whose_attempt_ended_is_launched_without_a_rerun(
    process_host, tmp_path
):
    witness = tmp_path / "runs"
    job = expired_job(process_host, status=JobStatus.PREPARING, worker_id="dead")
    ref = run_elsewhere(process_host, job, f"echo ran >> {witness}; exit 4")
    queue_manager = JobQueueManager()
    launched = []

    def relaunch(held):
        launched.append(queue_manager.launch_claimed(held))

    rescuer = build(queue_manager, queue_manager.containers, relaunch=relaunch)

    assert rescuer.rescue(5) == 1

    assert [outcome.success for outcome in launched] == [True]
    job.refresh_from_db()
    assert (job.status, job.container_id) == (JobStatus.RUNNING, ref.container_id)
    (status,) = get_executor(process_host).wait_finished([ref], 5)
    assert queue_manager.finish_job(job, status, worker_id="w-rescue")
    job.refresh_from_db()
    assert (job.status, job.exit_code, job.attempt) == (JobStatus.FAILED, 4, 1)
    assert witness.read_text() == "ran\n"


@pytest.mark.skipif(not local.HAS_PROC, reason="needs Linux's /proc")
def test_a_local_job_whose_attempt_left_no_exit_file_is_requeued(process_host, tmp_path):
    job = expired_job(process_host, worker_id="dead")
    # Its directory exists (the attempt started) but it did not end by itself.
    (tmp_path / f"{local.container_name(int(job.pk), 1)}-abcdefgh").mkdir()
    queue_manager = JobQueueManager()
    rescuer = build(queue_manager, queue_manager.containers)

    assert rescuer.rescue(5) == 1

    job.refresh_from_db()
    assert (job.status, job.attempt, job.error_code) == (JobStatus.QUEUED, 1, "WORKER_LOST")
    assert socket.gethostname() in job.last_error
    # The lost attempt's output is never stored: its directory goes with the requeue.
    assert not (tmp_path / f"{local.container_name(int(job.pk), 1)}-abcdefgh").exists()
