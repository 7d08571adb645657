"""Retries: strategies, backoff with jitter written to scheduled_for, final failure."""

from __future__ import annotations

import random

import pytest
from django.utils import timezone

from container_manager.exceptions import ImageNotFoundError, ImagePullError
from container_manager.models import ContainerJob
from container_manager.retry import RETRY_STRATEGIES, RetryStrategy, get_strategy, next_retry_at
from container_manager.states import JobStatus
from tests.unit import test_queue as queue_fixtures
from tests.unit.test_queue import make_host, queued, snapshot

pytestmark = pytest.mark.django_db

# The `service` and `manager` fixtures come from tests/unit/test_queue.py.
service = queue_fixtures.service
manager = queue_fixtures.manager


def make_due(job):
    """Skip the backoff wait: the test checks the delay, not the clock."""
    ContainerJob.objects.filter(pk=job.pk).update(scheduled_for=timezone.now())


def test_documented_strategies_have_their_attempts_and_delays():
    expected = {
        "default": (3, 2.0, 60.0),
        "aggressive": (5, 1.0, 30.0),
        "conservative": (2, 5.0, 300.0),
        "high_priority": (5, 0.5, 15.0),
    }
    for name, (attempts, base, ceiling) in expected.items():
        strategy = RETRY_STRATEGIES[name]
        assert (strategy.max_attempts, strategy.base_delay, strategy.max_delay) == (
            attempts,
            base,
            ceiling,
        )


def test_delays_grow_exponentially_and_stop_at_max_delay():
    strategy = RetryStrategy(max_attempts=10, base_delay=2.0, max_delay=60.0)
    assert [strategy.base_delay_for(n) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]


def test_jitter_spreads_each_delay_within_plus_minus_twenty_percent():
    strategy = RETRY_STRATEGIES["default"]
    rng = random.Random(7)
    delays = [strategy.delay_for(3, rng) for _ in range(200)]
    assert all(8 * 0.8 <= d <= 8 * 1.2 for d in delays)
    assert len({round(d, 6) for d in delays}) > 150


def test_custom_strategy_registered_as_the_seed_shows_is_used_by_jobs(manager, service):
    RETRY_STRATEGIES["custom"] = RetryStrategy(
        max_attempts=4, base_delay=1.5, max_delay=120.0, backoff_factor=1.8
    )
    try:
        make_host()
        [job] = queued(retry_strategy="custom")
        assert job.effective_max_retries == 4
        service.results = [ImagePullError("registry hiccup")]
        manager.launch_job_with_retry(job)
        row = snapshot(job)
        delay = (row["scheduled_for"] - row["last_error_at"]).total_seconds()
        assert 1.5 * 0.8 <= delay <= 1.5 * 1.2
    finally:
        del RETRY_STRATEGIES["custom"]
    with pytest.raises(KeyError, match="Unknown retry strategy 'custom'"):
        get_strategy("custom")


def test_next_retry_at_is_now_plus_the_jittered_delay():
    now = timezone.now()
    at = next_retry_at(RETRY_STRATEGIES["aggressive"], 2, now=now, rng=random.Random(1))
    assert 1.6 <= (at - now).total_seconds() <= 2.4


def test_transient_failures_retry_with_growing_jittered_delays_then_fail_for_good(manager, service):
    make_host()
    [job] = queued(retry_strategy="aggressive")
    strategy = RETRY_STRATEGIES["aggressive"]
    service.results = [ImagePullError(f"registry hiccup {n}") for n in range(5)]
    delays = []
    for attempt in range(1, strategy.max_attempts):
        result = manager.launch_job_with_retry(job)
        assert result["retry_scheduled"] is True
        row = snapshot(job)
        assert (row["status"], row["retry_count"], row["error_code"]) == (
            JobStatus.RETRYING,
            attempt,
            "DOCKER_PULL_FAILED",
        )
        delay = (row["scheduled_for"] - row["last_error_at"]).total_seconds()
        base = strategy.base_delay_for(attempt)
        assert base * 0.8 <= delay <= base * 1.2
        delays.append(delay)
        # Not ready before its time: the retry is a scheduled job.
        assert manager.claim_job(job, "w1") is None
        make_due(job)
    assert delays == sorted(delays)
    assert [round(d, 6) for d in delays] != [strategy.base_delay_for(n) for n in range(1, 5)]
    result = manager.launch_job_with_retry(job)
    assert result == {
        "success": False,
        "error": "DOCKER_PULL_FAILED: registry hiccup 4",
        "retry_scheduled": False,
    }
    row = snapshot(job)
    assert (row["status"], row["retry_count"], row["attempt"]) == (JobStatus.FAILED, 5, 5)
    assert len(service.launched) == 5


def test_max_retries_on_the_job_overrides_the_strategy(manager, service):
    make_host()
    [job] = queued(retry_strategy="aggressive", max_retries=1)
    service.results = [ImagePullError("hiccup")]
    assert manager.launch_job_with_retry(job)["retry_scheduled"] is False
    assert snapshot(job)["status"] == JobStatus.FAILED


def test_permanent_failure_fails_at_once_with_its_error_code(manager, service):
    make_host()
    [job] = queued(retry_strategy="aggressive")
    service.results = [ImageNotFoundError("No such image: ghost:1")]
    result = manager.launch_job_with_retry(job)
    assert result["retry_scheduled"] is False
    row = snapshot(job)
    assert (row["status"], row["error_code"], row["retry_count"]) == (
        JobStatus.FAILED,
        "DOCKER_IMAGE_NOT_FOUND",
        1,
    )
    assert row["last_error"] == "No such image: ghost:1"
    assert row["last_error_at"] is not None


def test_retry_failed_job_requeues_a_finally_failed_job(manager, service):
    make_host()
    [job] = queued()
    service.results = [ImageNotFoundError("No such image: ghost:1")]
    manager.launch_job_with_retry(job)
    manager.retry_failed_job(job, reset_count=True)
    assert (snapshot(job)["status"], snapshot(job)["retry_count"]) == (JobStatus.QUEUED, 0)
    assert manager.launch_job_with_retry(job)["success"] is True
    assert snapshot(job)["attempt"] == 2
