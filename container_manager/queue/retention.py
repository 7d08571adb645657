"""Retention: delete finished jobs and stopped worker rows once they are old enough.

Finished jobs (completed, failed, cancelled, timed out) whose end is older
than the age given are deleted, a batch at a time, oldest first; so are the
rows of workers that stopped (or stopped beating) that long ago. A finished
job that a job still waiting depends on is kept until that job ends. The
statistics stay exact: on PostgreSQL the tally of finished jobs is kept by
triggers that count deletes too (models/tally.py), elsewhere it is counted
from the rows. ``prune_jobs`` runs it by hand; a worker runs it at each
clean-up pass when ``RETENTION_DAYS`` is set.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.db import models, transaction
from django.utils import timezone

from container_manager.conf import settings
from container_manager.models import ContainerJob, JobDependency, Worker
from container_manager.queue.base import ManagerBase
from container_manager.states import TERMINAL_STATUSES, UNFINISHED_STATUSES

logger = logging.getLogger(__name__)

#: Rows deleted per statement.
PRUNE_BATCH_SIZE = 1000


@dataclass(frozen=True)
class PruneResult:
    """What a prune deleted (or, with ``dry_run``, would delete)."""

    jobs: int
    workers: int
    kept_for_dependents: int


_AGE = re.compile(r"(\d+)\s*([smhdw]?)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "": 86400}


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w`` or a number of days, as a timedelta.

    Raises:
        ValueError: The text is not an age (the message says what one looks like).
    """
    match = _AGE.fullmatch(str(text).strip().lower())
    if match is None:
        raise ValueError(
            f"An age is a number and a unit, like 30d, 12h, 90m or 2w (a bare number is "
            f"days), not {text!r}"
        )
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def retention_age() -> timedelta | None:
    """The ``RETENTION_DAYS`` setting as an age, or None when it is not set."""
    days = settings.RETENTION_DAYS
    return None if days is None else timedelta(days=days)


class RetentionMixin(ManagerBase):
    """``prune``; mixed into ``JobQueueManager``."""

    def prunable_jobs(self, older_than: timedelta) -> models.QuerySet[ContainerJob]:
        """Finished jobs that ended before ``now - older_than`` and no waiting job depends on."""
        cutoff = timezone.now() - older_than
        waiting = JobDependency.objects.filter(
            depends_on_id=models.OuterRef("pk"),
            job__status__in=sorted(UNFINISHED_STATUSES),
        )
        return (
            ContainerJob.objects.using(self.using)
            .filter(status__in=sorted(TERMINAL_STATUSES), completed_at__lt=cutoff)
            .exclude(models.Exists(waiting))
        )

    def prune(
        self,
        older_than: timedelta,
        *,
        workers: bool = True,
        dry_run: bool = False,
        batch_size: int = PRUNE_BATCH_SIZE,
        progress: Callable[[int, int], None] | None = None,
    ) -> PruneResult:
        """Delete finished jobs, and stopped worker rows, older than ``older_than``.

        Args:
            older_than: How long ago a job must have ended (a worker stopped).
            workers: Also delete the rows of workers stopped that long ago.
            dry_run: Count only; delete nothing.
            batch_size: Jobs deleted per statement (each its own transaction).
            progress: Called with (deleted so far, total) after each batch.

        Returns:
            How many jobs and worker rows were (or would be) deleted, and
            how many old finished jobs were kept because a waiting job
            depends on them.

        Raises:
            ValueError: ``older_than`` is negative, or ``batch_size`` below 1.
        """
        if older_than < timedelta(0):
            raise ValueError(f"older_than must not be negative, not {older_than}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        cutoff = timezone.now() - older_than
        jobs = self.prunable_jobs(older_than)
        total = jobs.count()
        old = ContainerJob.objects.using(self.using).filter(
            status__in=sorted(TERMINAL_STATUSES), completed_at__lt=cutoff
        )
        kept = old.count() - total
        stale = Worker.objects.using(self.using).filter(last_heartbeat_at__lt=cutoff)
        worker_rows = stale.count() if workers else 0
        if dry_run:
            return PruneResult(total, worker_rows, kept)
        deleted = 0
        while True:
            ids = list(
                jobs.order_by("completed_at", "pk").values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                break
            with transaction.atomic(using=self.using):
                ContainerJob.objects.using(self.using).filter(pk__in=ids).delete()
            deleted += len(ids)
            if progress is not None:
                progress(deleted, max(total, deleted))
        removed_workers = 0
        if workers:
            # Only rows whose last beat is that old: a live worker beats every
            # HEARTBEAT_SECONDS, so it is never among them.
            removed_workers, _ = stale.delete()
        if deleted or removed_workers:
            logger.info(
                "Pruned %s finished job(s) and %s worker row(s) older than %s",
                deleted,
                removed_workers,
                older_than,
            )
        return PruneResult(deleted, removed_workers, kept)
