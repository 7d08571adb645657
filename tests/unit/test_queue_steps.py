"""The ``preparing`` step is written only when a launch lasts (container_manager/queue/steps.py)."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from container_manager.queue import queue_manager
from container_manager.queue import steps as steps_module
from container_manager.queue.steps import DeferredStep, defer_preparing
from container_manager.states import JobStatus
from tests.unit import fake_executor as fakes

fake_host = fakes.fake_host
fake_executor = fakes.fake_executor
claimed_job = fakes.claimed_job

WAIT_SECONDS = 10


def threaded(test):
    """Steps are written on the timer's own connection: a database shared across threads."""
    return pytest.mark.postgres(pytest.mark.django_db(transaction=True)(test))


def status_of(job) -> str:
    job.refresh_from_db()
    return job.status


def wait_for(condition, timeout=WAIT_SECONDS):
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        if condition():
            return True
        pause.wait(0.01)
    return False


def past_due(delay: float) -> None:
    """Return once the timer has fired everything due within ``delay`` from now."""
    fired = threading.Event()
    steps_module._shared_timer().schedule(delay, DeferredStep(lambda: fired.set() or False))
    assert fired.wait(WAIT_SECONDS)


@pytest.mark.django_db
def test_a_fast_launch_goes_from_validating_to_running_without_writing_preparing(
    fake_host, fake_executor
):
    fake_executor.steps = ["preparing"]
    job = claimed_job(fake_host)

    with CaptureQueriesContext(connection) as queries:
        outcome = queue_manager.launch_claimed(job)

    assert outcome.success
    assert status_of(job) == JobStatus.RUNNING
    assert not [q for q in queries if "SET \"status\" = 'preparing'" in q["sql"]]


@threaded
def test_a_launch_that_lasts_is_seen_preparing_then_running(fake_host, fake_executor, monkeypatch):
    monkeypatch.setattr(steps_module, "PREPARING_RECORD_DELAY_SECONDS", 0.05)
    fake_executor.steps = ["preparing"]
    fake_executor.hold = threading.Event()
    job = claimed_job(fake_host)
    outcomes = []

    def run_launch():
        try:
            outcomes.append(queue_manager.launch_claimed(job))
        finally:
            connection.close()

    launch = threading.Thread(target=run_launch)

    launch.start()
    try:
        seen = wait_for(lambda: type(job).objects.get(pk=job.pk).status == JobStatus.PREPARING)
    finally:
        fake_executor.hold.set()
        launch.join(WAIT_SECONDS)

    assert seen, "the row never showed preparing while the launch lasted"
    assert outcomes
    assert outcomes[0].success
    assert job.status == JobStatus.RUNNING
    assert status_of(job) == JobStatus.RUNNING


@threaded
def test_a_step_settled_before_it_is_due_is_never_written(fake_host, monkeypatch):
    monkeypatch.setattr(steps_module, "PREPARING_RECORD_DELAY_SECONDS", 0.05)
    job = claimed_job(fake_host)

    step = defer_preparing(job)
    assert step.settle() is False
    past_due(0.1)

    assert status_of(job) == JobStatus.VALIDATING


@threaded
def test_a_due_step_is_written_and_settling_says_so(fake_host, monkeypatch):
    monkeypatch.setattr(steps_module, "PREPARING_RECORD_DELAY_SECONDS", 0.05)
    job = claimed_job(fake_host)

    step = defer_preparing(job)
    past_due(0.1)

    assert status_of(job) == JobStatus.PREPARING
    assert step.settle() is True


@threaded
def test_a_due_step_writes_nothing_once_the_job_moved_on(fake_host, monkeypatch):
    monkeypatch.setattr(steps_module, "PREPARING_RECORD_DELAY_SECONDS", 0.05)
    job = claimed_job(fake_host)
    step = defer_preparing(job)
    type(job).objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED)

    past_due(0.1)

    assert step.settle() is False
    assert status_of(job) == JobStatus.CANCELLED


@threaded
def test_a_due_step_writes_nothing_once_another_worker_took_the_job_over(fake_host, monkeypatch):
    monkeypatch.setattr(steps_module, "PREPARING_RECORD_DELAY_SECONDS", 0.05)
    job = claimed_job(fake_host)
    step = defer_preparing(job)
    type(job).objects.filter(pk=job.pk).update(worker_id="w2")

    past_due(0.1)

    assert step.settle() is False
    assert status_of(job) == JobStatus.VALIDATING
