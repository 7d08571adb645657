"""Queue statistics for the command line and the worker (one aggregate query each)."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from container_manager.models import ContainerJob, ExecutorHost, JobQueue
from container_manager.models.queries import (
    due_q,
    holding_q,
    launch_failed_q,
    launching_q,
    waiting_q,
)
from container_manager.models.tally import history_from_jobs, history_from_tally, is_kept
from container_manager.queue.base import ManagerBase
from container_manager.states import UNFINISHED_STATUSES, JobStatus


def queue_counts(using: str = "default", queue: str | None = None) -> dict[str, int]:
    """Count jobs by their place in the queue, in one query.

    Args:
        using: The database alias.
        queue: Only this named queue; None for all.

    Returns:
        ``ready_now``, ``scheduled_future``, ``launching``, ``running``,
        ``paused``, ``retrying`` and ``launch_failed``.
    """
    waiting = waiting_q()
    due = due_q(timezone.now())
    qs = ContainerJob.objects.using(using).all()
    if queue is not None:
        qs = qs.filter(queue=queue)
    # Over the jobs not finished only (the status indexes); the finished ones
    # that failed to launch come from their tally.
    counts = qs.filter(status__in=sorted(UNFINISHED_STATUSES)).aggregate(
        ready_now=Count("status", filter=waiting & due),
        scheduled_future=Count("status", filter=waiting & ~due),
        launching=Count("status", filter=launching_q()),
        running=Count("status", filter=Q(status=JobStatus.RUNNING)),
        paused=Count("status", filter=Q(status=JobStatus.PAUSED)),
        retrying=Count("status", filter=Q(status=JobStatus.RETRYING)),
    )
    if is_kept(using):
        groups = history_from_tally(using, queue)
    else:
        groups = history_from_jobs(qs.filter(launch_failed_q()))
    counts["launch_failed"] = sum(group.jobs for group in groups if group.launch_failed)
    return counts


class ReportingMixin(ManagerBase):
    """``get_queue_stats`` and ``get_worker_metrics``; mixed into ``JobQueueManager``."""

    def get_queue_stats(self) -> dict[str, int]:
        """Return the queue's counts, as docs/api-reference.md documents them.

        Returns:
            ``queued`` (ready to launch now), ``scheduled`` (waiting for their
            time, including retries in backoff), ``running`` (containers
            running), ``launch_failed`` (failed before a container ever ran),
            plus ``launching`` (claimed, being launched), ``paused`` and
            ``retrying``.
        """
        counts = queue_counts(self.using)
        return {
            "queued": counts["ready_now"],
            "scheduled": counts["scheduled_future"],
            "running": counts["running"],
            "launch_failed": counts["launch_failed"],
            "launching": counts["launching"],
            "paused": counts["paused"],
            "retrying": counts["retrying"],
        }

    def get_worker_metrics(self) -> dict[str, Any]:
        """Return what a worker (and ``--dry-run``) shows about the queue.

        Returns:
            The counts of ``queue_counts`` (``ready_now``, ``scheduled_future``,
            ``running``, ``launch_failed``, ...), plus ``worker_id``,
            ``held_by_worker`` (jobs this manager's worker id holds),
            ``paused_queues`` (names), ``available_hosts`` and
            ``free_host_slots`` (free capacity summed over active, unpaused hosts).
        """
        metrics: dict[str, Any] = dict(queue_counts(self.using))
        holding = ContainerJob.objects.using(self.using).holding()
        metrics["worker_id"] = self.worker_id
        metrics["held_by_worker"] = holding.filter(worker_id=self.worker_id).count()
        metrics["paused_queues"] = list(
            JobQueue.objects.using(self.using).filter(is_paused=True).values_list("name", flat=True)
        )
        hosts = list(
            ExecutorHost.objects.using(self.using)
            .filter(is_active=True, is_paused=False)
            .annotate(load=Count("jobs", filter=holding_q("jobs__")))
        )
        metrics["available_hosts"] = len(hosts)
        metrics["free_host_slots"] = sum(max(h.max_concurrent_jobs - h.load, 0) for h in hosts)
        return metrics
