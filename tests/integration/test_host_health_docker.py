"""An engine that goes away costs jobs no retries: on real PostgreSQL and the real engine.

The host starts out on a TCP port nobody listens on (the engine is "down"),
then is pointed at the real engine's socket (it is "back").
"""

from __future__ import annotations

import socket
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from container_manager.executors import close_executors
from container_manager.models import ContainerJob, ExecutorHost
from container_manager.models.host import HealthStatus
from container_manager.queue import queue_manager
from container_manager.states import JobStatus
from container_manager.worker.hosts import HostMonitor
from container_manager.worker.rescuer import Rescuer
from container_manager.worker.state import WorkerState
from tests.acceptance.worker_process import wait_until
from tests.docker_fixtures import DOCKER_URL, RUN_ID, TEST_IMAGE
from tests.unit.test_worker import Running

pytestmark = [pytest.mark.docker, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WAIT_SECONDS = 60


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def host(docker_engine):
    row = ExecutorHost.objects.create(
        name=f"health-{RUN_ID}",
        executor_type="docker",
        connection_string=f"tcp://127.0.0.1:{closed_port()}",
        executor_config={"default_network": "none"},
        auto_pull_images=False,
        max_concurrent_jobs=20,
    )
    yield row
    close_executors()


def queued(n, **fields):
    jobs = []
    for i in range(n):
        job = ContainerJob.objects.create(
            command=f"echo job-{i}", image=TEST_IMAGE, max_retries=3, **fields
        )
        queue_manager.queue_job(job)
        jobs.append(job)
    return jobs


def engine_back(host):
    ExecutorHost.objects.filter(pk=host.pk).update(connection_string=DOCKER_URL)
    host.refresh_from_db()


def rows(jobs):
    return list(ContainerJob.objects.filter(pk__in=[j.pk for j in jobs]).order_by("pk"))


def test_claims_stop_for_a_dead_engine_and_resume_when_it_answers(host):
    jobs = queued(6, host=host)
    first = queue_manager.claim_jobs("w-a", 3)
    assert len(first) == 3

    outcomes = [queue_manager.launch_claimed(job) for job in first]

    assert {o.error_code for o in outcomes} == {"HOST_UNAVAILABLE"}
    host.refresh_from_db()
    assert host.health_status == HealthStatus.UNHEALTHY
    assert host.health_error
    assert host.last_health_check_at is not None
    # No worker claims for the dead host: the other three wait in the queue.
    assert queue_manager.claim_jobs("w-b", 10) == []
    assert [j.retry_count for j in rows(jobs)] == [0] * 6
    assert sorted(j.status for j in rows(jobs)).count(JobStatus.QUEUED) == 3

    engine_back(host)
    checks = HostMonitor(queue_manager, WorkerState("w-checks"))
    assert checks.check_due(timezone.now() + timedelta(seconds=1.1)) == 1
    host.refresh_from_db()
    assert (host.health_status, host.health_error) == (HealthStatus.HEALTHY, "")

    # The jobs left mid-launch are settled by the rescue now that the host answers.
    rescuer = Rescuer(
        queue_manager,
        queue_manager.containers,
        WorkerState("w-rescue"),
        free_slots=lambda: 10,
        known_job_ids=set,
        relaunch=lambda job: None,
        follow=lambda job, ref: None,
    )
    assert rescuer.rescue(10) == 3
    again = queue_manager.claim_jobs("w-b", 10)
    assert len(again) == 6
    for job in again:
        assert queue_manager.launch_claimed(job).success
    assert [j.retry_count for j in rows(jobs)] == [0] * 6
    for job in again:
        queue_manager.containers.stop(job)


def test_unpinned_jobs_go_to_a_healthy_host_while_the_other_is_down(host, docker_engine):
    ExecutorHost.objects.create(
        name=f"alive-{RUN_ID}",
        executor_type="docker",
        connection_string=DOCKER_URL,
        executor_config={"default_network": "none"},
        auto_pull_images=False,
        weight=1,
    )
    queue_manager.record_host_health(host, False, "refused")
    queued(4)

    claimed = queue_manager.claim_jobs("w-a", 10)

    assert [job.host.name for job in claimed] == [f"alive-{RUN_ID}"] * 4
    for job in claimed:
        queue_manager.release_job(job, "w-a", "test over")


def test_a_worker_waits_out_an_engine_outage_without_spending_retries(host):
    jobs = queued(8, host=host)
    running = Running(worker_id="w-outage", max_concurrent=4, lease_seconds=3)
    try:
        wait_until(
            lambda: ExecutorHost.objects.get(pk=host.pk).health_status == HealthStatus.UNHEALTHY,
            WAIT_SECONDS,
        )
        time.sleep(3)  # several claim rounds and re-checks while the engine is down
        during = rows(jobs)
        assert [j.retry_count for j in during] == [0] * 8
        assert not [j for j in during if j.status in (JobStatus.FAILED, JobStatus.RETRYING)]
        # At most one batch reached the dead engine; the rest waited in the queue.
        assert max(j.attempt for j in during) == 1
        assert sum(j.attempt for j in during) <= 4
        assert sum(j.status == JobStatus.QUEUED for j in during) >= 4

        engine_back(host)
        wait_until(lambda: all(j.status == JobStatus.COMPLETED for j in rows(jobs)), WAIT_SECONDS)
    finally:
        running.stop()
    done = rows(jobs)
    assert [j.retry_count for j in done] == [0] * 8
    assert [j.stdout for j in done] == [f"job-{i}\n" for i in range(8)]
    host.refresh_from_db()
    assert host.health_status == HealthStatus.HEALTHY
