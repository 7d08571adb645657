"""Putting jobs in the queue and taking them out: queue, dequeue, list ready, retry failed."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from container_manager import states
from container_manager.exceptions import (
    JobAlreadyQueuedError,
    JobNotQueueableError,
    JobNotQueuedError,
    StaleJobError,
)
from container_manager.models import ContainerJob, ExecutorHost, JobQueue
from container_manager.models.queries import READY_ORDER
from container_manager.notify import announce_work
from container_manager.queue.base import ManagerBase
from container_manager.signals import job_queued, send_after_commit
from container_manager.states import JobStatus

logger = logging.getLogger(__name__)

#: Statuses from which ``queue_job`` may queue a job.
QUEUEABLE_STATUSES = frozenset({JobStatus.PENDING, JobStatus.FAILED, JobStatus.TIMEOUT})
#: The largest LIMIT and id every database takes (a signed 64-bit integer).
MAX_LIMIT = 2**63 - 1


class QueueingMixin(ManagerBase):
    """Queue, dequeue, list ready and failed jobs, retry failed ones; mixed into the manager."""

    def queue_job(
        self,
        job: ContainerJob,
        schedule_for: datetime | None = None,
        priority: int | None = None,
    ) -> ContainerJob:
        """Add a job to the queue.

        Args:
            job: A saved job, pending, failed or timed out.
            schedule_for: When it may start (aware datetime); None for now.
            priority: New priority 0-100 (higher first); None keeps the job's.

        Returns:
            The job, now ``queued`` with ``queued_at`` set.

        Raises:
            JobAlreadyQueuedError: (a ValueError) the job is queued or retrying.
            JobNotQueueableError: (a ValueError) the job is completed,
                cancelled, running, paused, being launched, or not saved.
            ValidationError: ``priority`` is outside 0-100 or ``schedule_for``
                is not a datetime.
            StaleJobError: (a ValueError) the stored status changed since the
                instance was loaded.

        A call that raises changes nothing in the database.
        """
        if job.pk is None:
            raise JobNotQueueableError("Cannot queue an unsaved job; save it first")
        if job.is_queued:
            raise JobAlreadyQueuedError(f"Job {job.pk} is already queued")
        if job.status not in QUEUEABLE_STATUSES:
            raise JobNotQueueableError(f"Cannot queue {job.status} job {job.pk}")
        if priority is not None and (
            isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 100
        ):
            raise ValidationError(
                {"priority": f"Priority must be an integer 0-100, not {priority!r}."}
            )
        if schedule_for is not None and not isinstance(schedule_for, datetime):
            raise ValidationError({"scheduled_for": f"Not a datetime: {schedule_for!r}."})
        if schedule_for is not None and timezone.is_naive(schedule_for):
            schedule_for = timezone.make_aware(schedule_for)
        self._mark_queued(job, scheduled_for=schedule_for, priority=priority)
        announce_work(job.queue, using=self.using)
        send_after_commit(job_queued, [job], self.using)
        logger.info(
            "Queued job %s%s",
            job.pk,
            f" for {schedule_for.isoformat()}" if schedule_for else "",
            extra={"job_id": job.pk},
        )
        return job

    def _mark_queued(self, job: ContainerJob, **fields: Any) -> None:
        """``job.mark_as_queued``, refused clearly when another job holds its unique key.

        Raises:
            JobNotQueueableError: (a ValueError) a job of its queue with its
                ``unique_key`` has not finished (or, with a window, was made
                in the same window); nothing is written.
        """
        try:
            with transaction.atomic(using=self.using):
                job.mark_as_queued(**fields)
        except IntegrityError as exc:
            if not job.unique_key:
                raise
            holder = (
                ContainerJob.objects.using(self.using)
                .filter(queue=job.queue, unique_key=job.unique_key)
                .exclude(pk=job.pk)
                .filter(status__in=sorted(states.UNFINISHED_STATUSES))
                .values_list("pk", flat=True)
                .first()
            )
            raise JobNotQueueableError(
                f"Job {job.pk} cannot be queued: job {holder} of queue {job.queue!r} holds its "
                f"unique key {job.unique_key!r} and has not finished"
            ) from exc

    def dequeue_job(self, job: ContainerJob) -> ContainerJob:
        """Take a job out of the queue; it goes back to ``pending``.

        ``queued_at`` and ``scheduled_for`` are cleared and ``retry_count`` is reset.

        Args:
            job: A queued or retrying job.

        Returns:
            The job, now ``pending``.

        Raises:
            JobNotQueuedError: (a ValueError) the job is not waiting in the
                queue, or a worker claimed it meanwhile. Nothing is changed.
        """
        if not job.is_queued:
            raise JobNotQueuedError(f"Job {job.pk} is not queued")
        try:
            job.transition_to(JobStatus.PENDING, queued_at=None, scheduled_for=None, retry_count=0)
        except StaleJobError as exc:
            raise JobNotQueuedError(f"Job {job.pk} is not queued (now {job.status})") from exc
        logger.info("Removed job %s from queue", job.pk, extra={"job_id": job.pk})
        return job

    def _ready_queryset(self) -> QuerySet[ContainerJob]:
        paused = JobQueue.objects.using(self.using).filter(is_paused=True)
        blocked = ExecutorHost.objects.using(self.using).filter(
            Q(is_active=False) | Q(is_paused=True)
        )
        return (
            ContainerJob.objects.using(self.using)
            .ready()
            .exclude(queue__in=list(paused.values_list("name", flat=True)))
            .exclude(host_id__in=list(blocked.values_list("pk", flat=True)))
            .order_by(*READY_ORDER)
        )

    def get_ready_jobs(
        self, limit: int | None = None, exclude_ids: list[int] | None = None
    ) -> QuerySet[ContainerJob]:
        """Return the jobs ready to launch, highest priority first, then FIFO.

        Ready: queued or retrying, ``scheduled_for`` empty or past, queue not
        paused, pinned host (if any) active and not paused. Paused jobs are
        never ready. This only reads: use ``claim_jobs`` to take jobs.

        Args:
            limit: Most jobs to return; None for all.
            exclude_ids: Job ids to leave out.

        Returns:
            A QuerySet (sliced when ``limit`` is given).

        Raises:
            ValueError: ``limit`` is negative or not a whole number, or an id
                in ``exclude_ids`` is not a whole number.
        """
        qs = self._ready_queryset()
        if exclude_ids:
            ids = list(exclude_ids)
            if any(isinstance(pk, bool) or not isinstance(pk, int) for pk in ids):
                raise ValueError(f"exclude_ids must be whole numbers, not {ids!r}")
            # An id past a bigint is no job's: leaving it out changes nothing.
            qs = qs.exclude(pk__in=[pk for pk in ids if -MAX_LIMIT <= pk <= MAX_LIMIT])
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ValueError(f"limit must be a whole number 0 or more, not {limit!r}")
            # A limit past what a database can count is the same as none.
            if limit < MAX_LIMIT:
                qs = qs[:limit]
        return qs

    def get_failed_jobs(self, queue: str | None = None) -> QuerySet[ContainerJob]:
        """Return failed and timed-out jobs, the ones ``retry_failed_job`` accepts.

        Args:
            queue: Only this named queue; None for all.

        Returns:
            A QuerySet, most recently failed first.
        """
        qs = ContainerJob.objects.using(self.using).filter(
            status__in=sorted(states.RETRYABLE_STATUSES)
        )
        if queue is not None:
            qs = qs.filter(queue=queue)
        return qs.order_by("-completed_at", "-id")

    def retry_failed_job(self, job: ContainerJob, reset_count: bool = False) -> ContainerJob:
        """Queue a failed or timed-out job again.

        Args:
            job: A failed or timed-out job.
            reset_count: Also set ``retry_count`` back to 0, giving the job
                all its attempts again (the admin's "Retry failed jobs" does).

        Returns:
            The job, now ``queued``.

        Raises:
            JobNotQueueableError: (a ValueError) the job is not failed or timed out.
        """
        if job.status not in states.RETRYABLE_STATUSES:
            raise JobNotQueueableError(
                f"Only failed or timed-out jobs can be retried; job {job.pk} is {job.status}"
            )
        with transaction.atomic(using=self.using):
            self._mark_queued(job)
            if reset_count:
                ContainerJob.objects.using(self.using).filter(pk=job.pk).update(retry_count=0)
                job.retry_count = 0
            send_after_commit(job_queued, [job], self.using)
        announce_work(job.queue, using=self.using)
        logger.info(
            "Requeued failed job %s%s",
            job.pk,
            " with a fresh retry count" if reset_count else "",
            extra={"job_id": job.pk},
        )
        return job
