"""Host health: an unreachable host is the host's fault, not the job's.

The engine here is really unreachable: a Docker host on a unix socket that
does not exist, or on a TCP port nobody listens on.
"""

from __future__ import annotations

import logging
import socket
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from container_manager.exceptions import ExecutorUnavailableError
from container_manager.executors import close_executors, get_executor, register_executor
from container_manager.models import ContainerJob, ExecutorHost
from container_manager.models.host import HealthStatus
from container_manager.queue import queue_manager
from container_manager.queue.hosts import recheck_delay
from container_manager.states import JobStatus
from container_manager.worker.heartbeat import Heartbeat
from container_manager.worker.hosts import HostMonitor
from container_manager.worker.state import WorkerState
from tests.unit.fake_executor import FakeExecutor

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _executors():
    register_executor("fake", FakeExecutor)
    yield
    close_executors()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(params=["unix", "tcp"])
def dead_url(request, tmp_path) -> str:
    if request.param == "unix":
        return f"unix://{tmp_path}/nobody-listens.sock"
    return f"tcp://127.0.0.1:{closed_port()}"


def dead_host(url, name="dead", **fields):
    return ExecutorHost.objects.create(
        name=name, executor_type="docker", connection_string=url, **fields
    )


def fake_host(name="fake"):
    return ExecutorHost.objects.create(name=name, executor_type="fake", max_concurrent_jobs=50)


def queued(n=1, **fields):
    jobs = []
    for _ in range(n):
        job = ContainerJob.objects.create(command="echo hi", max_retries=3, **fields)
        queue_manager.queue_job(job)
        jobs.append(job)
    return jobs


def mark_unhealthy(host, seconds_ago=0.0):
    at = timezone.now() - timedelta(seconds=seconds_ago)
    assert queue_manager.record_host_health(host, False, "refused", now=at)


# A launch that cannot reach its host ------------------------------------------


def test_a_launch_on_an_unreachable_host_spends_no_retry_and_marks_the_host(dead_url):
    host = dead_host(dead_url)
    queued(3, host=host)
    jobs = queue_manager.claim_jobs("w1", 3)
    assert len(jobs) == 3

    outcomes = [queue_manager.launch_claimed(job) for job in jobs]

    assert {o.error_code for o in outcomes} == {"HOST_UNAVAILABLE"}
    assert not any(o.retry_scheduled for o in outcomes)
    for job in ContainerJob.objects.filter(pk__in=[j.pk for j in jobs]):
        assert job.retry_count == 0
        assert job.status not in (JobStatus.FAILED, JobStatus.RETRYING)
        assert job.error_code == "HOST_UNAVAILABLE"
        assert "'dead'" in job.last_error
        assert "did not answer" in job.last_error
    host.refresh_from_db()
    assert host.health_status == HealthStatus.UNHEALTHY
    assert host.health_error
    assert host.last_health_check_at is not None


def test_the_outage_is_logged_once_not_per_job(dead_url, caplog):
    host = dead_host(dead_url)
    queued(4, host=host)
    jobs = queue_manager.claim_jobs("w1", 4)
    with caplog.at_level(logging.INFO, logger="container_manager.queue"):
        for job in jobs:
            queue_manager.launch_claimed(job)

    outage = [r for r in caplog.records if "does not answer" in r.getMessage()]
    assert len(outage) == 1


def test_a_network_failure_on_a_host_that_answers_is_the_jobs_failure():
    host = fake_host()
    executor = get_executor(host)
    executor.fail_next.append(ExecutorUnavailableError("connection reset by peer"))
    queued(1, host=host)
    [job] = queue_manager.claim_jobs("w1", 1)

    outcome = queue_manager.launch_claimed(job)

    job.refresh_from_db()
    assert outcome.retry_scheduled
    assert (job.status, job.retry_count) == (JobStatus.RETRYING, 1)
    host.refresh_from_db()
    assert host.health_status == HealthStatus.UNKNOWN


# Claims and unhealthy hosts ---------------------------------------------------


def test_claims_skip_an_unhealthy_host_pinned_jobs_wait_others_go_elsewhere(dead_url):
    dead = dead_host(dead_url, weight=1000)
    fake_host()
    mark_unhealthy(dead)
    pinned = queued(2, host=dead)
    queued(3)

    claimed = queue_manager.claim_jobs("w1", 10)

    assert sorted(job.host.name for job in claimed) == ["fake"] * 3
    assert all(
        j.status == JobStatus.QUEUED
        for j in ContainerJob.objects.filter(pk__in=[p.pk for p in pinned])
    )


def test_an_unhealthy_host_nobody_checks_is_claimable_again_after_a_minute(dead_url):
    dead = dead_host(dead_url)
    mark_unhealthy(dead, seconds_ago=61)
    queued(1, host=dead)

    assert [job.host.name for job in queue_manager.claim_jobs("w1", 1)] == ["dead"]


def test_unknown_and_healthy_hosts_are_claimable(dead_url):
    dead = dead_host(dead_url)
    queued(1, host=dead)
    assert len(queue_manager.claim_jobs("w1", 1)) == 1
    assert ExecutorHost.objects.claimable().filter(pk=dead.pk).exists()


# Writing health ---------------------------------------------------------------


def test_record_host_health_says_true_only_to_the_call_that_changed_the_status():
    host = fake_host()
    assert queue_manager.record_host_health(host, False, "refused")
    assert not queue_manager.record_host_health(host, False, "refused again")
    host.refresh_from_db()
    assert (host.health_status, host.health_error) == (HealthStatus.UNHEALTHY, "refused again")
    assert queue_manager.record_host_health(host, True, "ok")
    assert not queue_manager.record_host_health(host, True, "ok")
    host.refresh_from_db()
    assert (host.health_status, host.health_error) == (HealthStatus.HEALTHY, "")


def test_the_backoff_doubles_up_to_thirty_seconds():
    assert [recheck_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]


# Re-checks --------------------------------------------------------------------


def monitor():
    return HostMonitor(queue_manager, WorkerState("w-hosts"))


def test_an_unhealthy_host_is_checked_again_with_backoff(dead_url):
    host = dead_host(dead_url)
    mark_unhealthy(host)
    checks = monitor()
    start = timezone.now()

    assert checks.check_due(start) == 0  # 1 s not passed yet
    assert checks.check_due(start + timedelta(seconds=1.1)) == 1
    host.refresh_from_db()
    stamp = host.last_health_check_at
    assert host.health_status == HealthStatus.UNHEALTHY
    # Two failed checks: the next one waits 2 s after the last.
    assert checks.check_due(stamp + timedelta(seconds=1.5)) == 0
    assert checks.check_due(stamp + timedelta(seconds=2.1)) == 1


def test_a_check_by_another_worker_counts_in_the_backoff(dead_url):
    host = dead_host(dead_url)
    mark_unhealthy(host)
    checks = monitor()
    checks.check_due(timezone.now())  # sees the outage
    later = timezone.now() + timedelta(seconds=5)
    queue_manager.record_host_health(host, False, "refused", now=later)

    assert checks.check_due(later + timedelta(seconds=1.5)) == 0
    assert checks.check_due(later + timedelta(seconds=2.1)) == 1


def test_a_host_that_answers_again_is_healthy_and_gets_jobs():
    host = fake_host()
    mark_unhealthy(host)
    queued(1, host=host)
    assert queue_manager.claim_jobs("w1", 1) == []

    assert monitor().check_due(timezone.now() + timedelta(seconds=1.1)) == 1

    host.refresh_from_db()
    assert (host.health_status, host.health_error) == (HealthStatus.HEALTHY, "")
    assert len(queue_manager.claim_jobs("w1", 1)) == 1


def test_hosts_never_checked_are_checked_once_at_start(dead_url):
    dead = dead_host(dead_url)
    fine = fake_host()
    checks = monitor()

    assert checks.check_due() == 2

    dead.refresh_from_db()
    fine.refresh_from_db()
    assert dead.health_status == HealthStatus.UNHEALTHY
    assert fine.health_status == HealthStatus.HEALTHY
    assert checks.check_due() == 0  # healthy hosts are not polled; the dead one waits 1 s


def test_hosts_without_an_executor_are_not_checked():
    ExecutorHost.objects.create(name="old", executor_type="scaleway")
    assert monitor().check_due() == 0
    assert ExecutorHost.objects.get(name="old").health_status == HealthStatus.UNKNOWN


def test_the_heartbeat_starts_and_stops_the_host_checks():
    checks = monitor()
    beat = Heartbeat(queue_manager, checks.state, 60, monitor=checks)
    beat.start()
    try:
        for _ in range(100):
            if checks.is_alive():
                break
            time.sleep(0.01)
        assert checks.is_alive()
    finally:
        beat.stop()
        beat.join(5)
        checks.join(5)
    assert not checks.is_alive()
