"""The worker's launch threads keep their database connection, and drop a broken one."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from container_manager.worker.claimer import LaunchPool

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def run_tasks(*tasks):
    """Run the tasks in order on one launch thread; return what each returned."""
    pool = LaunchPool(1, "test-launch")
    results: list[object] = []
    done = threading.Event()

    def wrap(task):
        def run():
            try:
                results.append(task())
            except Exception as exc:
                results.append(exc)
                raise
            finally:
                if len(results) == len(tasks):
                    done.set()

        return run

    for task in tasks:
        pool.submit(wrap(task))
    assert done.wait(10)
    pool.close()
    return results


def backend_pid():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def kill_own_backend():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")


def test_launch_thread_reuses_its_connection_between_launches():
    first, second = run_tasks(backend_pid, backend_pid)
    assert isinstance(first, int)
    assert first == second


def test_a_connection_broken_by_an_error_is_dropped_and_the_next_launch_reconnects():
    before, broken, after = run_tasks(backend_pid, kill_own_backend, backend_pid)
    assert isinstance(broken, Exception)
    assert isinstance(after, int)
    assert after != before
