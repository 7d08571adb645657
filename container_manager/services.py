"""1.0.x's service functions, kept working for one major version (deprecated).

In 1.0.x, code launched and followed jobs itself with ``launch_job``,
``check_job_status`` and ``harvest_job_results`` (or the
``JobManagementService`` they wrap). In 2.x the queue does it: queue the job
(``queue_manager.queue_job``) and let ``process_container_jobs --queue-mode``
run it. These functions still work, through the queue's own steps
(``queue_manager.process_job``, ``launch_job``), and each raises a
``DeprecationWarning`` naming the 2.x way. They are removed in 3.0.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

from container_manager import states
from container_manager.models import ContainerJob, ExecutorHost
from container_manager.models.legacy import warn
from container_manager.queue import queue_manager
from container_manager.states import JobStatus

_QUEUE_WAY = "queue_manager.queue_job(job) and process_container_jobs --queue-mode"


def _launch(job: ContainerJob) -> dict[str, Any]:
    if job.status == JobStatus.PENDING:
        # 1.0.x launched a pending job directly: it is queued, then launched now.
        processed = queue_manager.process_job(job)
        success, error = processed.success and job.status == JobStatus.RUNNING, processed.error
        if processed.success and not success:
            error = f"Job {job.pk} was not launched ({processed.detail or job.status})"
    else:
        result = queue_manager.launch_job(job)
        success, error = bool(result["success"]), str(result.get("error") or "")
    if success:
        return {"success": True, "execution_id": job.container_id}
    return {"success": False, "error": error or f"Job {job.pk} was not launched ({job.status})"}


def _bring_up_to_date(job: ContainerJob) -> str:
    """Record the end of a running job whose container ended; return an error or ""."""
    if job.status != JobStatus.RUNNING:
        return ""
    processed = queue_manager.process_job(job)
    return "" if processed.success else processed.error


def _check(job: ContainerJob) -> dict[str, Any]:
    if not job.container_id:
        return {
            "status": "not-found",
            "execution_id": None,
            "error": "No execution identifier found",
        }
    error = _bring_up_to_date(job)
    if job.status in (JobStatus.RUNNING, JobStatus.PAUSED):
        status = "running"
    elif job.status in states.TERMINAL_STATUSES:
        status = "exited"
    else:
        status = "not-found"
    return {"status": status, "execution_id": job.container_id, "error": error or None}


def _harvest(job: ContainerJob) -> dict[str, Any]:
    if not job.container_id:
        return {
            "success": False,
            "status": "unknown",
            "logs_collected": False,
            "error": "No execution identifier found",
        }
    error = _bring_up_to_date(job)
    ended = job.status in states.TERMINAL_STATUSES
    if not ended and not error:
        error = f"Job {job.pk} is still {job.status}"
    return {"success": ended, "status": job.status, "logs_collected": ended, "error": error or None}


def launch_job(job: ContainerJob) -> dict[str, Any]:
    """Deprecated: launch a job now; a pending one is queued first.

    Returns:
        ``{"success": True, "execution_id": container_id}`` or
        ``{"success": False, "error": str}``, as in 1.0.x. The job is
        ``running`` once launched: 1.0.x's ``mark_as_running()`` after it is
        not needed.
    """
    warn("container_manager.services.launch_job()", _QUEUE_WAY)
    return _launch(job)


def check_job_status(job: ContainerJob) -> dict[str, Any]:
    """Deprecated: ``running``, ``exited`` or ``not-found``, recording the end of an ended job.

    Returns:
        ``{"status": str, "execution_id": str | None, "error": str | None}``.
    """
    warn("container_manager.services.check_job_status()", _QUEUE_WAY)
    return _check(job)


def harvest_job_results(job: ContainerJob) -> dict[str, Any]:
    """Deprecated: record the end and output of a job whose container ended.

    Returns:
        ``{"success": bool, "status": str, "logs_collected": bool, "error": str | None}``.
    """
    warn("container_manager.services.harvest_job_results()", _QUEUE_WAY)
    return _harvest(job)


class JobManagementService:
    """Deprecated: 1.0.x's service object; its methods are the functions above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        warn(
            "container_manager.services.JobManagementService",
            "container_manager.queue.queue_manager",
        )

    def launch_job(self, job: ContainerJob) -> dict[str, Any]:
        """As :func:`launch_job`."""
        return _launch(job)

    def check_job_status(self, job: ContainerJob) -> dict[str, Any]:
        """As :func:`check_job_status`."""
        return _check(job)

    def harvest_job_results(self, job: ContainerJob) -> dict[str, Any]:
        """As :func:`harvest_job_results`."""
        return _harvest(job)

    def validate_job_for_execution(self, job: ContainerJob) -> list[str]:
        """The job's validation errors, one string each; empty when it can run."""
        try:
            job.full_clean()
        except ValidationError as exc:
            return [
                f"{field}: {message}"
                for field, messages in exc.message_dict.items()
                for message in messages
            ]
        return []

    def get_host_display_info(self, host: ExecutorHost) -> dict[str, str]:
        """The host's name, type and connection, for display."""
        return {
            "name": host.name,
            "type": str(host.get_executor_type_display()),
            "connection": host.connection_string,
        }


__all__ = ["JobManagementService", "check_job_status", "harvest_job_results", "launch_job"]
