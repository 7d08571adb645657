"""``job_service``: the glue between the queue and the executors.

The queue (``container_manager.queue``) writes job state and knows the
database, not Docker; an executor knows its engine, not the queue. This
module is where the two meet:

- :meth:`JobService.launch_job` starts the container of a claimed job and
  answers with a :class:`LaunchResult`; it writes no state except the launch
  steps (``preparing`` when it starts, ``pulling`` when the executor reports
  a pull). The queue records the outcome (``running``, ``retrying`` or
  ``failed``).
- :meth:`JobService.finish_job` stores how a container ended: exit code,
  output capped at ``LOG_MAX_BYTES``, the final status, then applies
  ``CONTAINER_RETENTION``.
- :meth:`JobService.stop_container`, :meth:`JobService.pause_container` and
  :meth:`JobService.resume_container` back the queue's cancel, pause and resume.
- :meth:`JobService.process_job` is the legacy (non-queue) mode of
  ``process_container_jobs``: it finishes a running job whose container ended.

Example::

    from container_manager.services import job_service

    result = job_service.launch_job(job)
    if not result.success:
        print(result.error_code, result.error)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone

from container_manager import states
from container_manager.classification import classify
from container_manager.conf import settings
from container_manager.exceptions import InvalidStateTransition
from container_manager.executors import get_executor
from container_manager.executors.base import ContainerRef, Executor, ExitStatus, LaunchSpec, Logs
from container_manager.models import ContainerJob
from container_manager.states import JobStatus

logger = logging.getLogger(__name__)

#: Error codes of a container that ended badly.
EXIT_NONZERO = "CONTAINER_EXIT_NONZERO"
OOM_KILLED = "CONTAINER_OOM_KILLED"
#: Launch steps an executor may report, and the status each one is recorded as.
STEP_STATUSES = {"preparing": JobStatus.PREPARING, "pulling": JobStatus.PULLING}


@dataclass(frozen=True)
class LaunchResult:
    """What :meth:`JobService.launch_job` answers.

    Attributes:
        success: The container was started (or already existed for this attempt).
        error: The message when it was not.
        error_code: A code of ``classification.CATALOGUE`` when it was not.
        transient: True when trying again later may succeed, False when it
            cannot, None when nobody can tell.
        container_id: The started container's id.
        ref: The executor's reference to it.
    """

    success: bool
    error: str = ""
    error_code: str = ""
    transient: bool | None = None
    container_id: str = ""
    ref: ContainerRef | None = None


@dataclass(frozen=True)
class ProcessResult:
    """What :meth:`JobService.process_job` answers (legacy mode).

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


def job_ref(job: ContainerJob) -> ContainerRef:
    """Return the reference of the job's current attempt's container.

    Args:
        job: A job with ``container_id`` set (or not: the id is then "").

    Returns:
        The :class:`ContainerRef`.
    """
    return ContainerRef(job_id=int(job.pk), attempt=int(job.attempt), container_id=job.container_id)


class JobService:
    """Launch, stop, pause, resume and finish the containers of jobs."""

    def executor_for(self, job: ContainerJob) -> Executor:
        """Return the executor of the job's host.

        Raises:
            ValueError: The job has no host (it was never claimed).
        """
        if job.host is None:
            raise ValueError(f"Job {job.pk} has no host")
        return get_executor(job.host)

    # Launch ------------------------------------------------------------------

    def launch_job(self, job: ContainerJob) -> LaunchResult:
        """Start the container of a claimed job's current attempt.

        Idempotent per attempt (the executor finds a container of this job
        and attempt instead of starting a second one). The job moves to
        ``preparing`` first, and to ``pulling`` while the executor pulls its
        image. Any exception is caught and classified; nothing is raised.

        Args:
            job: A job claimed by a worker: ``host`` set, ``attempt`` incremented.

        Returns:
            The :class:`LaunchResult`; on failure ``error``, ``error_code``
            and ``transient`` say what happened.
        """
        if job.host is None:
            return LaunchResult(False, f"Job {job.pk} has no host", "NO_HOST_AVAILABLE", True)
        try:
            executor = get_executor(job.host)
            spec = LaunchSpec.from_job(job)
            # Claimed jobs are "validating"; from here the container is being made.
            self._record_step(job, "preparing")
            ref = executor.launch(spec, on_step=lambda step: self._record_step(job, step))
        except Exception as exc:
            found = classify(exc)
            logger.warning(
                "Launch of job %s failed: %s (%s)",
                job.pk,
                found.message,
                found.code,
                extra={"job_id": job.pk, "worker_id": job.worker_id},
            )
            transient = None if found.category == "unknown" else found.is_transient
            return LaunchResult(False, found.message, found.code, transient)
        return LaunchResult(True, container_id=ref.container_id, ref=ref)

    def _record_step(self, job: ContainerJob, step: str) -> None:
        """Record a launch step the executor reports; never fails the launch."""
        status = STEP_STATUSES.get(step)
        if status is None or job.status == status or not job.can_transition_to(status):
            return
        try:
            job.transition_to(status, current_step=JobStatus(status).label)
        except InvalidStateTransition:
            logger.info(
                "Job %s changed during launch (now %s)",
                job.pk,
                job.status,
                extra={"job_id": job.pk, "worker_id": job.worker_id},
            )

    # Control -----------------------------------------------------------------

    def _existing_ref(self, job: ContainerJob) -> ContainerRef | None:
        if job.host is None:
            return None
        if job.container_id:
            return job_ref(job)
        return self.executor_for(job).find(int(job.pk), int(job.attempt))

    def stop_container(self, job: ContainerJob) -> bool:
        """Kill the container of the job's current attempt, if there is one.

        Args:
            job: The job (cancelled, timed out, or launched while being cancelled).

        Returns:
            True when a container was found and killed.

        Raises:
            ExecutorError: The engine failed (other than "already gone").
        """
        ref = self._existing_ref(job)
        if ref is None:
            return False
        self.executor_for(job).kill(ref)
        logger.info("Stopped the container of job %s", job.pk, extra={"job_id": job.pk})
        return True

    def pause_container(self, job: ContainerJob) -> bool:
        """Freeze the container of a running job.

        Returns:
            True when a container was paused; False when there is none.

        Raises:
            NotImplementedError: The host's executor cannot pause.
            ExecutorError: The engine failed.
        """
        ref = self._existing_ref(job)
        if ref is None:
            return False
        self.executor_for(job).pause(ref)
        return True

    def resume_container(self, job: ContainerJob) -> bool:
        """Thaw the container of a paused job.

        Returns:
            True when a container was resumed; False when there is none.

        Raises:
            NotImplementedError: The host's executor cannot resume.
            ExecutorError: The engine failed.
        """
        ref = self._existing_ref(job)
        if ref is None:
            return False
        self.executor_for(job).resume(ref)
        return True

    # Finish ------------------------------------------------------------------

    def collect_logs(self, job: ContainerJob, ref: ContainerRef) -> Logs:
        """Return the container's output, each stream capped at ``LOG_MAX_BYTES``.

        A failure to read is logged and answered with empty output: the
        result of the job matters more than its logs.
        """
        try:
            return self.executor_for(job).logs(ref, int(settings.LOG_MAX_BYTES))
        except Exception:
            logger.warning(
                "Could not read the output of job %s",
                job.pk,
                extra={"job_id": job.pk},
                exc_info=True,
            )
            return Logs(stdout="", stderr="")

    def finish_job(
        self, job: ContainerJob, exit_status: ExitStatus, worker_id: str | None = None
    ) -> bool:
        """Store how a job's container ended, and apply ``CONTAINER_RETENTION``.

        Exit code 0 completes the job; any other code fails it with
        ``CONTAINER_EXIT_NONZERO``, or ``CONTAINER_OOM_KILLED`` when the engine
        killed it for memory. Output is stored capped at ``LOG_MAX_BYTES``.
        The write is one guarded UPDATE: only a job still ``running`` (and,
        with ``worker_id``, still held by that worker) is changed, so a job
        cancelled or timed out meanwhile keeps that status.

        Args:
            job: The running job.
            exit_status: What the executor reported.
            worker_id: The worker holding the job; None to skip that guard.

        Returns:
            True when this call wrote the job's end.
        """
        ref = exit_status.ref
        logs = self.collect_logs(job, ref)
        fields = self._final_fields(job, exit_status, logs)
        qs = ContainerJob.objects.filter(
            pk=job.pk, status=JobStatus.RUNNING, attempt=exit_status.ref.attempt
        )
        if worker_id is not None:
            qs = qs.filter(worker_id=worker_id)
        moved = qs.update(**fields)
        if moved:
            for name, value in fields.items():
                setattr(job, name, value)
            job.refresh_from_db()
            logger.info(
                "Job %s ended with exit code %s: %s",
                job.pk,
                exit_status.exit_code,
                fields["status"],
                extra={"job_id": job.pk, "worker_id": worker_id},
            )
        else:
            # A job cancelled or timed out while it ran keeps its status, and
            # gets its output.
            ContainerJob.objects.filter(
                pk=job.pk, status__in=(JobStatus.CANCELLED, JobStatus.TIMEOUT), attempt=ref.attempt
            ).update(
                stdout=fields["stdout"], stderr=fields["stderr"], exit_code=fields["exit_code"]
            )
            logger.info(
                "Job %s was no longer running when its container ended",
                job.pk,
                extra={"job_id": job.pk, "worker_id": worker_id},
            )
        self.apply_retention(job, ref, is_success=fields["status"] == JobStatus.COMPLETED)
        return bool(moved)

    def _final_fields(
        self, job: ContainerJob, exit_status: ExitStatus, logs: Logs
    ) -> dict[str, Any]:
        now = timezone.now()
        code = exit_status.exit_code
        ended = exit_status.finished_at or now
        if job.started_at is not None and ended < job.started_at:
            # The engine's clock, or a container that ended before we recorded its start.
            ended = now
        fields: dict[str, Any] = {
            "exit_code": code,
            "stdout": logs.stdout,
            "stderr": logs.stderr,
            "completed_at": ended,
            "worker_id": "",
            "lease_expires_at": None,
        }
        if code == 0 and not exit_status.is_oom_killed:
            fields.update(status=JobStatus.COMPLETED, progress=100)
            return fields
        error_code = OOM_KILLED if exit_status.is_oom_killed else EXIT_NONZERO
        message = exit_status.error or (
            "Killed for using more memory than its limit"
            if exit_status.is_oom_killed
            else f"Exited with code {code}"
        )
        fields.update(
            status=JobStatus.FAILED, error_code=error_code, last_error=message, last_error_at=now
        )
        return fields

    def apply_retention(self, job: ContainerJob, ref: ContainerRef, is_success: bool) -> None:
        """Remove an ended container, or keep it, per ``CONTAINER_RETENTION``.

        ``"remove"`` removes every ended container, ``"keep_failed"`` keeps
        those of failed jobs, ``"keep"`` keeps all of them.
        """
        retention = str(settings.CONTAINER_RETENTION)
        if retention == "keep" or (retention == "keep_failed" and not is_success):
            return
        try:
            self.executor_for(job).remove(ref)
        except Exception:
            logger.warning(
                "Could not remove the container of job %s",
                job.pk,
                extra={"job_id": job.pk},
                exc_info=True,
            )

    def timeout_job(self, job: ContainerJob, ref: ContainerRef) -> bool:
        """Kill a job that ran past ``timeout_seconds`` and record ``timeout``.

        Args:
            job: The running job.
            ref: Its container.

        Returns:
            True when this call recorded the timeout.
        """
        # The timeout is written before the kill: the other way round, the
        # follower could record the killed container's end (exit 137) as a
        # failure first.
        try:
            job.mark_as_timeout()
        except InvalidStateTransition:
            return False
        executor = self.executor_for(job)
        executor.kill(ref)
        logs = self.collect_logs(job, ref)
        ContainerJob.objects.filter(pk=job.pk).update(stdout=logs.stdout, stderr=logs.stderr)
        logger.warning(
            "Job %s timed out after %s s and was killed",
            job.pk,
            job.timeout_seconds,
            extra={"job_id": job.pk, "worker_id": job.worker_id},
        )
        self.apply_retention(job, ref, is_success=False)
        return True

    # Legacy mode ---------------------------------------------------------------

    def process_job(self, job: ContainerJob) -> ProcessResult:
        """Bring one job up to date with its container (legacy mode).

        A pending job is queued and launched now. A running job whose
        container ended gets finished; one past its timeout is killed and
        marked ``timeout``; one whose container is gone is failed. Jobs in
        other statuses are reported as they are.

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
        ref = self._existing_ref(job)
        if ref is None:
            job.mark_as_failed(
                error="The container of this job is gone", error_code="INTERNAL_ERROR"
            )
            return ProcessResult(False, "The container of this job is gone", job.status)
        ended = self.executor_for(job).wait_finished([ref], timeout_seconds=0)
        if ended:
            self.finish_job(job, ended[0])
            return ProcessResult(True, status=job.status, detail="finished")
        started = job.started_at or job.launched_at
        if started and timezone.now() - started > timedelta(seconds=job.timeout_seconds):
            self.timeout_job(job, ref)
            job.refresh_from_db()
            return ProcessResult(True, status=job.status, detail="timed out")
        return ProcessResult(True, status=job.status, detail="still running")

    def _launch_pending(self, job: ContainerJob) -> ProcessResult:
        """Queue a pending job and launch it now, as the command did before queues."""
        from container_manager.queue import queue_manager

        queue_manager.queue_job(job)
        outcome = queue_manager.launch_job(job)
        job.refresh_from_db()
        if outcome["success"]:
            return ProcessResult(True, status=job.status, detail="launched")
        return ProcessResult(False, str(outcome["error"]), job.status)


#: The instance everyone imports.
job_service = JobService()

__all__ = ["JobService", "LaunchResult", "ProcessResult", "job_ref", "job_service"]
