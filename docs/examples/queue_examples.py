"""A tour of the queue's calls (docs/api-reference.md), runnable as it is.

    python manage.py shell < docs/examples/queue_examples.py

The test suite runs this file against its test database, on SQLite and on
PostgreSQL (tests/docs/test_doc_examples.py). On your own database it creates
a host named ``examples-local`` that runs commands as local processes, and a
few jobs; the jobs it created are cancelled at the end. Jobs created without
a host may go to any of your active hosts.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from container_manager.classification import classify
from container_manager.exceptions import JobAlreadyQueuedError
from container_manager.models import ContainerJob, ExecutorHost
from container_manager.queue import queue_manager
from container_manager.retry import RETRY_STRATEGIES, RetryStrategy

# A host to run on: local processes here, a Docker engine in production.
host, _ = ExecutorHost.objects.get_or_create(
    name="examples-local", defaults={"executor_type": "process", "max_concurrent_jobs": 4}
)
first_id = (ContainerJob.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1

# ---------------------------------------------------------------------------
# queue_job(job, schedule_for=None, priority=None)
#
# A job is queued once (a second queue_job raises JobAlreadyQueuedError, a
# ValueError), so the three ways of queueing are shown on three jobs.

# Queue job immediately
job = ContainerJob.objects.create(command="echo hello")
queue_manager.queue_job(job)

# Queue with high priority
urgent_job = ContainerJob.objects.create(command="echo urgent")
queue_manager.queue_job(urgent_job, priority=80)

# Schedule for later
schedule_time = timezone.now() + timedelta(hours=2)
scheduled_job = ContainerJob.objects.create(command="echo later")
queue_manager.queue_job(scheduled_job, schedule_for=schedule_time)

try:
    queue_manager.queue_job(job, priority=80)
except JobAlreadyQueuedError as exc:
    print(f"Refused, nothing changed: {exc}")

# ---------------------------------------------------------------------------
# get_ready_jobs(limit=None, exclude_ids=None)

# Get next 5 jobs ready to launch
ready_jobs = queue_manager.get_ready_jobs(limit=5)

for job in ready_jobs:
    print(f"Job {job.id}: {job.name} (priority: {job.priority})")
assert job.command == "echo hello"  # highest priority first: the loop ends on `job`

# ---------------------------------------------------------------------------
# Model properties

if job.is_queued:
    print("Job is waiting in queue")
if job.is_ready_to_launch:
    print("Job can be launched immediately")
print(f"Queue status: {job.queue_status}")
print(f"Queue status: {scheduled_job.queue_status}")  # scheduled

# ---------------------------------------------------------------------------
# launch_job_with_retry(job)

result = queue_manager.launch_job_with_retry(job)

if result["success"]:
    print(f"Job {job.id} launched successfully")
elif result["retry_scheduled"]:
    print(f"Job {job.id} failed, retry scheduled: {result['error']}")
else:
    print(f"Job {job.id} permanently failed: {result['error']}")

# ---------------------------------------------------------------------------
# launch_next_batch(max_concurrent=5, timeout=30)

# Launch up to 10 jobs concurrently
result = queue_manager.launch_next_batch(max_concurrent=10)

print(f"Launched {result['launched']} jobs")
if result["errors"]:
    print(f"Errors: {result['errors']}")

# ---------------------------------------------------------------------------
# get_queue_stats()

stats = queue_manager.get_queue_stats()
print(f"Queue depth: {stats['queued']}")
print(f"Running: {stats['running']}")
print(f"Scheduled: {stats['scheduled']}")

# ---------------------------------------------------------------------------
# mark_as_* methods: each moves one job along the state machine, so each
# example uses a job in a state that allows the move.

future_time = timezone.now() + timedelta(hours=1)
queued_now = ContainerJob.objects.create(command="echo a")
queued_now.mark_as_queued()  # Queue immediately
queued_later = ContainerJob.objects.create(command="echo b")
queued_later.mark_as_queued(scheduled_for=future_time)  # Schedule for later

queued_now.mark_as_running()  # Sets launched_at timestamp
queued_now.mark_as_completed()  # Sets completed_at timestamp

queued_later.mark_as_failed(should_retry=True)  # May retry if under limit
print(f"After a retryable failure: {queued_later.status}")  # retrying
queued_later.mark_as_failed()  # Permanent failure
print(f"After a permanent failure: {queued_later.status}")  # failed

# ---------------------------------------------------------------------------
# Retry strategies

# Set retry strategy on job
job.retry_strategy = "aggressive"
job.save()

# Or when creating
test_job = ContainerJob.objects.create(command="echo test", retry_strategy="high_priority")

# Define custom strategy
RETRY_STRATEGIES["custom"] = RetryStrategy(
    max_attempts=4, base_delay=1.5, max_delay=120.0, backoff_factor=1.8
)
print(
    f"Custom strategy delays: {[RETRY_STRATEGIES['custom'].base_delay_for(n) for n in (1, 2, 3)]}"
)
del RETRY_STRATEGIES["custom"]

# ---------------------------------------------------------------------------
# Error classification

for error in (ConnectionRefusedError(111, "Connection refused"), RuntimeError("no such image")):
    found = classify(error)
    print(f"{error!r}: {found.category} ({found.code})")

# ---------------------------------------------------------------------------
# The admin's statistics page shows the same numbers, and more:
print("Queue statistics page: /admin/container_manager/containerjob/queue-stats/")

# Clean up: cancel the jobs this script created that have not ended.
for made in ContainerJob.objects.filter(pk__gte=first_id):
    if not made.is_terminal:
        queue_manager.cancel_job(made)
