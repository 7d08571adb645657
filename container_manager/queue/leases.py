"""Leases: a worker's hold on its jobs, renewed, handed back, or taken over when it dies.

A claimed job carries ``worker_id`` and ``lease_expires_at``. The worker's
heartbeat renews the lease (:meth:`LeaseMixin.renew_leases`); a worker that
stops cleanly hands unlaunched jobs back (:meth:`LeaseMixin.release_job`); a
worker that dies lets its leases expire, and the others find those jobs
(:meth:`LeaseMixin.expired_jobs`) and either adopt them, when the container
exists (:meth:`LeaseMixin.take_over`), or requeue them
(:meth:`LeaseMixin.requeue_orphan`). Every change is one guarded UPDATE.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from container_manager import states
from container_manager.models import ContainerJob
from container_manager.notify import announce_work
from container_manager.queue.base import ManagerBase
from container_manager.queue.claims import LEASED_STATUSES, lease_delta
from container_manager.states import JobStatus

logger = logging.getLogger(__name__)


class LeaseMixin(ManagerBase):
    """Leases and takeover; mixed into ``JobQueueManager``."""

    def renew_leases(self, worker_id: str, lease_seconds: int | None = None) -> int:
        """Extend the lease of every job the worker holds (its heartbeat calls this).

        Args:
            worker_id: The worker's id.
            lease_seconds: New lease length from now; None for ``LEASE_SECONDS``.

        Returns:
            How many jobs' leases were extended.
        """
        until = timezone.now() + lease_delta(lease_seconds)
        return (
            ContainerJob.objects.using(self.using)
            .filter(worker_id=worker_id, status__in=LEASED_STATUSES)
            .exclude(worker_id="")
            .update(lease_expires_at=until)
        )

    def release_job(self, job: ContainerJob, worker_id: str, reason: str = "") -> bool:
        """Hand a claimed job whose container was never started back to the queue.

        The job goes from validating, preparing or pulling back to ``queued``
        (keeping its ``attempt``, so the next claim uses ``attempt + 1``, and
        its place in the queue). Used by a worker that stops before launching.

        Args:
            job: The job.
            worker_id: The worker that holds it; nothing happens if another does.
            reason: Why, for the log.

        Returns:
            True when the job was released.
        """
        moved = (
            ContainerJob.objects.using(self.using)
            .filter(pk=job.pk, worker_id=worker_id, status__in=sorted(states.LAUNCHING_STATUSES))
            .exclude(worker_id="")
            .update(status=JobStatus.QUEUED, worker_id="", lease_expires_at=None, current_step="")
        )
        if moved:
            logger.info(
                "Released job %s back to the queue: %s",
                job.pk,
                reason or "worker stopping",
                extra={"job_id": job.pk, "worker_id": worker_id},
            )
            announce_work(job.queue, using=self.using)
            job.refresh_from_db()
        return bool(moved)

    def expired_jobs(self, limit: int = 100) -> list[ContainerJob]:
        """Return held jobs whose lease has expired: their worker is presumed dead.

        Args:
            limit: Most jobs to return, oldest lease first.

        Returns:
            Jobs in validating, preparing, pulling, running or paused with
            ``lease_expires_at`` in the past, with ``host`` loaded.
        """
        return list(
            ContainerJob.objects.using(self.using)
            .select_related("host", "environment_template")
            .filter(status__in=LEASED_STATUSES, lease_expires_at__lt=timezone.now())
            .order_by("lease_expires_at", "id")[:limit]
        )

    def _still_expired(self, job: ContainerJob, now: datetime) -> QuerySet[ContainerJob]:
        """The job's row, only while it still has the lease ``job`` was loaded with, expired."""
        return ContainerJob.objects.using(self.using).filter(
            pk=job.pk,
            status=job.status,
            worker_id=job.worker_id,
            lease_expires_at=job.lease_expires_at,
            lease_expires_at__lt=now,
        )

    def take_over(
        self, job: ContainerJob, worker_id: str, lease_seconds: int | None = None
    ) -> bool:
        """Adopt an expired job: exactly one worker wins, however many try.

        One guarded UPDATE: it matches only while the row still has the
        ``worker_id`` and ``lease_expires_at`` this instance was loaded with,
        and the lease is still expired.

        Args:
            job: A job from :meth:`expired_jobs`.
            worker_id: The adopting worker.
            lease_seconds: The new lease; None for ``LEASE_SECONDS``.

        Returns:
            True when this worker now holds the job (the instance is updated).
        """
        now = timezone.now()
        until = now + lease_delta(lease_seconds)
        moved = self._still_expired(job, now).update(worker_id=worker_id, lease_expires_at=until)
        if moved:
            logger.warning(
                "Took over job %s from worker %r",
                job.pk,
                job.worker_id,
                extra={"job_id": job.pk, "worker_id": worker_id},
            )
            job.worker_id, job.lease_expires_at = worker_id, until
        return bool(moved)

    def requeue_orphan(self, job: ContainerJob) -> bool:
        """Put an expired job whose container never existed back in the queue.

        The job keeps its ``attempt`` (the next claim uses ``attempt + 1``, so
        a late container of the lost attempt can never be confused with the
        new one) and its ``retry_count``: a worker that died is not the job's
        failure, so it costs the job none of its retries. ``last_error`` and
        ``error_code`` (``WORKER_LOST``) record what happened.

        Args:
            job: An expired job, as loaded by :meth:`expired_jobs` (guarded on
                its ``worker_id`` and ``lease_expires_at``).

        Returns:
            True when the job was requeued; False when someone else got to it first.
        """
        now = timezone.now()
        fields: dict[str, Any] = {
            "status": JobStatus.QUEUED,
            "worker_id": "",
            "lease_expires_at": None,
            "launched_at": None,
            "started_at": None,
            "container_id": "",
            "current_step": "",
            "last_error": f"Worker {job.worker_id!r} was lost before the container started",
            "last_error_at": now,
            "error_code": "WORKER_LOST",
        }
        moved = self._still_expired(job, now).update(**fields)
        if moved:
            logger.warning(
                "Requeued job %s lost by worker %r",
                job.pk,
                job.worker_id,
                extra={"job_id": job.pk, "worker_id": job.worker_id},
            )
            announce_work(job.queue, using=self.using)
            job.refresh_from_db()
        return bool(moved)
