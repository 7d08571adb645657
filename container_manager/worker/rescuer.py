"""Rescue: jobs whose worker disappeared are adopted or requeued, never launched twice.

A job held by a worker carries a lease that its heartbeat renews. When the
lease has expired, the worker is presumed dead (SIGKILL, machine loss) and
any other worker may rescue the job:

1. ``queue_manager.take_over`` makes exactly one worker the new holder.
2. The holder asks the host's executor for the container of the job's
   *current attempt*, by its labels (``executor.find(job_id, attempt)``).
3. Found: the job is adopted. A job still in a launch step (the old worker
   died between creating the container and recording it) is completed by
   ``executor.launch`` of the same attempt, which is idempotent: it returns
   the existing container and starts it if it was only created, so the
   attempt never gets a second container. Then the follower watches it.
4. Not found: the container never existed, so nothing runs; the job goes
   back to the queue (``requeue_orphan``) and its next claim is a new
   attempt.

A worker that restarts under the same id first expires the leases of the
jobs its previous life held, so it rescues them at once instead of waiting.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from django.utils import timezone

from container_manager import states
from container_manager.executors import get_executor
from container_manager.models import ContainerJob
from container_manager.queue.claims import LEASED_STATUSES
from container_manager.states import JobStatus

if TYPE_CHECKING:
    from container_manager.executors.base import ContainerRef
    from container_manager.worker.loop import Worker

logger = logging.getLogger(__name__)

#: Expired jobs looked at per rescue pass, beyond the free slots (some are
#: requeued, which takes no slot).
EXTRA_CANDIDATES = 10


class Rescuer:
    """Adopt or requeue jobs whose lease expired."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def expire_own_leases(self) -> int:
        """Expire the leases of jobs held under this worker id by an earlier process.

        Returns:
            How many jobs were found.
        """
        past = timezone.now() - timedelta(seconds=1)
        return ContainerJob.objects.filter(
            worker_id=self.worker.worker_id, status__in=LEASED_STATUSES
        ).update(lease_expires_at=past)

    def expire_untracked(self) -> int:
        """Expire the leases of jobs held under this id that this process lost track of.

        The heartbeat renews every lease held under the worker's id; a job
        whose follow-up failed unexpectedly would be renewed for ever without
        anyone watching it. Its lease is expired instead, so that the next
        rescue pass (of any worker) adopts or requeues it. Runs on the main
        loop's thread, which also registers every claim and adoption, so a
        job is never caught between its claim and its registration.

        Returns:
            How many jobs were found.
        """
        worker = self.worker
        known = set(worker.claimer.job_ids()) | set(worker.follower.job_ids())
        held = ContainerJob.objects.filter(
            worker_id=worker.worker_id, status__in=LEASED_STATUSES
        ).values_list("pk", flat=True)
        lost = [pk for pk in held if pk not in known]
        if not lost:
            return 0
        logger.warning(
            "Worker %s holds jobs %s that it does not follow; expiring their leases",
            worker.worker_id,
            lost,
            extra={"worker_id": worker.worker_id},
        )
        past = timezone.now() - timedelta(seconds=1)
        return ContainerJob.objects.filter(pk__in=lost, worker_id=worker.worker_id).update(
            lease_expires_at=past
        )

    def rescue(self, free_slots: int) -> int:
        """Adopt or requeue expired jobs, adopting at most ``free_slots`` containers.

        Args:
            free_slots: Containers this worker may still take on.

        Returns:
            How many jobs were adopted or requeued.
        """
        handled = 0
        worker = self.worker
        for job in worker.queue.expired_jobs(limit=max(free_slots, 0) + EXTRA_CANDIDATES):
            if worker.is_stopping:
                break
            if worker.queues is not None and job.queue not in worker.queues:
                # A worker dedicated to some queues leaves the others' jobs to their workers.
                continue
            try:
                if self.rescue_job(job, adopt=worker.free_slots() > 0):
                    handled += 1
            except Exception:
                logger.exception(
                    "Rescuing job %s failed",
                    job.pk,
                    extra={"job_id": job.pk, "worker_id": worker.worker_id},
                )
        return handled

    def rescue_job(self, job: ContainerJob, adopt: bool = True) -> bool:
        """Adopt one expired job if its container exists, or requeue it.

        Args:
            job: A job from ``expired_jobs``.
            adopt: False when this worker has no free slot: only jobs without a
                container (which take no slot) are handled.

        Returns:
            True when this worker adopted or requeued the job.
        """
        worker = self.worker
        if job.host is None:
            return self._requeue(job)
        # Errors reaching the engine propagate: the job is left for a later
        # pass, since a container we cannot see may still exist.
        ref = get_executor(job.host).find(int(job.pk), int(job.attempt))
        if ref is None:
            return self._requeue(job)
        if not adopt:
            return False
        if not worker.queue.take_over(job, worker.worker_id, worker.lease_seconds):
            return False
        worker.stats.count("jobs_adopted")
        if job.status in states.LAUNCHING_STATUSES:
            worker.claimer.relaunch(job)
            return True
        if job.status == JobStatus.RUNNING and not job.container_id:
            ContainerJob.objects.filter(pk=job.pk, worker_id=worker.worker_id).update(
                container_id=ref.container_id
            )
            job.container_id = ref.container_id
        self._follow(job, ref)
        return True

    def _follow(self, job: ContainerJob, ref: ContainerRef) -> None:
        logger.warning(
            "Adopted job %s (attempt %s, container %s)",
            job.pk,
            job.attempt,
            ref.container_id[:12],
            extra={"job_id": job.pk, "worker_id": self.worker.worker_id},
        )
        self.worker.echo(f"Adopted job {job.pk} (attempt {job.attempt})")
        self.worker.follower.add(job, ref)

    def _requeue(self, job: ContainerJob) -> bool:
        if not self.worker.queue.requeue_orphan(job):
            return False
        self.worker.stats.count("jobs_requeued")
        self.worker.echo(f"Requeued job {job.pk}: its worker was lost before it started")
        return True
