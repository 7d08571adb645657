"""Launching claimed jobs, and what a failed launch does to them.

The contract with ``container_manager.services.job_service``:

``job_service.launch_job(job)`` only talks to the executor. It gets a job
already claimed by this worker (status ``validating``, ``attempt``
incremented, ``host`` set) and returns an object with:

- ``success: bool``
- ``error: str``           the message, when it failed
- ``error_code: str``      a code of ``classification.CATALOGUE``, or ""
- ``transient: bool | None`` the executor's verdict, None when it cannot tell
- ``container_id: str``    the started container, when it succeeded

It may also raise; the exception is classified like a failed result. It
writes no job state: this module writes every state change (``running`` on
success, ``retrying`` or ``failed`` on failure), so they stay in one place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import OperationalError

from container_manager import states
from container_manager.classification import (
    PERMANENT,
    UNKNOWN,
    UNKNOWN_MAX_ATTEMPTS,
    Classification,
    classify,
    classify_result,
)
from container_manager.exceptions import InvalidStateTransition
from container_manager.models import ContainerJob
from container_manager.queue.claims import ClaimMixin

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 5
DEFAULT_ACQUIRE_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class LaunchOutcome:
    """What became of one launch.

    Attributes:
        success: The container runs and the job is ``running``.
        error: The message when it did not.
        retry_scheduled: A transient failure moved the job to ``retrying``.
        error_code: The catalogue code of the failure.
    """

    success: bool
    error: str = ""
    retry_scheduled: bool = False
    error_code: str = ""


def should_retry(job: ContainerJob, found: Classification) -> bool:
    """Decide whether a failed launch is tried again.

    Transient errors retry while ``retry_count + 1 < effective_max_retries``
    (the model checks that). Permanent errors never retry. Unknown errors
    retry too, but with conservative limits: at most ``UNKNOWN_MAX_ATTEMPTS``
    (2) attempts in all, whatever the job's strategy allows.

    Args:
        job: The job whose launch failed.
        found: The failure's classification.

    Returns:
        True when the job should be rescheduled.
    """
    if found.category == PERMANENT:
        return False
    if found.category == UNKNOWN:
        return job.retry_count + 1 < min(job.effective_max_retries, UNKNOWN_MAX_ATTEMPTS)
    return True


class LaunchMixin(ClaimMixin):
    """``launch_job``, ``launch_job_with_retry`` and ``launch_next_batch``."""

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

    def launch_claimed(self, job: ContainerJob) -> LaunchOutcome:
        """Launch a job this worker has claimed, and record the result.

        Args:
            job: A job returned by ``claim_jobs``/``claim_job``.

        Returns:
            The :class:`LaunchOutcome`. On success the job is ``running`` with
            its ``container_id``; on failure see :meth:`record_launch_failure`.
        """
        try:
            result = self.get_job_service().launch_job(job)
        except Exception as exc:
            logger.warning(
                "Launch of job %s raised %s",
                job.pk,
                type(exc).__name__,
                extra={"job_id": job.pk, "worker_id": self.worker_id},
                exc_info=True,
            )
            return self.record_launch_failure(job, classify(exc))
        if not result.success:
            found = classify_result(
                str(result.error or "Launch failed"),
                str(getattr(result, "error_code", "") or ""),
                getattr(result, "transient", None),
            )
            return self.record_launch_failure(job, found)
        try:
            job.mark_as_running(container_id=str(result.container_id or "") or None)
        except InvalidStateTransition:
            # Cancelled (or taken over) while the container started: it must
            # not run without an owner.
            self._stop_quietly(job)
            return LaunchOutcome(False, f"Job {job.pk} changed to {job.status} during launch")
        logger.info(
            "Launched job %s on %s",
            job.pk,
            job.host.name if job.host else None,
            extra={"job_id": job.pk, "worker_id": self.worker_id},
        )
        return LaunchOutcome(True)

    def record_launch_failure(self, job: ContainerJob, found: Classification) -> LaunchOutcome:
        """Write a failed launch: ``retrying`` with backoff, or finally ``failed``.

        Args:
            job: The claimed job whose launch failed.
            found: The failure's classification.

        Returns:
            The outcome, with ``retry_scheduled`` and the error code.
        """
        retry = should_retry(job, found)
        message = f"{found.code}: {found.message}"
        try:
            scheduled = job.mark_as_failed(
                should_retry=retry, error=found.message, error_code=found.code
            )
        except InvalidStateTransition:
            logger.warning(
                "Job %s changed during its failed launch; left as %s",
                job.pk,
                job.status,
                extra={"job_id": job.pk, "worker_id": self.worker_id},
            )
            return LaunchOutcome(False, message, False, found.code)
        if scheduled:
            logger.warning(
                "Launch of job %s failed (%s, attempt %s); retry at %s",
                job.pk,
                found.code,
                job.retry_count,
                job.scheduled_for,
                extra={"job_id": job.pk, "worker_id": self.worker_id},
            )
        else:
            logger.error(
                "Launch of job %s failed for good (%s): %s",
                job.pk,
                found.code,
                found.message,
                extra={"job_id": job.pk, "worker_id": self.worker_id},
            )
        return LaunchOutcome(False, message, scheduled, found.code)

    def _stop_quietly(self, job: ContainerJob) -> None:
        try:
            self.get_job_service().stop_container(job)
        except Exception:
            logger.exception(
                "Could not stop the container of job %s",
                job.pk,
                extra={"job_id": job.pk, "worker_id": self.worker_id},
            )

    def launch_next_batch(
        self,
        max_concurrent: int = DEFAULT_BATCH_SIZE,
        timeout: int = DEFAULT_ACQUIRE_TIMEOUT_SECONDS,
    ) -> dict[str, Any]:
        """Claim and launch ready jobs until this worker holds ``max_concurrent``.

        Jobs this worker already holds (launching or running) count against
        ``max_concurrent``; the queue and host limits apply on top. The jobs
        are claimed in one transaction, then launched one after the other.

        Args:
            max_concurrent: Most jobs this worker may hold at once (at least 1).
            timeout: Seconds to wait for the claim lock on PostgreSQL before
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
            .filter(worker_id=self.worker_id, status__in=sorted(states.ACTIVE_STATUSES))
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
