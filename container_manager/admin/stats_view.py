"""The queue statistics page: what it shows, and its pause/resume controls for queues."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import urlencode

from container_manager.admin.filters import known_queue_names
from container_manager.models import JobQueue
from container_manager.models.queue import check_queue_name
from container_manager.queue import queue_manager
from container_manager.states import TERMINAL_STATUSES, JobKind, JobStatus
from container_manager.stats import get_statistics

logger = logging.getLogger(__name__)

#: The permission needed to pause and resume a named queue.
QUEUE_CONTROL_PERMISSION = "container_manager.change_jobqueue"

#: The queue figures of docs/queue-management.md (Statistics), in its order,
#: with the labels the page shows.
ADMIN_FIGURES: tuple[tuple[str, str], ...] = (
    ("queue_depth", "Queue depth"),
    ("ready", "Ready to launch"),
    ("ready_in_paused_queues", "Ready, but their queue is paused"),
    ("waiting_for_jobs", "Due, but waiting for other jobs"),
    ("running", "Running"),
    ("scheduled", "Scheduled"),
    ("completed_today", "Completed today"),
    ("failed_today", "Failed today"),
    ("high_priority_waiting", "High priority waiting"),
    ("launching", "Launching"),
    ("paused", "Paused"),
)


def _bars(counts: dict[str, int], labels: dict[str, str]) -> list[dict[str, Any]]:
    """Rows of a bar chart: each count with its width relative to the largest."""
    largest = max(counts.values(), default=0) or 1
    return [
        {
            "key": key,
            "label": labels.get(key, key),
            "count": count,
            "width": round(100 * count / largest, 1),
        }
        for key, count in counts.items()
    ]


def queue_name_problem(name: str) -> str:
    """Say why ``name`` cannot name a queue (``check_queue_name``), or "" when it can."""
    try:
        check_queue_name(name)
    except ValueError as exc:
        return f"{exc}."
    return ""


def statistics_context(request: HttpRequest, model_admin: Any) -> dict[str, Any]:
    """Build the template context of the statistics page.

    Args:
        request: The request; ``?queue=<name>`` narrows the figures to one
            queue. A name no queue can have is refused with a message, and
            the figures of all queues are shown.
        model_admin: The job admin (for URLs and messages).

    Returns:
        The figures of :func:`container_manager.stats.get_statistics` and their charts.
    """
    selected = request.GET.get("queue", "").strip() or None
    problem = queue_name_problem(selected) if selected else ""
    if problem:
        model_admin.message_user(request, problem, messages.ERROR)
        selected = None
    stats = get_statistics(queue=selected)
    labels = dict(JobStatus.choices)
    status_counts = dict(stats["status_distribution"])
    errors = stats["error_distribution"]
    error_counts = {code: row["count"] for code, row in errors.items()}
    error_bars = _bars(error_counts, {})
    for bar in error_bars:
        bar.update(errors[bar["key"]])
    paused = set(JobQueue.objects.filter(is_paused=True).values_list("name", flat=True))
    names = sorted(set(known_queue_names(extra=selected)) | set(stats["queue_distribution"]))
    queue_rows = [
        {
            "name": name,
            # With one queue selected the figures cover that queue only.
            "count": stats["queue_distribution"].get(name, None if selected else 0),
            "is_paused": name in paused,
            "url": "?" + urlencode({"queue": name}),
        }
        for name in names
    ]
    admin_figures = stats["admin"]
    return {
        "stats": stats,
        "selected_queue": selected,
        "selected_is_paused": selected in paused if selected else False,
        "queue_rows": queue_rows,
        "figures": [
            {"key": key, "label": label, "value": admin_figures.get(key, 0)}
            for key, label in ADMIN_FIGURES
        ],
        "status_bars": _bars(status_counts, labels),
        "terminal_statuses": sorted(TERMINAL_STATUSES),
        "error_bars": error_bars,
        "kind_bars": _bars(dict(stats["task_type_distribution"]), dict(JobKind.choices)),
        "can_control_queues": request.user.has_perm(QUEUE_CONTROL_PERMISSION),
        "control_url": reverse(
            f"{model_admin.admin_site.name}:container_manager_containerjob_queue_control"
        ),
        "changelist_url": reverse(
            f"{model_admin.admin_site.name}:container_manager_containerjob_changelist"
        ),
    }


def queue_control(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """Pause or resume a named queue (POST ``queue`` and ``action``), then show its statistics.

    Args:
        model_admin: The job admin.
        request: A POST with ``queue`` (the name) and ``action`` (``pause`` or ``resume``).

    Returns:
        A redirect to the statistics page of that queue; 405 for other methods.

    Raises:
        PermissionDenied: The user may not change queues.
    """
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not request.user.has_perm(QUEUE_CONTROL_PERMISSION):
        raise PermissionDenied
    name = request.POST.get("queue", "").strip()
    action = request.POST.get("action", "")
    url = reverse(f"{model_admin.admin_site.name}:container_manager_containerjob_queue_stats")
    if not name or action not in ("pause", "resume"):
        model_admin.message_user(
            request, "Choose a queue and whether to pause or resume it.", messages.ERROR
        )
        return HttpResponseRedirect(url)
    problem = queue_name_problem(name)
    if problem:
        model_admin.message_user(request, problem, messages.ERROR)
        return HttpResponseRedirect(url)
    try:
        if action == "pause":
            queue_manager.pause_queue(name)
        else:
            queue_manager.resume_queue(name)
    except ValueError as exc:
        model_admin.message_user(request, f"Could not {action} queue {name}: {exc}", messages.ERROR)
        return HttpResponseRedirect(url)
    if action == "pause":
        model_admin.message_user(
            request, f"Paused queue {name}: it launches nothing until resumed."
        )
    else:
        model_admin.message_user(request, f"Resumed queue {name}.")
    logger.info("Queue %s: %s from the admin (user %s)", name, action, request.user.pk)
    return HttpResponseRedirect(url + "?" + urlencode({"queue": name}))
