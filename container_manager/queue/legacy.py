"""The documented one-call launch paths, and the legacy (non-queue) mode of the command.

The worker claims jobs in batches (``claim_jobs``) and launches each with
``launch_claimed``. These methods wrap the same two steps for code that
drives the queue by hand:

- :meth:`LegacyMixin.launch_job` and :meth:`LegacyMixin.launch_job_with_retry`
  claim one queued job and launch it now;
- :meth:`LegacyMixin.launch_next_batch` claims and launches up to a number of
  jobs, one after the other;
- :meth:`LegacyMixin.process_job` is what ``process_container_jobs`` without
  ``--queue-mode`` does to each job: launch a pending one, finish a running
  one whose container ended, enforce its timeout.

See docs/queue-management.md (Launching by hand) and docs/command-reference.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import OperationalError
from django.utils import timezone

from container_manager import states
from container_manager.conf import DEFAULT_ACQUIRE_TIMEOUT_SECONDS, DEFAULT_MAX_CONCURRENT
from container_manager.models import ContainerJob
from container_manager.models.queries import active_q
from container_manager.queue.claims import ClaimMixin
from container_manager.queue.launching import LaunchMixin, LaunchOutcome
from container_manager.queue.queueing import QueueingMixin
from container_manager.signals import send_finished
from container_manager.states import JobStatus

logger = logging.getLogger(__name__)

#: How long ``process_job`` waits for the container it killed on timeout to end.
LEGACY_KILL_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class ProcessResult:
    """What :meth:`LegacyMixin.process_job` answers.

    Attributes:
        success: The job was looked at without error.
        error: What went wrong otherwise.
        status: The job's status afterwards.
        detail: A short account of what was done ("finished", "still running").
    """

    success: bool
    error: str = ""
    status: str = ""
    detail: str = ""


class LegacyMixin(QueueingMixin, LaunchMixin, ClaimMixin):
    """``launch_job``, ``launch_job_with_retry``, ``launch_next_batch``, ``process_job``."""

    def launch_job(self, job: ContainerJob) -> dict[str, Any]:
        """Claim and launch one queued job now.

        A failure is classified: a transient one schedules a retry with
        backoff (the job goes to ``retrying``), a permanent one fails the job
        with its error code at once. See :meth:`launch_job_with_retry`, which
        returns the same plus ``retry_scheduled``.

        Args:
            job: A queued job whose time has come. The instance is refreshed.

        Returns:
            ``{'success': bool, 'error': str}``; ``error`` is "" on success.
        """
        outcome = self._launch(job)
        return {"success": outcome.success, "error": outcome.error}

    def launch_job_with_retry(self, job: ContainerJob) -> dict[str, Any]:
        """Claim and launch one queued job, retrying transient failures later.

        Args:
            job: A queued job whose time has come. The instance is refreshed.

        Returns:
            ``{'success': bool, 'error': str, 'retry_scheduled': bool}``:
            on a transient failure with attempts left, ``retry_scheduled`` is
            True and the job waits in ``retrying`` until its backoff passes;
            otherwise a failure is final (status ``failed``, ``error_code`` set).
        """
        outcome = self._launch(job)
        return {
            "success": outcome.success,
            "error": outcome.error,
            "retry_scheduled": outcome.retry_scheduled,
        }

    def _launch(self, job: ContainerJob) -> LaunchOutcome:
        claimed = self.claim_job(job, self.worker_id)
        if claimed is None:
            job.refresh_from_db()
            return LaunchOutcome(
                False, f"Job {job.pk} is not ready to launch (status {job.status})"
            )
        outcome = self.launch_claimed(claimed)
        job.refresh_from_db()
        return outcome

    def launch_next_batch(
        self,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        timeout: int = DEFAULT_ACQUIRE_TIMEOUT_SECONDS,
    ) -> dict[str, Any]:
        """Claim and launch ready jobs until this worker holds ``max_concurrent``.

        Jobs this worker already holds (launching or running) count against
        ``max_concurrent``; the queue and host limits apply on top. The jobs
        are claimed in one transaction, then launched one after the other.

        Args:
            max_concurrent: Most jobs this worker may hold at once (at least 1).
            timeout: Seconds to wait for the claim's host and queue locks on PostgreSQL before
                giving up with an error in ``errors``.

        Returns:
            ``{'launched': int, 'errors': [str]}``, one error per failed launch.

        Raises:
            ValueError: ``max_concurrent`` or ``timeout`` below 1.
        """
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, not {max_concurrent}")
        if timeout < 1:
            raise ValueError(f"timeout must be at least 1 second, not {timeout}")
        held = (
            ContainerJob.objects.using(self.using)
            .filter(active_q(), worker_id=self.worker_id)
            .count()
        )
        free = max_concurrent - held
        if free <= 0:
            return {"launched": 0, "errors": []}
        try:
            jobs = self.claim_jobs(self.worker_id, free, lock_timeout_seconds=timeout)
        except OperationalError as exc:
            logger.warning(
                "Could not acquire jobs within %s s: %s",
                timeout,
                exc,
                extra={"worker_id": self.worker_id},
            )
            return {"launched": 0, "errors": [f"Could not acquire jobs within {timeout} s: {exc}"]}
        launched, errors = 0, []
        for job in jobs:
            outcome = self.launch_claimed(job)
            if outcome.success:
                launched += 1
            else:
                errors.append(f"Job {job.pk}: {outcome.error}")
        return {"launched": launched, "errors": errors}

    # The command without --queue-mode ------------------------------------------

    def process_job(self, job: ContainerJob) -> ProcessResult:
        """Bring one job up to date with its container (the command's legacy mode).

        A pending job is queued and launched now. A running job whose
        container ended gets finished; one past its timeout is killed and
        marked ``timeout``; one whose container is gone is failed. Jobs in
        other statuses are reported as they are. A job whose lease another
        worker holds (a ``--queue-mode`` worker follows it) is left alone:
        only that worker records its end.

        Args:
            job: The job.

        Returns:
            A :class:`ProcessResult` with ``success`` and ``error``.
        """
        try:
            return self._process(job)
        except Exception as exc:
            logger.exception("Processing job %s failed", job.pk, extra={"job_id": job.pk})
            return ProcessResult(False, f"{type(exc).__name__}: {exc}", job.status)

    def _process(self, job: ContainerJob) -> ProcessResult:
        if job.status == JobStatus.PENDING:
            return self._launch_pending(job)
        if job.status != JobStatus.RUNNING:
            detail = "nothing to do" if job.status in states.TERMINAL_STATUSES else "not running"
            return ProcessResult(True, status=job.status, detail=detail)
        if self._is_held_elsewhere(job):
            return ProcessResult(True, status=job.status, detail=f"held by worker {job.worker_id}")
        ref = self.containers.current_ref(job)
        if ref is None:
            job.mark_as_failed(
                error="The container of this job is gone", error_code="INTERNAL_ERROR"
            )
            send_finished(job, self.using)
            return ProcessResult(False, "The container of this job is gone", job.status)
        assert job.host is not None  # current_ref() answers None for a job without one
        ended = self.containers.wait_finished(job.host, [ref], timeout_seconds=0)
        if ended:
            self.finish_job(job, ended[0])
            return ProcessResult(True, status=job.status, detail="finished")
        if job.is_past_timeout(timezone.now()):
            self.timeout_job(job, ref)
            # The killed container's end brings the output, as for any end.
            ended = self.containers.wait_finished(job.host, [ref], LEGACY_KILL_WAIT_SECONDS)
            job.refresh_from_db()
            if ended:
                self.finish_job(job, ended[0])
            return ProcessResult(True, status=job.status, detail="timed out")
        return ProcessResult(True, status=job.status, detail="still running")

    def _is_held_elsewhere(self, job: ContainerJob) -> bool:
        """True when another worker's live lease covers the job (read fresh from the row)."""
        row = (
            ContainerJob.objects.using(self.using)
            .filter(pk=job.pk)
            .values("worker_id", "lease_expires_at")
            .first()
        )
        if row is None or not row["worker_id"] or row["worker_id"] == self.worker_id:
            return False
        expires = row["lease_expires_at"]
        return expires is not None and expires > timezone.now()

    def _launch_pending(self, job: ContainerJob) -> ProcessResult:
        """Queue a pending job and launch it now, as the command did before queues."""
        self.queue_job(job)
        outcome = self.launch_job(job)
        job.refresh_from_db()
        if outcome["success"]:
            return ProcessResult(True, status=job.status, detail="launched")
        return ProcessResult(False, str(outcome["error"]), job.status)
