"""Creating and queueing new jobs in one call: one job, or many in one statement.

``queue_job`` queues a job already saved (an UPDATE after its INSERT). A
program that makes its jobs to run them at once saves the round trip:
:meth:`BulkQueueMixin.create_and_queue` writes one job already queued (one
INSERT), and :meth:`BulkQueueMixin.queue_jobs` writes many (one multi-row
INSERT per 1,000 jobs, in one transaction, with one wake-up per queue).
Every job is validated as ``save()`` validates it before anything is
written: one bad job refuses the whole batch, and nothing is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from container_manager import states
from container_manager.exceptions import JobNotQueueableError
from container_manager.models import ContainerJob, ImageBuildContext
from container_manager.models.job import QUEUE_SETTINGS_FIELDS, SPEC_FIELDS
from container_manager.notify import announce_work
from container_manager.queue.base import ManagerBase
from container_manager.signals import job_queued, send_after_commit
from container_manager.states import JobStatus

logger = logging.getLogger(__name__)

#: Rows per INSERT statement of ``queue_jobs``.
BULK_BATCH_SIZE = 1000


def _check_schedule(schedule_for: object) -> datetime | None:
    if schedule_for is None:
        return None
    if not isinstance(schedule_for, datetime):
        raise ValidationError({"scheduled_for": f"Not a datetime: {schedule_for!r}."})
    if timezone.is_naive(schedule_for):
        return timezone.make_aware(schedule_for)
    return schedule_for


#: How often an INSERT with a unique key is tried when its holder keeps ending.
UNIQUE_INSERT_TRIES = 5


def window_start(unique_for: timedelta | int, has_key: bool) -> datetime:
    """The start of the window of ``unique_for`` that holds the present (aligned to the epoch).

    Raises:
        ValidationError: The length is not positive, or there is no unique key.
    """
    seconds = unique_for.total_seconds() if isinstance(unique_for, timedelta) else unique_for
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 1:
        raise ValidationError({"unique_for": f"Must be at least 1 second, not {unique_for!r}."})
    if not has_key:
        raise ValidationError({"unique_key": "unique_for needs a unique_key."})
    now = timezone.now().timestamp()
    start = now - now % int(seconds)
    return datetime.fromtimestamp(start, tz=UTC)


#: What a job run again copies from the job it repeats: what to run, where, and
#: how to queue it (not its state, output or schedule).
RUN_AGAIN_FIELDS = (*SPEC_FIELDS, *QUEUE_SETTINGS_FIELDS)


class BulkQueueMixin(ManagerBase):
    """``create_and_queue`` and ``queue_jobs``; mixed into ``JobQueueManager``."""

    def create_and_queue(
        self,
        *,
        schedule_for: datetime | None = None,
        unique_for: timedelta | int | None = None,
        **fields: Any,
    ) -> ContainerJob:
        """Create a job already queued, in one INSERT, and wake idle workers.

        With a ``unique_key``, a job of the same queue holding that key
        (not finished yet; with ``unique_for``, made in the same window) is
        returned instead of a second one; the database decides, so two
        callers racing get one job.

        Args:
            schedule_for: When it may start (aware datetime); None for now.
            unique_for: With ``unique_key``: the key is unique in windows of
                this length (a timedelta or seconds, aligned to the Unix
                epoch), whatever the status of the job that holds it.
            **fields: The job's fields, as for ``ContainerJob.objects.create``.

        Returns:
            The saved job, ``queued``; or the job that holds its unique key.

        Raises:
            ValidationError: A field is invalid (named); nothing is written.
        """
        job = ContainerJob(**fields)
        if unique_for is not None:
            job.unique_window_start = window_start(unique_for, bool(job.unique_key))
        [job] = self.queue_jobs([job], schedule_for=schedule_for)
        return job

    def run_again(self, job: ContainerJob) -> ContainerJob:
        """Queue a new job with the settings of ``job`` (:data:`RUN_AGAIN_FIELDS`).

        The job it repeats, whatever its status, is left as it is.

        A build's context archive is copied with it; the jobs ``job`` waited
        for are not (they ended already).

        Returns:
            The new job, ``queued``.

        Raises:
            ValidationError: A copied field no longer validates (named).
        """
        fields = {name: getattr(job, name) for name in RUN_AGAIN_FIELDS}
        context = ImageBuildContext.objects.using(self.using).filter(job_id=job.pk).first()
        with transaction.atomic(using=self.using):
            again = self.create_and_queue(**fields)
            if context is not None:
                ImageBuildContext.objects.using(self.using).create(
                    job=again, archive=context.archive, size=context.size
                )
        return again

    def queue_jobs(
        self, jobs: Iterable[ContainerJob], schedule_for: datetime | None = None
    ) -> list[ContainerJob]:
        """Save many new jobs already queued: one transaction, one wake-up per queue.

        Args:
            jobs: Unsaved jobs (``ContainerJob(...)``), in the order to queue them.
            schedule_for: When they may start (aware datetime); None for now.

        Returns:
            The jobs, saved (with their ids on PostgreSQL and SQLite) and ``queued``.

        Raises:
            ValidationError: A job's field is invalid; the message names the
                job's position and the field. Nothing is written.
            JobNotQueueableError: (a ValueError) a job is already saved
                (queue it with ``queue_job``). Nothing is written.
        """
        batch = list(jobs)
        when = _check_schedule(schedule_for)
        now = timezone.now()
        for index, job in enumerate(batch):
            if not isinstance(job, ContainerJob) or job.pk is not None:
                raise JobNotQueueableError(
                    f"queue_jobs takes new, unsaved jobs; item {index} is {job!r}"
                )
            job.status = JobStatus.QUEUED
            job.queued_at = now
            job.scheduled_for = when
            try:
                job.validate_for_save()
            except ValidationError as exc:
                problems = (
                    exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
                )
                if len(batch) == 1:
                    raise
                raise ValidationError(
                    {
                        field: [f"Job {index} of the batch: {message}" for message in messages]
                        for field, messages in problems.items()
                    }
                ) from exc
        if not batch:
            return batch
        plain = [job for job in batch if not job.unique_key]
        result = list(batch)
        with transaction.atomic(using=self.using):
            ContainerJob.objects.using(self.using).bulk_create(plain, batch_size=BULK_BATCH_SIZE)
            made = list(plain)
            for index, job in enumerate(batch):
                if job.unique_key:
                    holder = self._insert_unique(job)
                    result[index] = holder
                    if holder is job:
                        made.append(job)
            for queue in sorted({job.queue for job in made}):
                announce_work(queue, using=self.using)
            send_after_commit(job_queued, made, self.using)
        for job in made:
            job.set_stored({"status": JobStatus.QUEUED})
        return result

    def _insert_unique(self, job: ContainerJob) -> ContainerJob:
        """Insert a job with a unique key, or return the job that holds the key.

        The INSERT runs in a savepoint: on PostgreSQL a concurrent INSERT of
        the same key waits for the other transaction, then fails or succeeds,
        so exactly one job holds a key. When the holder ends between the
        failed INSERT and the look-up, the INSERT is tried again.
        """
        jobs = ContainerJob.objects.using(self.using)
        for _ in range(UNIQUE_INSERT_TRIES):
            try:
                with transaction.atomic(using=self.using):
                    jobs.bulk_create([job])
                return job
            except IntegrityError:
                holder = jobs.filter(queue=job.queue, unique_key=job.unique_key)
                if job.unique_window_start is None:
                    holder = holder.filter(
                        unique_window_start__isnull=True,
                        status__in=sorted(states.UNFINISHED_STATUSES),
                    )
                else:
                    holder = holder.filter(unique_window_start=job.unique_window_start)
                found = holder.order_by("pk").first()
                if found is not None:
                    logger.info(
                        "Job with unique key %r is already queued as job %s",
                        job.unique_key,
                        found.pk,
                        extra={"job_id": found.pk},
                    )
                    return found
                job.pk = None
        raise IntegrityError(
            f"Could not queue a job with unique key {job.unique_key!r} in queue {job.queue!r}"
        )
