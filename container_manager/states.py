"""The job state machine: every status a job can be in, and every allowed move.

``TRANSITIONS`` is the single table of valid moves, and holds only the moves
the code makes. Every move is written by ``container_manager.queue``; the
model methods it uses check :func:`can_transition`, and the job queryset's
``update()`` adds the same table as a filter, so a bulk update can never write
an invalid move either.
"""

from __future__ import annotations

from django.db import models


class JobStatus(models.TextChoices):
    """Where a job is in its life.

    Each member's comment names the code that moves jobs in and out of it.
    """

    # Created, not queued. In: create, dequeue_job (queue/manager.py).
    # Out: queue_job, cancel_job.
    PENDING = "pending", "Pending"
    # Waiting for a worker. In: queue_job, retry_failed_job, resume_job,
    # release_job and requeue_orphan (queue/leases.py).
    # Out: claim_jobs (queue/claims.py), dequeue_job, pause_job, cancel_job.
    QUEUED = "queued", "Queued"
    # Claimed: a worker holds the job and validates its spec before making the
    # container. In: claim_jobs. Out: record_step (queue/finishing.py), the
    # launch's outcome (queue/launching.py), release_job, requeue_orphan, cancel_job.
    VALIDATING = "validating", "Validating"
    # The executor is creating the container. In: record_step. Out: as validating.
    PREPARING = "preparing", "Preparing"
    # The executor is pulling a missing image. In: record_step. Out: as validating.
    PULLING = "pulling", "Pulling image"
    # Image tasks (queue/images.py): the worker builds an image, pushes one
    # (uploading), or downloads the layers of a pull (after ``pulling``, which
    # resolves what to fetch). In: record_image_step. Out: finish_image_task,
    # record_launch_failure, timeout_image_task, release_job, requeue_orphan,
    # cancel_job.
    BUILDING = "building", "Building image"
    UPLOADING = "uploading", "Uploading image"
    DOWNLOADING = "downloading", "Downloading image"
    # The container runs. In: launch_claimed (queue/launching.py), resume_job.
    # Out: finish_job and timeout_job (queue/finishing.py), pause_job,
    # cancel_job, requeue_orphan.
    RUNNING = "running", "Running"
    # Held by a person: a queued job is skipped, a running container is frozen.
    # In: pause_job. Out: resume_job, cancel_job, requeue_orphan (queue/control.py).
    PAUSED = "paused", "Paused"
    # A launch failed for a transient reason; waits for its backoff in scheduled_for.
    # In: record_launch_failure (queue/launching.py). Out: as queued.
    RETRYING = "retrying", "Retrying"
    # The container exited 0, or an image task was done.
    # In: finish_job, finish_image_task (queue/images.py). Out: none.
    COMPLETED = "completed", "Completed"
    # Exit code not 0, a launch or image task that cannot or may no longer be
    # retried, or a job waiting for one that did not complete. In: finish_job,
    # record_launch_failure, process_job, fail_dependents (queue/dependencies.py).
    # Out: retry_failed_job, queue_job.
    FAILED = "failed", "Failed"
    # Stopped by a person. In: cancel_job (queue/control.py). Out: none.
    CANCELLED = "cancelled", "Cancelled"
    # Killed after timeout_seconds. In: timeout_job, timeout_image_task.
    # Out: retry_failed_job, queue_job.
    TIMEOUT = "timeout", "Timed out"


class JobKind(models.TextChoices):
    """What a job does: run a container (the default), or pull, build or push an image.

    The seed's ``task_type``; ``queue_task_status`` and the API show it under
    that name. Image tasks are run by the worker itself, through the host's
    engine (queue/images.py, docs/image-tasks.md).
    """

    RUN = "run", "Run a container"
    IMAGE_PULL = "image_pull", "Pull an image"
    IMAGE_BUILD = "image_build", "Build an image"
    IMAGE_PUSH = "image_push", "Push an image"


#: The kinds that are image tasks.
IMAGE_KINDS: frozenset[str] = frozenset(
    {JobKind.IMAGE_PULL, JobKind.IMAGE_BUILD, JobKind.IMAGE_PUSH}
)

S = JobStatus

#: Statuses a worker may claim a job from.
READY_STATUSES: frozenset[str] = frozenset({S.QUEUED, S.RETRYING})
#: Statuses in which an image task's work is under way (pulling is shared with launches).
IMAGE_WORK_STATUSES: frozenset[str] = frozenset({S.PULLING, S.DOWNLOADING, S.BUILDING, S.UPLOADING})
#: Statuses in which a worker is launching the job, or doing an image task's
#: work (it holds a lease; no container of ours runs yet, or ever, for an image task).
LAUNCHING_STATUSES: frozenset[str] = frozenset({S.VALIDATING, S.PREPARING}) | IMAGE_WORK_STATUSES
#: Statuses in which a container may exist and a worker holds the job.
ACTIVE_STATUSES: frozenset[str] = LAUNCHING_STATUSES | {S.RUNNING}
#: Statuses a job never leaves on its own.
TERMINAL_STATUSES: frozenset[str] = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED, S.TIMEOUT})
#: Not finished: every other status (the statistics count these over their own index).
UNFINISHED_STATUSES: frozenset[str] = frozenset(S.values) - TERMINAL_STATUSES
#: Terminal statuses from which a person may queue the job again.
RETRYABLE_STATUSES: frozenset[str] = frozenset({S.FAILED, S.TIMEOUT})

#: Statuses in which a worker holds the job under a lease that can expire.
LEASED_STATUSES: frozenset[str] = ACTIVE_STATUSES | {S.PAUSED}

# Only the moves the code makes (docs/architecture.md names who makes each).
# A launch ends running, failed or retrying; it goes back to queued when its
# worker stops (release_job) or dies before the container exists
# (requeue_orphan), and to cancelled when a person cancels it meanwhile.
_LAUNCH_EXITS = {S.RUNNING, S.FAILED, S.RETRYING, S.CANCELLED, S.QUEUED}
# The documented model methods also move a queued job by hand:
# mark_as_running() to running, mark_as_failed() to failed or (with
# should_retry) retrying, and a retrying one to failed
# (docs/api-reference.md, "mark_as_* methods").
_BY_HAND = {S.RUNNING, S.FAILED, S.RETRYING}

# An image task ends completed, failed, retrying or timed out; back to queued
# as a launch does, or cancelled.
_IMAGE_EXITS = {S.COMPLETED, S.FAILED, S.RETRYING, S.TIMEOUT, S.CANCELLED, S.QUEUED}

TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.QUEUED, S.CANCELLED}),
    S.QUEUED: frozenset({S.VALIDATING, S.PENDING, S.PAUSED, S.CANCELLED, *_BY_HAND}),
    S.VALIDATING: frozenset(
        {S.PREPARING, S.PULLING, S.BUILDING, S.UPLOADING, *_LAUNCH_EXITS, *_IMAGE_EXITS}
    ),
    S.PREPARING: frozenset({S.PULLING, *_LAUNCH_EXITS}),
    S.PULLING: frozenset({S.DOWNLOADING, *_LAUNCH_EXITS, *_IMAGE_EXITS}),
    S.DOWNLOADING: frozenset(_IMAGE_EXITS),
    S.BUILDING: frozenset({S.UPLOADING, *_IMAGE_EXITS}),
    S.UPLOADING: frozenset(_IMAGE_EXITS),
    S.RUNNING: frozenset({S.COMPLETED, S.FAILED, S.TIMEOUT, S.CANCELLED, S.PAUSED, S.QUEUED}),
    S.PAUSED: frozenset({S.QUEUED, S.RUNNING, S.CANCELLED}),
    S.RETRYING: frozenset({S.VALIDATING, S.PENDING, S.PAUSED, S.CANCELLED, S.FAILED}),
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
