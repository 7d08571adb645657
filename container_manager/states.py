"""The job state machine: every status a job can be in, and every allowed move.

``TRANSITIONS`` is the single table of valid moves. Model methods, the queue,
the admin and the API all go through :func:`can_transition`; the job
queryset's ``update()`` adds the same table as a filter, so a bulk update can
never write an invalid move either.
"""

from __future__ import annotations

from django.db import models


class JobStatus(models.TextChoices):
    """Where a job is in its life.

    Each member's comment names the code that moves jobs in and out of it.
    """

    # Created, not queued. In: create, JobQueueManager.dequeue_job. Out: queue_job.
    PENDING = "pending", "Pending"
    # Waiting for a worker. In: queue_job, retry_failed_job, lease recovery.
    # Out: the claimer (to validating), dequeue_job, cancel, pause.
    QUEUED = "queued", "Queued"
    # Claimed by a worker that checks host, image and spec. In: the claimer.
    VALIDATING = "validating", "Validating"
    # The executor is creating the container. In: the worker's launch step.
    PREPARING = "preparing", "Preparing"
    # The executor is pulling a missing image. In: the Docker executor's launch.
    PULLING = "pulling", "Pulling image"
    # The container runs. In: mark_as_running. Out: the completion follower.
    RUNNING = "running", "Running"
    # Held by a person: a queued job is skipped, a running container is frozen.
    # In/out: queue_manager.pause_job / resume_job.
    PAUSED = "paused", "Paused"
    # A launch failed for a transient reason; waits for its backoff in scheduled_for.
    # In: mark_as_failed(should_retry=True). Out: the claimer, like a queued job.
    RETRYING = "retrying", "Retrying"
    # Terminal unless retried by hand. In: the completion follower.
    COMPLETED = "completed", "Completed"
    # Exit code not 0, or a launch that cannot or may no longer be retried.
    FAILED = "failed", "Failed"
    # Stopped by a person. Terminal.
    CANCELLED = "cancelled", "Cancelled"
    # Killed after timeout_seconds. In: the worker's timeout enforcement.
    TIMEOUT = "timeout", "Timed out"


S = JobStatus

#: Statuses a worker may claim a job from.
READY_STATUSES: frozenset[str] = frozenset({S.QUEUED, S.RETRYING})
#: Statuses in which a worker is launching the job (it holds a lease).
LAUNCHING_STATUSES: frozenset[str] = frozenset({S.VALIDATING, S.PREPARING, S.PULLING})
#: Statuses in which a container may exist and a worker holds the job.
ACTIVE_STATUSES: frozenset[str] = LAUNCHING_STATUSES | {S.RUNNING}
#: Statuses a job never leaves on its own.
TERMINAL_STATUSES: frozenset[str] = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED, S.TIMEOUT})
#: Terminal statuses from which a person may queue the job again.
RETRYABLE_STATUSES: frozenset[str] = frozenset({S.FAILED, S.TIMEOUT})

# Launch steps may go back to queued: a worker that stops (or whose lease is
# taken over) before the container exists hands the job back.
_LAUNCH_EXITS = {S.RUNNING, S.FAILED, S.RETRYING, S.CANCELLED, S.QUEUED, S.TIMEOUT}

TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.QUEUED, S.CANCELLED}),
    S.QUEUED: frozenset(
        {
            S.VALIDATING,
            S.PREPARING,
            S.RUNNING,
            S.PENDING,
            S.PAUSED,
            S.CANCELLED,
            S.FAILED,
            S.RETRYING,
        }
    ),
    S.VALIDATING: frozenset({S.PREPARING, S.PULLING, *_LAUNCH_EXITS}),
    S.PREPARING: frozenset({S.PULLING, *_LAUNCH_EXITS}),
    S.PULLING: frozenset({S.PREPARING, *_LAUNCH_EXITS}),
    S.RUNNING: frozenset(
        {S.COMPLETED, S.FAILED, S.TIMEOUT, S.CANCELLED, S.PAUSED, S.RETRYING, S.QUEUED}
    ),
    S.PAUSED: frozenset({S.QUEUED, S.RUNNING, S.CANCELLED, S.FAILED, S.TIMEOUT}),
    S.RETRYING: frozenset(
        {S.VALIDATING, S.PREPARING, S.RUNNING, S.QUEUED, S.PENDING, S.PAUSED, S.CANCELLED, S.FAILED}
    ),
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
    S.FAILED: frozenset({S.QUEUED}),
    S.TIMEOUT: frozenset({S.QUEUED}),
}


def can_transition(current: str, new: str) -> bool:
    """Tell whether a job may move from ``current`` to ``new``.

    Args:
        current: The status the job is in.
        new: The status it would move to.

    Returns:
        True when ``TRANSITIONS`` allows the move. Staying in the same status
        is not a move and is never allowed.
    """
    return new in TRANSITIONS.get(current, frozenset())


def sources_of(new: str) -> frozenset[str]:
    """Return every status from which a job may move to ``new``.

    Args:
        new: The target status.

    Returns:
        The statuses whose allowed moves include ``new``.
    """
    return _SOURCES.get(new, frozenset())


_SOURCES: dict[str, frozenset[str]] = {
    target: frozenset(src for src, targets in TRANSITIONS.items() if target in targets)
    for target in JobStatus.values
}
