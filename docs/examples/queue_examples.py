"""Queue examples, runnable as they are.

    python manage.py shell < docs/examples/queue_examples.py

The test suite runs this file against its test database
(tests/docs/test_doc_examples.py). On your own database it creates a host
named ``examples-local`` and a few jobs, and cleans them up at the end.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from container_manager.exceptions import JobAlreadyQueuedError, JobNotQueuedError
from container_manager.models import ContainerJob, ExecutorHost
from container_manager.queue import queue_manager

# A host to run on: local processes here, a Docker engine in production.
host, _ = ExecutorHost.objects.get_or_create(
    name="examples-local", defaults={"executor_type": "process", "max_concurrent_jobs": 2}
)
created: list[ContainerJob] = []


def new_job(command: str, **fields: object) -> ContainerJob:
    job = ContainerJob.objects.create(command=command, host=host, **fields)
    created.append(job)
    return job


# Queue a job immediately, one with high priority, one for later.
hello = queue_manager.queue_job(new_job("echo hello"))
urgent = queue_manager.queue_job(new_job("echo urgent"), priority=80)
later = queue_manager.queue_job(
    new_job("echo scheduled"), schedule_for=timezone.now() + timedelta(hours=1)
)
print(f"Queued {hello}, {urgent} and {later} ({later.queue_status})")

# Bad calls raise ValueError subclasses and change nothing.
try:
    queue_manager.queue_job(hello)
except JobAlreadyQueuedError as exc:
    print(f"Refused: {exc}")
pending = new_job("echo not queued")
try:
    queue_manager.dequeue_job(pending)
except JobNotQueuedError as exc:
    print(f"Refused: {exc}")

# What is ready, highest priority first, then first in, first out.
ready = list(queue_manager.get_ready_jobs(limit=5))
print("Ready:", [(job.pk, job.priority) for job in ready])
assert [job.pk for job in ready] == [urgent.pk, hello.pk]

# Launch what is ready, up to two jobs at once for this process.
result = queue_manager.launch_next_batch(max_concurrent=2)
print(f"Launched {result['launched']} jobs; errors: {result['errors']}")

stats = queue_manager.get_queue_stats()
print(
    f"Queue depth: {stats['queued']}, running: {stats['running']}, scheduled: {stats['scheduled']}"
)

# Take the scheduled job out of the queue again, and cancel everything we made.
queue_manager.dequeue_job(later)
for job in created:
    job.refresh_from_db()
    if not job.is_terminal:
        queue_manager.cancel_job(job)
print("Cancelled:", sorted(job.pk for job in created))
