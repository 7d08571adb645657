"""wait_for_work without PostgreSQL: timeout, in-process wake-ups, interrupt."""

from __future__ import annotations

import threading
import time

import pytest

from container_manager.queue import JobQueueManager
from tests.unit.test_queue import make_job

pytestmark = pytest.mark.django_db

POLL_SECONDS = 5.0


@pytest.fixture
def manager():
    manager = JobQueueManager(worker_id="waiter")
    yield manager
    manager.close()


def wait_in_thread(manager, timeout_seconds):
    """Start a waiter thread; return (ready event, result dict, thread)."""
    started, result = threading.Event(), {}

    def run():
        manager.wait_for_work(0)  # the first call only starts listening
        started.set()
        begin = time.monotonic()
        result["value"] = manager.wait_for_work(timeout_seconds)
        result["elapsed"] = time.monotonic() - begin

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(5)
    return result, thread


def test_first_wait_returns_at_once_and_later_waits_time_out(manager):
    assert manager.wait_for_work(POLL_SECONDS) is True
    begin = time.monotonic()
    assert manager.wait_for_work(0.05) is False
    assert time.monotonic() - begin >= 0.045


def test_interrupt_wakes_a_waiter_at_once_without_work(manager):
    result, thread = wait_in_thread(manager, POLL_SECONDS)
    manager.interrupt()
    thread.join(POLL_SECONDS)
    assert result["value"] is False
    assert result["elapsed"] < 0.2 * POLL_SECONDS


def test_interrupt_before_the_wait_is_not_lost(manager):
    manager.wait_for_work(0)
    manager.interrupt()
    begin = time.monotonic()
    assert manager.wait_for_work(POLL_SECONDS) is False
    assert time.monotonic() - begin < 0.2 * POLL_SECONDS


def test_enqueue_in_this_process_wakes_a_waiter_after_commit(
    manager, django_capture_on_commit_callbacks
):
    from container_manager.queue import queue_manager

    result, thread = wait_in_thread(manager, POLL_SECONDS)
    job = make_job()
    with django_capture_on_commit_callbacks(execute=True):
        queue_manager.queue_job(job)
    thread.join(POLL_SECONDS)
    assert result["value"] is True
    assert result["elapsed"] < 0.2 * POLL_SECONDS
