"""Claims and leases on one database connection: order, limits, host choice, takeover."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from container_manager.models import ContainerJob, JobQueue
from container_manager.queue import queue_manager
from container_manager.states import JobStatus
from tests.unit.test_queue import make_host, make_job, queued, set_queued_at, snapshot

pytestmark = pytest.mark.django_db

claim = queue_manager.claim_jobs


def test_claim_jobs_moves_jobs_to_validating_with_lease_attempt_and_host():
    host = make_host()
    [job] = queued()
    before = timezone.now()
    [claimed] = claim("w1", 5, lease_seconds=30)
    assert claimed.pk == job.pk
    assert (claimed.status, claimed.worker_id, claimed.attempt) == (JobStatus.VALIDATING, "w1", 1)
    assert claimed.host == host
    assert before + timedelta(seconds=29) < claimed.lease_expires_at
    assert claimed.lease_expires_at <= timezone.now() + timedelta(seconds=30)
    assert snapshot(job)["status"] == JobStatus.VALIDATING


def test_claim_jobs_takes_priority_first_then_first_in_first_out():
    make_host()
    jobs = queued(5)
    for job, (priority, age) in zip(
        jobs, [(10, 50), (90, 1), (90, 9), (50, 3), (50, 7)], strict=True
    ):
        ContainerJob.objects.filter(pk=job.pk).update(priority=priority)
        set_queued_at(job, age)
    order = [j.pk for j in claim("w1", 3)] + [j.pk for j in claim("w1", 3)]
    assert order == [jobs[2].pk, jobs[1].pk, jobs[4].pk, jobs[3].pk, jobs[0].pk]


def test_claim_jobs_uses_the_default_lease_setting():
    make_host()
    queued()
    with override_settings(CONTAINER_MANAGER={"LEASE_SECONDS": 600}):
        [job] = claim("w1", 1)
    assert job.lease_expires_at > timezone.now() + timedelta(seconds=590)


def test_claim_jobs_never_returns_a_job_twice():
    make_host()
    queued(3)
    first = claim("w1", 2)
    second = claim("w2", 2)
    assert len(first) == 2
    assert len(second) == 1
    assert not {j.pk for j in first} & {j.pk for j in second}
    assert claim("w3", 2) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", 1), "worker_id"),
        (("w1", -1), "limit must be 0 or more"),
        (("w1", 1, None, 0), "lease_seconds must be positive"),
    ],
)
def test_claim_jobs_refuses_bad_arguments_and_claims_nothing(args, message):
    make_host()
    [job] = queued()
    before = snapshot(job)
    with pytest.raises(ValueError, match=message):
        claim(*args)
    assert snapshot(job) == before


def test_claim_jobs_with_limit_zero_claims_nothing():
    make_host()
    [job] = queued()
    assert claim("w1", 0) == []
    assert snapshot(job)["status"] == JobStatus.QUEUED


def test_claim_jobs_respects_host_capacity_counting_every_workers_jobs():
    host = make_host(max_concurrent_jobs=3)
    make_job(status=JobStatus.RUNNING, host=host, worker_id="other")
    make_job(status=JobStatus.PAUSED, host=host, launched_at=timezone.now())
    # A paused job that never launched holds no slot.
    make_job(status=JobStatus.PAUSED, host=host)
    queued(4)
    assert len(claim("w1", 4)) == 1
    assert claim("w2", 4) == []


def test_claim_jobs_respects_the_queue_row_limit():
    make_host()
    JobQueue.objects.create(name="reports", max_concurrent=2)
    make_job(status=JobStatus.RUNNING, queue="reports")
    queued(3, queue="reports")
    others = queued(2)
    claimed = claim("w1", 10)
    assert Counter(j.queue for j in claimed) == {"reports": 1, "default": 2}
    assert {j.pk for j in others} <= {j.pk for j in claimed}


@override_settings(CONTAINER_MANAGER={"QUEUES": {"reports": {"max_concurrent": 1}}})
def test_claim_jobs_respects_the_queue_limit_setting_and_the_row_overrides_it():
    make_host()
    queued(3, queue="reports")
    assert len(claim("w1", 10)) == 1
    JobQueue.objects.create(name="reports", max_concurrent=2)
    assert len(claim("w1", 10)) == 1
    assert claim("w1", 10) == []


def test_claim_jobs_skips_paused_queues_and_paused_or_inactive_hosts():
    open_host = make_host("open")
    paused_host = make_host("paused", is_paused=True)
    inactive_host = make_host("inactive", is_active=False)
    JobQueue.objects.create(name="held", is_paused=True)
    [in_held_queue] = queued(queue="held")
    [on_paused] = queued(host=paused_host)
    [on_inactive] = queued(host=inactive_host)
    [free] = queued()
    [claimed] = claim("w1", 10)
    assert claimed.pk == free.pk
    assert claimed.host == open_host
    for job in (in_held_queue, on_paused, on_inactive):
        assert snapshot(job)["status"] == JobStatus.QUEUED


def test_claim_jobs_filters_by_queue_names():
    make_host()
    [report] = queued(queue="reports")
    queued(queue="default")
    assert [j.pk for j in claim("w1", 10, queues=["reports"])] == [report.pk]


def test_claim_jobs_without_any_host_claims_nothing():
    [job] = queued()
    assert claim("w1", 1) == []
    assert snapshot(job)["status"] == JobStatus.QUEUED


def test_jobs_without_host_spread_over_hosts_by_weight():
    light = make_host("light", weight=100)
    heavy = make_host("heavy", weight=300)
    queued(8)
    claimed = claim("w1", 8)
    assert Counter(j.host.name for j in claimed) == {heavy.name: 6, light.name: 2}


def test_jobs_without_host_skip_full_hosts():
    full = make_host("full", max_concurrent_jobs=1)
    roomy = make_host("roomy", weight=1)
    make_job(status=JobStatus.RUNNING, host=full)
    queued(2)
    assert {j.host_id for j in claim("w1", 2)} == {roomy.pk}


def test_default_host_setting_routes_jobs_without_a_host():
    make_host("a")
    chosen = make_host("b", max_concurrent_jobs=1)
    queued(2)
    with override_settings(CONTAINER_MANAGER={"DEFAULT_HOST": "b"}):
        claimed = claim("w1", 2)
        assert [j.host_id for j in claimed] == [chosen.pk]
        queue_manager.pause_host(chosen)
        ContainerJob.objects.filter(pk=claimed[0].pk).update(status=JobStatus.RUNNING)
        assert ContainerJob.objects.filter(pk=claimed[0].pk).update(status=JobStatus.COMPLETED)
        assert claim("w1", 2) == []


def test_claim_job_claims_that_job_only_when_ready():
    make_host()
    first, second = queued(2)
    claimed = queue_manager.claim_job(second, "w1")
    assert claimed.pk == second.pk
    assert queue_manager.claim_job(second, "w2") is None
    pending = make_job()
    assert queue_manager.claim_job(pending, "w1") is None
    assert snapshot(first)["status"] == JobStatus.QUEUED


def test_renew_leases_extends_only_this_workers_jobs():
    make_host()
    queued(3)
    mine = claim("w1", 2, lease_seconds=5)
    [theirs] = claim("w2", 1, lease_seconds=5)
    assert queue_manager.renew_leases("w1", lease_seconds=300) == 2
    for job in mine:
        assert snapshot(job)["lease_expires_at"] > timezone.now() + timedelta(seconds=290)
    assert snapshot(theirs)["lease_expires_at"] < timezone.now() + timedelta(seconds=6)
    assert queue_manager.renew_leases("", lease_seconds=300) == 0


def test_release_job_hands_an_unlaunched_job_back_keeping_its_attempt():
    make_host()
    [job] = queued()
    [claimed] = claim("w1", 1)
    assert queue_manager.release_job(claimed, "w2") is False
    assert queue_manager.release_job(claimed, "w1", reason="shutting down") is True
    row = snapshot(job)
    assert (row["status"], row["worker_id"], row["lease_expires_at"], row["attempt"]) == (
        JobStatus.QUEUED,
        "",
        None,
        1,
    )
    [again] = claim("w2", 1)
    assert again.attempt == 2


def test_release_job_refuses_a_running_job():
    make_host()
    queued()
    [claimed] = claim("w1", 1)
    claimed.mark_as_running(container_id="abc")
    before = snapshot(claimed)
    assert queue_manager.release_job(claimed, "w1") is False
    assert snapshot(claimed) == before


def expire(job):
    ContainerJob.objects.filter(pk=job.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


def test_expired_jobs_lists_only_held_jobs_with_a_past_lease():
    make_host()
    queued(3)
    dead, alive = claim("dead", 1), claim("alive", 1)
    expire(dead[0])
    assert [j.pk for j in queue_manager.expired_jobs()] == [dead[0].pk]
    assert alive[0].pk not in {j.pk for j in queue_manager.expired_jobs()}


def test_take_over_lets_exactly_one_worker_adopt_an_expired_job():
    make_host()
    queued()
    [job] = claim("dead", 1)
    job.mark_as_running(container_id="abc")
    expire(job)
    seen_by_a, seen_by_b = queue_manager.expired_jobs()[0], queue_manager.expired_jobs()[0]
    assert queue_manager.take_over(seen_by_a, "a", lease_seconds=60) is True
    assert queue_manager.take_over(seen_by_b, "b", lease_seconds=60) is False
    row = snapshot(job)
    assert (row["worker_id"], row["status"]) == ("a", JobStatus.RUNNING)
    assert row["lease_expires_at"] > timezone.now()
    assert seen_by_a.worker_id == "a"


def test_take_over_refuses_a_job_whose_lease_is_still_valid():
    make_host()
    queued()
    [job] = claim("alive", 1)
    before = snapshot(job)
    assert queue_manager.take_over(job, "thief") is False
    assert snapshot(job) == before


def test_requeue_orphan_puts_the_job_back_without_costing_a_retry():
    make_host()
    [job] = queued()
    [claimed] = claim("dead", 1)
    expire(claimed)
    [orphan] = queue_manager.expired_jobs()
    assert queue_manager.requeue_orphan(orphan) is True
    row = snapshot(job)
    assert (row["status"], row["worker_id"], row["retry_count"], row["error_code"]) == (
        JobStatus.QUEUED,
        "",
        0,
        "WORKER_LOST",
    )
    assert queue_manager.requeue_orphan(orphan) is False
    [again] = claim("alive", 1)
    assert again.attempt == 2
