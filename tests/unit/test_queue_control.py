"""Pause, resume and cancel of queues, hosts and jobs (container layer faked)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from container_manager.exceptions import ContainerStopDeferredError, InvalidStateTransition
from container_manager.models import ContainerJob, ExecutorHost, JobQueue
from container_manager.states import JobStatus
from tests.unit import test_queue as queue_fixtures
from tests.unit.test_queue import make_host, make_job, queued, snapshot

pytestmark = pytest.mark.django_db

# The `service` and `manager` fixtures come from tests/unit/test_queue.py.
service = queue_fixtures.service
manager = queue_fixtures.manager


def running_job(manager):
    [job] = queued()
    assert manager.launch_job(job)["success"] is True
    return job


def test_pause_queue_stops_its_jobs_from_being_claimed_until_resumed(manager):
    make_host()
    [job] = queued(queue="reports")
    row = manager.pause_queue("reports")
    assert JobQueue.objects.get(name="reports").is_paused is True
    assert row.is_paused is True
    assert manager.claim_jobs("w1", 5) == []
    manager.resume_queue("reports")
    assert [j.pk for j in manager.claim_jobs("w1", 5)] == [job.pk]


@pytest.mark.parametrize("name", ["", "   ", None])
def test_pause_queue_refuses_an_empty_name(manager, name):
    with pytest.raises(ValueError, match="non-empty"):
        manager.pause_queue(name)
    assert JobQueue.objects.count() == 0


def test_pause_host_by_instance_or_name_stops_new_jobs_there(manager):
    host = make_host("h1")
    [job] = queued(host=host)
    manager.pause_host(host)
    assert host.is_paused is True
    assert ExecutorHost.objects.get(pk=host.pk).is_paused is True
    assert manager.claim_jobs("w1", 5) == []
    manager.resume_host("h1")
    assert [j.pk for j in manager.claim_jobs("w1", 5)] == [job.pk]


def test_pause_host_of_an_unknown_host_raises(manager):
    with pytest.raises(ExecutorHost.DoesNotExist, match="No executor host nope"):
        manager.pause_host("nope")


def test_pause_job_of_a_queued_job_is_database_only_and_skips_it(manager, service):
    make_host()
    [job] = queued()
    manager.pause_job(job)
    assert snapshot(job)["status"] == JobStatus.PAUSED
    assert service.calls == []
    assert manager.claim_jobs("w1", 5) == []
    manager.resume_job(job)
    row = snapshot(job)
    assert row["status"] == JobStatus.QUEUED
    assert service.calls == []
    assert [j.pk for j in manager.claim_jobs("w1", 5)] == [job.pk]


def test_resume_job_keeps_the_place_in_the_queue(manager):
    [job] = queued()
    queued_at = snapshot(job)["queued_at"]
    manager.pause_job(job)
    manager.resume_job(job)
    assert snapshot(job)["queued_at"] == queued_at


def test_pause_and_resume_of_a_running_job_act_on_its_container(manager, service):
    make_host()
    job = running_job(manager)
    manager.pause_job(job)
    assert snapshot(job)["status"] == JobStatus.PAUSED
    manager.resume_job(job)
    assert snapshot(job)["status"] == JobStatus.RUNNING
    assert service.calls == [("pause", job.pk), ("resume", job.pk)]


def test_pause_job_leaves_the_job_running_when_the_container_cannot_pause(manager, service):
    make_host()
    job = running_job(manager)

    def refuse(_job):
        raise RuntimeError("cannot pause")

    service.pause = refuse
    with pytest.raises(RuntimeError, match="cannot pause"):
        manager.pause_job(job)
    assert snapshot(job)["status"] == JobStatus.RUNNING


@pytest.mark.parametrize(
    "status", [JobStatus.PENDING, JobStatus.VALIDATING, JobStatus.COMPLETED, JobStatus.FAILED]
)
def test_pause_job_refuses_other_states_and_changes_nothing(manager, service, status):
    job = make_job(status=status)
    before = snapshot(job)
    with pytest.raises(InvalidStateTransition):
        manager.pause_job(job)
    assert snapshot(job) == before
    assert service.calls == []


def test_resume_job_refuses_a_job_that_is_not_paused(manager):
    [job] = queued()
    before = snapshot(job)
    with pytest.raises(InvalidStateTransition, match="only paused jobs"):
        manager.resume_job(job)
    assert snapshot(job) == before


@pytest.mark.parametrize("status", [JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RETRYING])
def test_cancel_job_of_a_waiting_job_is_database_only(manager, service, status):
    job = make_job(status=status)
    manager.cancel_job(job)
    row = snapshot(job)
    assert row["status"] == JobStatus.CANCELLED
    assert row["completed_at"] is not None
    assert service.calls == []


def test_cancel_job_of_a_paused_unlaunched_job_is_database_only(manager, service):
    [job] = queued()
    manager.pause_job(job)
    manager.cancel_job(job)
    assert snapshot(job)["status"] == JobStatus.CANCELLED
    assert service.calls == []


def test_cancel_job_of_a_running_or_paused_running_job_stops_the_container(manager, service):
    make_host()
    first = running_job(manager)
    second = running_job(manager)
    manager.pause_job(second)
    manager.cancel_job(first)
    manager.cancel_job(second)
    assert ("stop", first.pk) in service.calls
    assert ("stop", second.pk) in service.calls
    assert set(
        ContainerJob.objects.filter(pk__in=[first.pk, second.pk]).values_list("status", flat=True)
    ) == {JobStatus.CANCELLED}


def test_cancel_job_is_stored_even_when_the_container_cannot_stop_now(manager, service):
    make_host()
    job = running_job(manager)

    def refuse(_job):
        raise RuntimeError("daemon down")

    service.stop = refuse
    with pytest.raises(ContainerStopDeferredError, match="daemon down") as caught:
        manager.cancel_job(job)
    assert caught.value.job_id == job.pk
    assert snapshot(job)["status"] == JobStatus.CANCELLED


def test_cancel_job_is_written_before_the_container_is_stopped(manager, service):
    make_host()
    job = running_job(manager)
    seen = []
    original = service.stop

    def record(stopping):
        seen.append(ContainerJob.objects.get(pk=stopping.pk).status)
        return original(stopping)

    service.stop = record
    manager.cancel_job(job)
    assert seen == [JobStatus.CANCELLED]


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.CANCELLED, JobStatus.FAILED])
def test_cancel_job_refuses_a_job_that_has_ended(manager, status):
    job = make_job(status=status, completed_at=timezone.now())
    before = snapshot(job)
    with pytest.raises(InvalidStateTransition, match="already ended"):
        manager.cancel_job(job)
    assert snapshot(job) == before
