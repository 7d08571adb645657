"""Launching claimed jobs, and what a failed launch does to them.

The worker (and ``launch_job``, queue/legacy.py) hands over a job already
claimed by this worker: status ``validating``, ``attempt`` incremented,
``host`` set. :meth:`LaunchMixin.launch_claimed` asks the container layer
(``Containers.launch``, container_manager/containers.py) to start it, records
the launch steps it reports (``preparing``, ``pulling``), then writes the
outcome: ``running`` on success, ``retrying`` or ``failed`` on failure.
The container layer writes nothing itself, so every state change of a launch
stays here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

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
from container_manager.queue.finishing import FinishMixin
from container_manager.queue.leases import LeaseMixin

logger = logging.getLogger(__name__)


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


class LaunchMixin(FinishMixin, LeaseMixin):
    """``launch_claimed`` and ``record_launch_failure``; mixed into ``JobQueueManager``."""

    def launch_claimed(self, job: ContainerJob) -> LaunchOutcome:
        """Launch a job this worker has claimed, and record the result.

        Args:
            job: A job returned by ``claim_jobs``/``claim_job``.

        Returns:
            The :class:`LaunchOutcome`. On success the job is ``running`` with
            its ``container_id``; on failure see :meth:`record_launch_failure`.
        """
        try:
            result = self.containers.launch(job, on_step=lambda step: self._on_step(job, step))
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
                result.error or "Launch failed", result.error_code, result.transient
            )
            if result.is_outcome_unknown:
                return self.leave_for_rescue(job, found)
            return self.record_launch_failure(job, found)
        try:
            job.mark_as_running(container_id=result.container_id or None)
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

    def leave_for_rescue(self, job: ContainerJob, found: Classification) -> LaunchOutcome:
        """Hand a job whose launch may have left a container to the rescue.

        Its lease ends now and its status stays the launch step it was in:
        the next rescue pass (of any worker) asks the host for the attempt's
        container once the host answers, and adopts the job if it exists or
        queues it again, as a new attempt, if it does not. So an engine that
        cannot be reached costs the job none of its retries, and a container
        started by a call that timed out is never joined by a second attempt.

        Args:
            job: The claimed job whose launch failed ambiguously.
            found: The failure's classification.

        Returns:
            The outcome: not launched, no retry scheduled.
        """
        message = f"{found.code}: {found.message}"
        moved = self.expire_leases(
            job.worker_id,
            [int(job.pk)],
            last_error=f"Launch outcome unknown ({found.message}); the rescue decides",
            error_code=found.code,
        )
        logger.warning(
            "Launch of job %s may have left a container (%s); left for the rescue",
            job.pk,
            found.code,
            extra={"job_id": job.pk, "worker_id": self.worker_id},
        )
        return LaunchOutcome(False, message if moved else f"{message} (job changed meanwhile)")

    def _on_step(self, job: ContainerJob, step: str) -> None:
        self.record_step(job, step)

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
            self.containers.stop(job)
        except Exception:
            logger.exception(
                "Could not stop the container of job %s",
                job.pk,
                extra={"job_id": job.pk, "worker_id": self.worker_id},
            )
