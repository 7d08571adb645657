"""The admin of job arrays: each array as one thing, its progress and outcome."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from container_manager.admin import display
from container_manager.admin.inputs import SafeInputAdminMixin
from container_manager.models import JobArray
from container_manager.states import TERMINAL_STATUSES, JobStatus

#: The badge colour of each outcome, by the status whose colour it takes.
_OUTCOME_STATUS = {
    "completed": JobStatus.COMPLETED,
    "failed": JobStatus.FAILED,
    "running": JobStatus.RUNNING,
    "waiting": JobStatus.QUEUED,
}


class JobArrayAdmin(SafeInputAdminMixin, admin.ModelAdmin):
    """Arrays are made by ``queue_manager.create_array`` or the API; here they are read."""

    list_display = ("id", "name", "size", "outcome_badge", "progress_display", "jobs_link")
    list_display_links = ("id", "name")
    search_fields = ("name",)
    readonly_fields = (
        "name",
        "size",
        "created_at",
        "outcome_badge",
        "progress_display",
        "counts_display",
        "jobs_link",
    )
    fields = readonly_fields
    ordering = ("-created_at", "-id")

    class Media:
        css = {"all": ("container_manager/admin.css",)}

    def get_queryset(self, request: HttpRequest) -> QuerySet[JobArray]:
        """Each array with its ended and completed counts, in one query."""
        return (
            super()
            .get_queryset(request)
            .annotate(
                ended=Count("jobs", filter=Q(jobs__status__in=sorted(TERMINAL_STATUSES))),
                completed=Count("jobs", filter=Q(jobs__status=JobStatus.COMPLETED)),
            )
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="outcome")
    def outcome_badge(self, array: JobArray) -> SafeString:
        outcome = array.outcome()
        return display.badge("status", _OUTCOME_STATUS[outcome], outcome.capitalize())

    @admin.display(description="progress")
    def progress_display(self, array: Any) -> SafeString:
        ended = getattr(array, "ended", None)
        completed = getattr(array, "completed", None)
        if ended is None or completed is None:
            counts = array.counts()
            ended = sum(counts[status] for status in TERMINAL_STATUSES)
            completed = counts[JobStatus.COMPLETED]
        percent = 100 * ended // max(array.size, 1)
        return display.progress_bar(percent, f"{ended}/{array.size} ended, {completed} completed")

    @admin.display(description="jobs by status")
    def counts_display(self, array: JobArray) -> str:
        counts = array.counts()
        return (
            ", ".join(f"{JobStatus(status).label}: {n}" for status, n in counts.items() if n) or "-"
        )

    @admin.display(description="jobs")
    def jobs_link(self, array: JobArray) -> SafeString:
        url = reverse(f"{self.admin_site.name}:container_manager_containerjob_changelist")
        return format_html('<a href="{}?array={}">{} jobs</a>', url, array.pk, array.size)
