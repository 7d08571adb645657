"""@task functions run as jobs through the tasks backend, as local processes (``process`` host).

The worker is the real command (``process_container_jobs --queue-mode
--once``); each task runs in a process of its own that imports the task
module, sets Django up on the test database and prints the result, which
``get_result`` reads back from the job.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from container_manager.models import ContainerJob, ExecutorHost
from container_manager.tasks import ContainerBackend, TaskContainerError, job_priority
from container_manager.tasks.compat import (
    InvalidTaskError,
    TaskResultDoesNotExist,
    TaskResultStatus,
)
from tests.acceptance.worker_process import database_url
from tests.tasks import examples

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def backend_settings(host: str, **options) -> dict:
    return {
        "default": {"BACKEND": "container_manager.tasks.ContainerBackend"},
        examples.BACKEND: {
            "BACKEND": "container_manager.tasks.ContainerBackend",
            "QUEUES": ["default", "reports"],
            "OPTIONS": {
                "host": host,
                "command": [sys.executable, "-m", "container_manager.tasks"],
                "working_directory": str(ROOT),
                "environment": {
                    "DATABASE_URL": database_url(),
                    "DJANGO_SETTINGS_MODULE": "tests.settings_fast",
                },
                **options,
            },
        },
    }


@pytest.fixture
def tasks_host():
    ExecutorHost.objects.create(name="tasks-local", executor_type="process", max_concurrent_jobs=4)
    with override_settings(TASKS=backend_settings("tasks-local")):
        yield


def run_worker() -> str:
    out = StringIO()
    call_command("process_container_jobs", "--queue-mode", "--once", stdout=out, stderr=StringIO())
    return out.getvalue()


def test_a_task_runs_as_a_job_and_its_result_is_read_back(tasks_host):
    result = examples.add.enqueue(2, 3)

    assert result.status == TaskResultStatus.READY
    job = ContainerJob.objects.get(pk=int(result.id))
    assert (job.status, job.priority, job.queue, job.name) == (
        "queued",
        50,
        "default",
        "tests.tasks.examples.add",
    )
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.finished_at is not None
    assert result.attempts == 1
    again = examples.add.get_result(result.id)
    assert (again.status, again.return_value, again.args) == (
        TaskResultStatus.SUCCESSFUL,
        5,
        [2, 3],
    )


def test_a_task_that_raises_fails_with_its_exception_and_traceback(tasks_host):
    result = examples.boom.enqueue("it broke")
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class is ValueError
    assert "ValueError: it broke" in error.traceback
    assert "raise ValueError(message)" in error.traceback
    job = ContainerJob.objects.get(pk=int(result.id))
    assert (job.status, job.exit_code) == ("failed", 1)
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018


def test_tasks_get_their_context_and_reach_the_database(tasks_host):
    who = examples.who_am_i.enqueue()
    hosts = examples.count_hosts.enqueue()
    later = examples.add_later.enqueue(20, 22)
    run_worker()
    who.refresh()
    hosts.refresh()
    later.refresh()
    assert who.return_value == {"id": who.id, "attempt": 1, "job_id": who.id}
    assert hosts.return_value == ExecutorHost.objects.count() == 1
    assert later.return_value == 42


def test_priority_queue_and_run_after_become_the_jobs(tasks_host):
    soon = timezone.now() + timedelta(hours=1)
    urgent = examples.add.using(priority=100, queue_name="reports").enqueue(1, 1)
    deferred = examples.add.using(run_after=soon, priority=-100).enqueue(1, 2)

    urgent_job = ContainerJob.objects.get(pk=int(urgent.id))
    deferred_job = ContainerJob.objects.get(pk=int(deferred.id))
    assert (urgent_job.priority, urgent_job.queue) == (100, "reports")
    assert (deferred_job.priority, deferred_job.scheduled_for) == (0, soon)
    run_worker()
    urgent.refresh()
    deferred.refresh()
    assert urgent.status == TaskResultStatus.SUCCESSFUL
    assert deferred.status == TaskResultStatus.READY, "not before its run_after"
    assert [job_priority(p) for p in (-100, 0, 100)] == [0, 50, 100]


def test_bad_input_is_refused_before_anything_is_queued(tasks_host):
    with pytest.raises(InvalidTaskError, match="must be JSON"):
        examples.add.enqueue(object(), 1)
    with pytest.raises(InvalidTaskError, match="at most"):
        examples.add.enqueue("x" * 200_000, "")
    with pytest.raises(InvalidTaskError, match="not valid for backend"):
        examples.add.using(queue_name="nope").enqueue(1, 2)
    assert not ContainerJob.objects.exists()
    for missing in ("999999", "not-a-number"):
        with pytest.raises(TaskResultDoesNotExist):
            examples.add.get_result(missing)


def test_a_job_that_dies_without_the_runners_answer_fails_with_its_reason(tasks_host):
    result = examples.add.enqueue(1, 2)
    ContainerJob.objects.filter(pk=int(result.id)).update(command="false")
    run_worker()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class is TaskContainerError
    assert error.traceback.startswith("CONTAINER_EXIT_NONZERO")


def test_the_backends_options_are_checked_when_it_is_made():
    with pytest.raises(InvalidTaskError, match="Unknown OPTIONS"):
        ContainerBackend("x", {"OPTIONS": {"imagee": "typo"}})
    with pytest.raises(InvalidTaskError, match="list of strings"):
        ContainerBackend("x", {"OPTIONS": {"command": "python -m x"}})


def test_a_host_that_does_not_exist_is_named(tasks_host):
    with (
        override_settings(TASKS=backend_settings("no-such-host")),
        pytest.raises(InvalidTaskError, match="'no-such-host'"),
    ):
        examples.add.enqueue(1, 2)
