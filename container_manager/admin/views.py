"""The job admin's extra pages: per-job buttons, the log view and queue statistics.

Every page is routed through ``admin_site.admin_view`` (staff login, CSRF)
and checks the user's permission again itself: a user without it gets 403.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from container_manager import states
from container_manager.admin.actions import apply_to_jobs, report
from container_manager.admin.display import status_label
from container_manager.admin.inputs import parse_id
from container_manager.admin.stats_view import queue_control, statistics_context
from container_manager.containers import containers, job_ref
from container_manager.models import ContainerJob
from container_manager.queue import queue_manager
from container_manager.states import JobStatus

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite

logger = logging.getLogger(__name__)

#: Bytes of each stream read from a running container per refresh of the log view.
LIVE_LOG_MAX_BYTES = 256 * 1024
#: How often the log view asks for new output, in milliseconds.
LOG_POLL_INTERVAL_MS = 2000
#: Statuses in which a container may be running and printing.
LIVE_STATUSES = frozenset({JobStatus.RUNNING, JobStatus.PAUSED})

#: Per-job buttons: url name -> (permission verb, operation, past tense).
JOB_OPERATIONS: dict[str, tuple[str, Callable[[ContainerJob], Any], str]] = {
    "queue": ("queue", queue_manager.queue_job, "Queued"),
    "dequeue": ("queue", queue_manager.dequeue_job, "Removed from queue"),
    "cancel": ("cancel", queue_manager.cancel_job, "Cancelled"),
    "pause": ("pause", queue_manager.pause_job, "Paused"),
    "resume": ("pause", queue_manager.resume_job, "Resumed"),
}


def read_output(job: ContainerJob) -> dict[str, Any]:
    """Return what the log view shows of a job: live output while it runs, else stored.

    While the container runs (or is paused), its output is read from the
    executor of its host. When the host cannot be reached, the stored output
    is shown with a message saying why.

    Args:
        job: The job, with its host loaded.

    Returns:
        ``status``, ``status_label``, ``progress``, ``current_step``,
        ``is_active`` (the page should keep refreshing), ``is_live`` (the
        output came from the container), ``message``, ``stdout``, ``stderr``.
    """
    payload: dict[str, Any] = {
        "id": job.pk,
        "status": job.status,
        "status_label": status_label(job.status),
        "progress": job.progress,
        "current_step": job.live_step,
        # A status outside the state machine never moves on by itself.
        "is_active": job.status in JobStatus.values and job.status not in states.TERMINAL_STATUSES,
        "is_live": False,
        "message": "",
        "stdout": job.stdout,
        "stderr": job.stderr,
    }
    if job.status not in JobStatus.values:
        payload["message"] = f"The job's status {job.status!r} is not one of the job states."
        return payload
    if job.status not in LIVE_STATUSES or job.host is None or not job.container_id:
        if payload["is_active"]:
            payload["message"] = "The job has no running container yet; waiting for it."
        return payload
    try:
        logs = containers.logs(job, job_ref(job), LIVE_LOG_MAX_BYTES)
    except Exception as exc:
        logger.warning(
            "Live output of job %s from host %s is unavailable: %s",
            job.pk,
            job.host.name,
            exc,
            extra={"job_id": job.pk},
        )
        payload["message"] = (
            f"Live output is unavailable (host {job.host.name}: {exc}); "
            "showing the output stored so far."
        )
        return payload
    payload.update(is_live=True, stdout=logs.stdout, stderr=logs.stderr)
    return payload


class JobViewsMixin:
    """Extra URLs of ``ContainerJobAdmin``; expects a ModelAdmin to mix into."""

    admin_site: AdminSite
    model: type[ContainerJob]

    def get_urls(self) -> list[URLPattern]:
        """Add the statistics page, the log view and the per-job buttons."""
        wrap = self.admin_site.admin_view
        info = "container_manager_containerjob"
        extra = [
            path("queue-stats/", wrap(self.queue_stats_view), name=f"{info}_queue_stats"),
            path(
                "queue-stats/control/", wrap(self.queue_control_view), name=f"{info}_queue_control"
            ),
            path("<path:object_id>/logs/", wrap(self.logs_view), name=f"{info}_logs"),
            path("<path:object_id>/logs.json", wrap(self.logs_json_view), name=f"{info}_logs_json"),
            path(
                "<path:object_id>/do/<str:operation>/",
                wrap(self.job_operation_view),
                name=f"{info}_operation",
            ),
        ]
        return extra + super().get_urls()  # type: ignore[misc]

    def _job(self, request: HttpRequest, object_id: str) -> ContainerJob:
        job_id = parse_id(object_id)
        if job_id is None:
            raise Http404("No such job")
        return get_object_or_404(ContainerJob.objects.select_related("host"), pk=job_id)

    def _check(self, request: HttpRequest, verb: str) -> None:
        checker = getattr(self, f"has_{verb}_permission")
        if not checker(request):
            raise PermissionDenied

    def queue_stats_view(self, request: HttpRequest) -> TemplateResponse:
        """The queue statistics page, for all jobs or one named queue (``?queue=``)."""
        self._check(request, "view")
        context = {
            **self.admin_site.each_context(request),
            **statistics_context(request, self),
            "opts": self.model._meta,
            "title": "Queue statistics",
        }
        return TemplateResponse(
            request, "admin/container_manager/containerjob/queue_stats.html", context
        )

    def queue_control_view(self, request: HttpRequest) -> HttpResponse:
        """Pause or resume a named queue from the statistics page; POST only."""
        return queue_control(self, request)

    def logs_view(self, request: HttpRequest, object_id: str) -> TemplateResponse:
        """A job's output, refreshed every two seconds while the job is not finished."""
        self._check(request, "logs")
        job = self._job(request, object_id)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": job,
            "title": f"Output of {job}",
            "output": read_output(job),
            "poll_url": reverse(
                f"{self.admin_site.name}:container_manager_containerjob_logs_json",
                args=[job.pk],
            ),
            "poll_interval_ms": LOG_POLL_INTERVAL_MS,
            "is_popup": "_popup" in request.GET,
        }
        return TemplateResponse(request, "admin/container_manager/containerjob/logs.html", context)

    def logs_json_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """The log view's data, as JSON (see :func:`read_output`); never cached.

        ``admin_site.admin_view`` marks every admin response ``no-store``.
        """
        self._check(request, "logs")
        return JsonResponse(read_output(self._job(request, object_id)))

    def job_operation_view(
        self, request: HttpRequest, object_id: str, operation: str
    ) -> HttpResponse:
        """Run one per-job button (queue, dequeue, cancel, pause, resume); POST only."""
        if operation not in JOB_OPERATIONS:
            raise Http404("No such operation")
        return _operate(self, request, object_id, operation)


def _operate(
    model_admin: Any, request: HttpRequest, object_id: str, operation: str
) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    verb, op, past = JOB_OPERATIONS[operation]
    model_admin._check(request, verb)
    job = model_admin._job(request, object_id)
    outcome = apply_to_jobs([job], op, operation)
    report(model_admin, request, outcome, past)
    if outcome.done:
        logger.info(
            "%s job %s from the admin (user %s)",
            past,
            job.pk,
            request.user.pk,
            extra={"job_id": job.pk},
        )
    change_url = reverse(
        f"{model_admin.admin_site.name}:container_manager_containerjob_change", args=[job.pk]
    )
    return HttpResponseRedirect(change_url)
