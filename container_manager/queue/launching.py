"""Launching claimed jobs, and what a failed launch does to them.

The worker (and ``launch_job``, queue/legacy.py) hands over a job already
claimed by this worker: status ``validating``, ``attempt`` incremented,
``host`` set. :meth:`LaunchMixin.launch_claimed` asks the container layer
(``Containers.launch``, container_manager/containers.py) to start it, records
the launch steps it reports (``preparing``, ``pulling``), then writes the
outcome: ``running`` on success, ``retrying`` or ``failed`` on failure.
The container layer writes nothing itself, so every state change of a launch
stays here.

Before the launch, the claimed job is checked against its host: a host whose
``executor_type`` has no executor, or a job that names an image on a host
that runs no images (``process``), fails at once (permanent). After a launch
that failed for a network reason, the host is asked whether it answers: if it
does not, the failure is the host's, not the job's: the host is marked
unhealthy (queue/hosts.py) and the job waits for it without spending a retry
(``HOST_UNAVAILABLE``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from container_manager.classification import (
    PERMANENT,
    UNKNOWN,
    UNKNOWN_MAX_ATTEMPTS,
    Classification,
    classify,
    classify_result,
)
from container_manager.conf import settings
from container_manager.exceptions import ConfigurationError, InvalidStateTransition
from container_manager.executors import can_load, executor_class, runs_images
from container_manager.executors.base import HealthReport
from container_manager.models import ContainerJob
from container_manager.queue.finishing import FinishMixin
from container_manager.queue.hosts import HostHealthMixin
from container_manager.queue.leases import LeaseMixin
from container_manager.queue.steps import DeferredStep, defer_preparing
from container_manager.signals import job_started, send_after_commit, send_finished
from container_manager.states import JobStatus

logger = logging.getLogger(__name__)

#: Codes of launch failures that may mean the host itself is unreachable; the
#: host is then asked (a health check) before the failure is held against the job.
HOST_FAULT_CODES = frozenset({"DOCKER_NETWORK_ERROR", "CONNECTION_ERROR", "NETWORK_TIMEOUT"})
HOST_UNAVAILABLE = "HOST_UNAVAILABLE"


def names_image(job: ContainerJob) -> bool:
    """True when the job asks for an image of its own (not empty, not ``DEFAULT_IMAGE``)."""
    return bool(job.image) and job.image != str(settings.DEFAULT_IMAGE)


def host_problem(job: ContainerJob) -> Classification | None:
    """Return why the job's host can never run it, or None when it can.

    - The host's ``executor_type`` has no executor (a 1.0.x ``mock``,
      ``cloudrun`` or ``fargate`` row): ``CONFIGURATION_ERROR``.
    - The job names an image (other than ``DEFAULT_IMAGE``) and the host runs
      no images (``process``): ``VALIDATION_INVALID_PARAMS``; the image is
      never silently ignored.

    Args:
        job: A claimed job, ``host`` loaded.

    Returns:
        A permanent :class:`Classification`, or None.
    """
    host = job.host
    if host is None:
        return None
    if not can_load(host.executor_type):
        try:
            executor_class(host.executor_type)
            reason = "cannot be loaded"
        except ConfigurationError as exc:
            reason = str(exc)
        except Exception as exc:
            reason = f"cannot be loaded: {type(exc).__name__}: {exc}"
        return Classification(
            PERMANENT,
            "CONFIGURATION_ERROR",
            f"Host {host.name!r} has executor_type {host.executor_type!r}, which has no "
            f"executor ({reason}); change the host's executor_type, or register an executor "
            "for it (register_executor)",
        )
    if names_image(job) and not runs_images(host.executor_type):
        return Classification(
            PERMANENT,
            "VALIDATION_INVALID_PARAMS",
            f"Job {job.pk} names the image {job.image!r}, but its host {host.name!r} "
            f"(executor_type {host.executor_type!r}) runs commands as local processes and "
            "cannot use an image; give the job a host that runs images, or leave its image "
            "empty",
        )
    return None


@dataclass(frozen=True)
class LaunchOutcome:
    """What became of one launch.

    Attributes:
        success: The container runs and the job is ``running``.
        error: The message when it did not.
        retry_scheduled: A transient failure moved the job to ``retrying``.
        error_code: The catalogue code of the failure.
        finished: The job has ended already (an image task, done by the
            worker itself): there is no container to follow.
    """

    success: bool
    error: str = ""
    retry_scheduled: bool = False
    error_code: str = ""
    finished: bool = False


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


class LaunchMixin(FinishMixin, LeaseMixin, HostHealthMixin):
    """``launch_claimed`` and ``record_launch_failure``; mixed into ``JobQueueManager``."""

    def launch_claimed(self, job: ContainerJob) -> LaunchOutcome:
        """Launch a job this worker has claimed, and record the result.

        Args:
            job: A job returned by ``claim_jobs``/``claim_job``.

        Returns:
            The :class:`LaunchOutcome`. On success the job is ``running`` with
            its ``container_id``; on failure see :meth:`record_launch_failure`,
            and :meth:`wait_for_host` when the host does not answer.
        """
        problem = host_problem(job)
        if problem is not None:
            return self.record_launch_failure(job, problem)
        deferred: list[DeferredStep] = []

        def on_step(step: str) -> None:
            if step == "preparing":
                # Written only if the launch lasts (queue/steps.py), once.
                if job.status == JobStatus.VALIDATING and not deferred:
                    deferred.append(defer_preparing(job, self.using))
                return
            self._settle_steps(job, deferred)
            self.record_step(job, step)

        try:
            result = self.containers.launch(job, on_step=on_step)
        except Exception as exc:
            self._settle_steps(job, deferred)
            logger.warning(
                "Launch of job %s raised %s",
                job.pk,
                type(exc).__name__,
                extra={"job_id": job.pk, "worker_id": self.worker_id},
                exc_info=True,
            )
            found = classify(exc)
            down = self._host_down(job, found, is_outcome_unknown=True)
            if down is not None:
                return self.wait_for_host(job, found, down, is_outcome_unknown=True)
            return self.record_launch_failure(job, found)
        self._settle_steps(job, deferred)
        if not result.success:
            found = classify_result(
                result.error or "Launch failed", result.error_code, result.transient
            )
            if found.code == "CONFIGURATION_ERROR" and job.host is not None:
                found = Classification(
                    found.category,
                    found.code,
                    f"Host {job.host.name!r} (executor_type {job.host.executor_type!r}): "
                    f"{found.message}",
                )
            down = self._host_down(job, found, result.is_outcome_unknown)
            if down is not None:
                return self.wait_for_host(job, found, down, result.is_outcome_unknown)
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
        send_after_commit(job_started, [job], self.using)
        logger.info(
            "Launched job %s (attempt %s) on %s",
            job.pk,
            job.attempt,
            job.host.name if job.host else None,
            extra={"job_id": job.pk, "attempt": job.attempt, "worker_id": self.worker_id},
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

    def _host_down(
        self, job: ContainerJob, found: Classification, is_outcome_unknown: bool
    ) -> HealthReport | None:
        """Ask the job's host whether it answers, after a failure that may be its fault.

        Returns:
            The failed check (the host is now recorded unhealthy), or None when
            the failure is the job's to bear: permanent, not a network error,
            or the host answers.
        """
        host = job.host
        if host is None or found.category == PERMANENT:
            return None
        if not is_outcome_unknown and found.code not in HOST_FAULT_CODES:
            return None
        report = self.probe_host(host)
        if report.is_healthy:
            return None
        self.record_host_health(host, False, report.detail or found.message)
        return report

    def wait_for_host(
        self,
        job: ContainerJob,
        found: Classification,
        report: HealthReport,
        is_outcome_unknown: bool = True,
    ) -> LaunchOutcome:
        """Let a job whose host does not answer wait for it, without spending a retry.

        ``retry_count`` is unchanged; ``last_error`` says the host did not
        answer, ``error_code`` is ``HOST_UNAVAILABLE``. Claims skip the host
        until a check finds it answering again.

        - The launch may have left a container (``is_outcome_unknown``): the
          job keeps its status and attempt and its lease ends now, as in
          :meth:`leave_for_rescue`: the rescue settles the attempt (adopts its
          container, or queues the job again) once the host answers.
        - The host said the attempt has no container: the job goes back to
          ``queued`` at once, in its place, and waits there for its host.

        Args:
            job: The claimed job whose launch failed.
            found: The launch failure's classification.
            report: The failed health check of its host.
            is_outcome_unknown: Whether a container of the attempt may exist.

        Returns:
            The outcome: not launched, no retry scheduled, code ``HOST_UNAVAILABLE``.
        """
        host_name = job.host.name if job.host is not None else "?"
        detail = report.detail or found.message
        message = (
            f"Host {host_name!r} did not answer ({detail}); the job waits for it "
            f"without spending a retry (launch failed with {found.code})"
        )
        if is_outcome_unknown:
            moved = self.expire_leases(
                job.worker_id,
                [int(job.pk)],
                last_error=f"{message}; attempt {job.attempt} is settled once the host answers",
                error_code=HOST_UNAVAILABLE,
            )
        else:
            now = timezone.now()
            moved = (
                ContainerJob.objects.using(self.using)
                .launching()
                .filter(pk=job.pk, worker_id=job.worker_id)
                .exclude(worker_id="")
                .update(
                    status=JobStatus.QUEUED,
                    worker_id="",
                    lease_expires_at=None,
                    current_step="",
                    last_error=message,
                    last_error_at=now,
                    error_code=HOST_UNAVAILABLE,
                )
            )
            if moved:
                job.refresh_from_db()
        logger.info(
            "Launch of job %s waits for host %s (%s)",
            job.pk,
            host_name,
            found.code,
            extra={"job_id": job.pk, "worker_id": self.worker_id},
        )
        outcome = f"{HOST_UNAVAILABLE}: {message}"
        if not moved:
            outcome = f"{outcome} (job changed meanwhile)"
        return LaunchOutcome(False, outcome, False, HOST_UNAVAILABLE)

    @staticmethod
    def _settle_steps(job: ContainerJob, deferred: list[DeferredStep]) -> None:
        """Settle a deferred ``preparing``; the instance learns whether it was written."""
        while deferred:
            if deferred.pop().settle():
                job.set_stored(
                    {"status": JobStatus.PREPARING, "current_step": JobStatus.PREPARING.label}
                )

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
                "Launch of job %s failed (%s, attempt %s): %s; retry in %s",
                job.pk,
                found.code,
                job.retry_count,
                found.message,
                _readable_wait(job.scheduled_for),
                extra={
                    "job_id": job.pk,
                    "attempt": job.attempt,
                    "worker_id": self.worker_id,
                    "error_code": found.code,
                },
            )
        else:
            send_finished(job, self.using)
            logger.error(
                "Launch of job %s failed for good (%s): %s",
                job.pk,
                found.code,
                found.message,
                extra={
                    "job_id": job.pk,
                    "attempt": job.attempt,
                    "worker_id": self.worker_id,
                    "error_code": found.code,
                },
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


def _readable_wait(when: datetime | None) -> str:
    """``2.0 s (at 23:41:22 UTC)``: how long until a retry, and when."""
    if when is None:
        return "a moment"
    seconds = max((when - timezone.now()).total_seconds(), 0.0)
    span = f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
    return f"{span} (at {when.strftime('%H:%M:%S %Z').strip()})"
