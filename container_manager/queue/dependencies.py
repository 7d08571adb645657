"""Jobs that wait for other jobs, and arrays of jobs made from one template.

:meth:`DependencyMixin.queue_after` queues a job that waits for others
(``JobDependency``): it is ready once every job it waits for has completed
(``JobQuerySet.ready``). When one of them ends otherwise (failed, timed
out, cancelled), the waiting job can never start:
:meth:`DependencyMixin.fail_dependents` fails it with ``DEPENDENCY_FAILED``,
naming the job that broke the chain, and the jobs that wait for it in turn
fail at the same pass. Workers call it at each heartbeat, and at once
after an image task of theirs fails. Dependencies are given when a job is
made, on jobs that exist, so they never form a cycle.

:meth:`DependencyMixin.create_array` makes N jobs of one template in one
transaction (a ``JobArray``), each with its ``array_index``; a job can
wait for a whole array (``after=[array]``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from container_manager.models import ContainerJob, ImageBuildContext, JobArray, JobDependency
from container_manager.models.queries import failed_dependencies
from container_manager.queue.bulk import BulkQueueMixin
from container_manager.signals import job_finished, send_finished
from container_manager.states import TERMINAL_STATUSES, JobStatus

logger = logging.getLogger(__name__)

DEPENDENCY_FAILED = "DEPENDENCY_FAILED"
#: A chain is followed this many links deep in one pass; longer ones finish at the next.
MAX_CHAIN_PASSES = 50
#: The statuses a waiting job is failed from (a paused one waits for its person).
_WAITING = [JobStatus.QUEUED, JobStatus.RETRYING]


#: The largest array one request makes.
MAX_ARRAY_SIZE = 10_000
#: What a job may wait for: jobs, and whole arrays.
Waited = ContainerJob | JobArray


class DependencyMixin(BulkQueueMixin):
    """``queue_after``, ``create_array`` and ``fail_dependents``; mixed into ``JobQueueManager``."""

    def queue_after(self, job: ContainerJob, after: Iterable[Waited]) -> ContainerJob:
        """Queue a new job that waits for other jobs to complete.

        It is ready once every one of them has completed; if one fails, times
        out or is cancelled, it fails with ``DEPENDENCY_FAILED``.

        Args:
            job: An unsaved job (``ContainerJob(...)``).
            after: Saved jobs to wait for, or arrays (all of their jobs).

        Returns:
            The job, saved and queued.
        """
        return self._queue_with(job, after, None)

    def _queue_with(
        self, job: ContainerJob, after: Iterable[Waited], archive: bytes | None
    ) -> ContainerJob:
        waits_for = self._waited_jobs(after)
        with transaction.atomic(using=self.using):
            [saved] = self.queue_jobs([job], schedule_for=job.scheduled_for)
            if saved is not job:
                return saved  # Its unique key is held: that job is the answer, as it is.
            if archive is not None:
                ImageBuildContext.objects.using(self.using).create(
                    job=saved, archive=archive, size=len(archive)
                )
            JobDependency.objects.using(self.using).bulk_create(
                [JobDependency(job=saved, depends_on=other) for other in waits_for]
            )
        return saved

    def _waited_jobs(self, after: Iterable[Waited]) -> list[ContainerJob]:
        """The jobs ``after`` names: saved jobs, and every job of each array."""
        found: list[ContainerJob] = []
        for other in after:
            if isinstance(other, JobArray) and other.pk is not None:
                found.extend(ContainerJob.objects.using(self.using).filter(array=other))
            elif isinstance(other, ContainerJob) and other.pk is not None:
                found.append(other)
            else:
                raise ValidationError({"after": f"Not a saved job or array: {other!r}."})
        return list({job.pk: job for job in found}.values())

    def create_array(
        self,
        size: int,
        *,
        after: Iterable[Waited] = (),
        array_name: str = "",
        schedule_for: datetime | None = None,
        **fields: Any,
    ) -> JobArray:
        """Queue ``size`` jobs of one template at once, each with its index.

        Every job gets the same fields, ``array`` and its ``array_index``
        (0 to ``size`` - 1); its containers see ``CM_ARRAY_INDEX`` and
        ``CM_ARRAY_SIZE``. One transaction: all are queued, or none.

        Args:
            size: How many jobs (1 to ``MAX_ARRAY_SIZE``).
            after: Jobs or arrays every job of the array waits for.
            array_name: The array's name; the jobs are named ``<name>[<index>]``.
            schedule_for: When they may start (aware datetime); None for now.
            **fields: The jobs' fields, as for ``create_and_queue``.

        Returns:
            The :class:`JobArray`; its jobs are ``array.jobs``.

        Raises:
            ValidationError: A field, or the size, is invalid; nothing is written.
        """
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_ARRAY_SIZE:
            raise ValidationError(
                {"size": f"An array has 1 to {MAX_ARRAY_SIZE} jobs, not {size!r}."}
            )
        if fields.get("unique_key"):
            raise ValidationError({"unique_key": "The jobs of an array cannot share a unique key."})
        waits_for = self._waited_jobs(after)
        base = array_name or str(fields.get("name", "")) or "array"
        with transaction.atomic(using=self.using):
            array = JobArray.objects.using(self.using).create(name=base, size=size)
            jobs = [
                ContainerJob(
                    **{**fields, "name": f"{base}[{index}]"}, array=array, array_index=index
                )
                for index in range(size)
            ]
            self.queue_jobs(jobs, schedule_for=schedule_for)
            JobDependency.objects.using(self.using).bulk_create(
                [JobDependency(job=job, depends_on=other) for job in jobs for other in waits_for],
                batch_size=1000,
            )
        return array

    def fail_dependents(self) -> int:
        """Fail the waiting jobs one of whose dependencies ended without completing.

        Each is one guarded UPDATE (only a job still queued or retrying
        changes), so workers running this at the same time fail a job once.

        Returns:
            How many jobs were failed.
        """
        failed = 0
        for _ in range(MAX_CHAIN_PASSES):
            doomed = list(
                ContainerJob.objects.using(self.using)
                .filter(status__in=_WAITING)
                .filter(failed_dependencies())
                .values_list("pk", flat=True)[:500]
            )
            if not doomed:
                break
            for pk in doomed:
                failed += self._fail_one(pk)
        return failed

    def _fail_one(self, pk: int) -> int:
        broke = (
            JobDependency.objects.using(self.using)
            .filter(job_id=pk, depends_on__status__in=sorted(TERMINAL_STATUSES - {"completed"}))
            .values_list("depends_on_id", "depends_on__status", "depends_on__error_code")
            .order_by("depends_on_id")
            .first()
        )
        if broke is None:
            return 0
        other, status, code = broke
        because = f" ({code})" if code else ""
        message = f"Job {other}, which this job waits for, ended {status}{because}; it will not run"
        now = timezone.now()
        moved = (
            ContainerJob.objects.using(self.using)
            .filter(pk=pk, status__in=_WAITING)
            .update(
                status=JobStatus.FAILED,
                error_code=DEPENDENCY_FAILED,
                last_error=message,
                last_error_at=now,
                completed_at=now,
                worker_id="",
                lease_expires_at=None,
            )
        )
        if moved:
            if job_finished.has_listeners(ContainerJob):
                send_finished(ContainerJob.objects.using(self.using).get(pk=pk), self.using)
            logger.warning(
                "Job %s failed: %s",
                pk,
                message,
                extra={"job_id": pk, "error_code": DEPENDENCY_FAILED},
            )
        return int(moved)
