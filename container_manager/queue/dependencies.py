"""Jobs that wait for other jobs: failing those whose wait can no longer end well.

A job with dependencies (``JobDependency``) is ready once every job it
waits for has completed (``JobQuerySet.ready``). When one of them ends
otherwise (failed, timed out, cancelled), the waiting job can never start:
:meth:`DependencyMixin.fail_dependents` fails it with ``DEPENDENCY_FAILED``,
naming the job that broke the chain, and the jobs that wait for it in turn
fail at the same pass. Workers call it at each heartbeat, and at once
after a job of theirs ends without completing.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from container_manager.models import ContainerJob, JobDependency
from container_manager.models.queries import failed_dependencies
from container_manager.queue.base import ManagerBase
from container_manager.states import TERMINAL_STATUSES, JobStatus

logger = logging.getLogger(__name__)

DEPENDENCY_FAILED = "DEPENDENCY_FAILED"
#: A chain is followed this many links deep in one pass; longer ones finish at the next.
MAX_CHAIN_PASSES = 50
#: The statuses a waiting job is failed from (a paused one waits for its person).
_WAITING = [JobStatus.QUEUED, JobStatus.RETRYING]


class DependencyMixin(ManagerBase):
    """``fail_dependents``; mixed into ``JobQueueManager``."""

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
            logger.warning(
                "Job %s failed: %s",
                pk,
                message,
                extra={"job_id": pk, "error_code": DEPENDENCY_FAILED},
            )
        return int(moved)
