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
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from container_manager.conf import settings
from container_manager.models import ContainerJob
from container_manager.notify import announce_work
from container_manager.queue.base import ManagerBase
from container_manager.states import JobStatus

logger = logging.getLogger(__name__)

#: How far in the past an expired-on-purpose lease is set, so that it reads as
#: expired on every machine even with a little clock skew.
EXPIRED_LEASE_AGE = timedelta(seconds=1)
#: The error code of a job whose worker stopped beating (docs/api-reference.md).
WORKER_LOST = "WORKER_LOST"


def lease_delta(lease_seconds: int | float | None) -> timedelta:
    """Return the lease length: ``lease_seconds`` or ``LEASE_SECONDS``.

    Raises:
        ValueError: For a lease of zero or less.
    """
    seconds = settings.LEASE_SECONDS if lease_seconds is None else lease_seconds
    if seconds <= 0:
        raise ValueError(f"lease_seconds must be positive, not {seconds}")
    return timedelta(seconds=seconds)


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
            ContainerJob.objects.using(self.using).held_by(worker_id).update(lease_expires_at=until)
        )

    def expire_leases(
        self,
        worker_id: str,
        job_ids: Iterable[int] | None = None,
        *,
        last_error: str = "",
        error_code: str = "",
    ) -> int:
        """Expire, now, the leases of jobs held under ``worker_id``.

        The next rescue pass of any worker then adopts or requeues them. A
        worker restarting under the same id does this for every job its
        earlier life held; a worker that lost track of some jobs does it for
        those.

        Args:
            worker_id: The holding worker's id.
            job_ids: Only these jobs; None for every job it holds.
            last_error: Also store this as the jobs' last error ("" keeps it).
            error_code: Also store this error code ("" keeps it).

        Returns:
            How many leases were expired.
        """
        qs = ContainerJob.objects.using(self.using).held_by(worker_id)
        if job_ids is not None:
            qs = qs.filter(pk__in=list(job_ids))
        now = timezone.now()
        fields: dict[str, Any] = {"lease_expires_at": now - EXPIRED_LEASE_AGE}
        if last_error:
            fields.update(last_error=last_error, last_error_at=now)
        if error_code:
            fields["error_code"] = error_code
        return qs.update(**fields)

    def hand_over(self, worker_id: str, job_ids: Iterable[int]) -> int:
        """Let another worker adopt running containers now (a stopping worker's last step).

        The leases of the given jobs, running or paused and held by
        ``worker_id``, end now instead of at their expiry. Jobs still being
        launched are left alone: their launch may still record them.

        Args:
            worker_id: The stopping worker.
            job_ids: The jobs whose containers it leaves running.

        Returns:
            How many jobs were handed over.
        """
        ids = list(job_ids)
        if not ids:
            return 0
        return (
            ContainerJob.objects.using(self.using)
            .held_by(worker_id)
            .filter(pk__in=ids, status__in=[JobStatus.RUNNING, JobStatus.PAUSED])
            .update(lease_expires_at=timezone.now())
        )

    def record_container(self, job: ContainerJob, worker_id: str, container_id: str) -> bool:
        """Store the container id of an adopted running job that had none recorded.

        Args:
            job: The job; its instance is updated.
            worker_id: The worker that adopted it.
            container_id: The container found by its labels.

        Returns:
            True when the id was stored.
        """
        moved = (
            ContainerJob.objects.using(self.using)
            .filter(pk=job.pk, worker_id=worker_id, attempt=job.attempt, container_id="")
            .update(container_id=container_id)
        )
        if moved:
            job.container_id = container_id
        return bool(moved)

    def release_job(self, job: ContainerJob, worker_id: str, reason: str = "") -> bool:
        """Hand a claimed job whose container was never started back to the queue.

        The job goes from validating, preparing or pulling back to ``queued``
        (keeping its ``attempt``, so the next claim uses ``attempt + 1``, and
        its place in the queue). Used by a worker that stops before launching.

        Only a job whose attempt has no container goes back: the host is asked
        first. A job with a container (one this worker adopted mid-launch), or
        whose host does not answer, keeps its status and has its lease expired
        instead, so that the next worker adopts it or, once the host answers,
        queues it again.

        Args:
            job: The job.
            worker_id: The worker that holds it; nothing happens if another does.
            reason: Why, for the log.

        Returns:
            True when the job was released to the queue.
        """
        try:
            ref = self.containers.find(job)
        except Exception as exc:
            logger.warning(
                "Job %s is left for adoption: its host cannot say whether it has a container (%s)",
                job.pk,
                exc,
                extra={"job_id": job.pk, "worker_id": worker_id},
            )
            self.expire_leases(worker_id, [int(job.pk)])
            return False
        if ref is not None:
            logger.info(
                "Job %s has a container already; left for the next worker to adopt",
                job.pk,
                extra={"job_id": job.pk, "worker_id": worker_id},
            )
            self.expire_leases(worker_id, [int(job.pk)])
            return False
        moved = (
            ContainerJob.objects.using(self.using)
            .launching()
            .filter(pk=job.pk, worker_id=worker_id)
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
            .expired()
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
        moved = self._still_expired(job, now).update(
            worker_id=worker_id, last_worker_id=worker_id, lease_expires_at=until
        )
        if moved:
            logger.warning(
                "Took over job %s from worker %r",
                job.pk,
                job.worker_id,
                extra={"job_id": job.pk, "worker_id": worker_id},
            )
            job.worker_id, job.last_worker_id, job.lease_expires_at = worker_id, worker_id, until
        return bool(moved)

    def requeue_orphan(
        self,
        job: ContainerJob,
        *,
        what_happened: str = "",
        lost_worker: str = "",
        held_by: str = "",
        error_code: str = WORKER_LOST,
    ) -> bool:
        """Put an expired job whose container or process is gone back in the queue.

        The job keeps its ``attempt`` (the next claim uses ``attempt + 1``, so
        a late container of the lost attempt can never be confused with the
        new one) and its ``retry_count``: a worker that died is not the job's
        failure, so it costs the job none of its retries. ``last_error`` says
        what became of the lost attempt, and ``error_code`` why it was lost.

        Args:
            job: An expired job, as loaded by :meth:`expired_jobs` (guarded on
                its ``worker_id`` and ``lease_expires_at``), or one that
                ``held_by`` took over to end its process first.
            what_happened: What became of the attempt, for ``last_error``
                ("ended before its container was made" when not given: a
                container of the attempt was looked for and not found).
            lost_worker: The worker that lost the attempt, when ``job`` has
                been taken over since; ``job.worker_id`` otherwise.
            held_by: The worker that took the job over (:meth:`take_over`) to
                kill the attempt's process before queueing it again; the
                update is then guarded on that holder and the attempt.
            error_code: ``WORKER_LOST`` (the default: its worker stopped
                beating), or ``HOST_UNAVAILABLE`` when the attempt was lost
                because its host did not answer while its worker lived on.

        Returns:
            True when the job was requeued; False when someone else got to it first.
        """
        now = timezone.now()
        lost = lost_worker or job.worker_id
        happened = what_happened or "ended before its container was made"
        fields: dict[str, Any] = {
            "status": JobStatus.QUEUED,
            "worker_id": "",
            "lease_expires_at": None,
            "launched_at": None,
            "started_at": None,
            "container_id": "",
            "current_step": "",
            "last_error": (
                f"Attempt {job.attempt} (held by worker {lost!r}) {happened}; queued again"
            ),
            "last_error_at": now,
            "error_code": error_code,
        }
        rows: QuerySet[ContainerJob]
        if held_by:
            rows = ContainerJob.objects.using(self.using).filter(
                pk=job.pk, status=job.status, worker_id=held_by, attempt=job.attempt
            )
        else:
            rows = self._still_expired(job, now)
        moved = rows.update(**fields)
        if moved:
            logger.warning(
                "Requeued job %s lost by worker %r: attempt %s %s",
                job.pk,
                lost,
                job.attempt,
                happened,
                extra={"job_id": job.pk, "worker_id": lost},
            )
            announce_work(job.queue, using=self.using)
            job.refresh_from_db()
        return bool(moved)
